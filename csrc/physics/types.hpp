// Basic types, physical constants and direction helpers.
#pragma once
#include "macros.hpp"

namespace rpt {

// CODATA 2018 values.
constexpr double kElectronMassMeV = 0.51099895000;  // m_e c^2 (MeV)
constexpr double kHcKeVAngstrom = 12.398419843;     // h c (keV Angstrom)
constexpr double kPi = 3.14159265358979323846;
constexpr double kTwoPi = 6.28318530717958647692;

// Energy tallies are 64-bit integers in this unit, so sums are exact and order-free.
constexpr double kEnergyUnitMeV = 1e-8;  // 0.01 eV
constexpr double kUnitsPerMeV = 1e8;

// Quantised energy of a particle. Every deposit is a difference of quantised energies, so the
// balance is exact in either precision; the float overload keeps a single-precision history in
// float arithmetic (1e8 is exact in float; resolution ~6e-8 relative, below 0.4 eV at 6 MeV).
RPT_INLINE int64_t quantize(double e_mev) { return int64_t(e_mev * kUnitsPerMeV + 0.5); }
RPT_INLINE int64_t quantize(float e_mev) { return int64_t(e_mev * 1e8f + 0.5f); }

// A distance longer than any in a grid ("no limit"), finite in both precisions.
template <class Real>
RPT_INLINE constexpr Real far_distance() { return Real(1e30f); }
template <>
RPT_INLINE constexpr double far_distance<double>() { return 1e300; }

template <class Real>
struct Vec3T {
  Real x, y, z;
};
using Vec3 = Vec3T<double>;

// Positrons are transported by the electron routines (electron.hpp) with their own stopping
// power and hard-collision tables, and annihilate at rest when they stop.
enum ParticleType : int32_t { kElectron = 0, kPhoton = 1, kPositron = 2 };

// Data only (kept apart from behaviour, so a structure-of-arrays layout can replace it).
template <class Real>
struct ParticleT {
  Vec3T<Real> r;  // position (mm) in the grid frame: [0, n*spacing) on each axis
  Vec3T<Real> d;  // unit direction
  Real e;         // kinetic energy (MeV)
  int32_t type;
};
using Particle = ParticleT<double>;

// cos and sin of 2 pi u for u in [0, 1]. The reduction is exact: u = q/4 + r with q the
// nearest quarter turn, |r| <= 1/8 (r = u - q/4 has no rounding error), then Taylor series of
// sin and cos at 2 pi r (|x| <= pi/4: truncation below 5e-17) and the quarter-turn symmetry.
// Within 2 ulp of the correctly rounded values; the same bits on every backend, and several
// times faster than libm's sin and cos (which save and restore the rounding mode).
RPT_HOT_INLINE void sincos_2pi(double u, double& c, double& s) {
  const int32_t qi = int32_t(4.0 * u + 0.5);  // u >= 0: truncation is the floor
  const double q = double(qi);
  const double x = kTwoPi * (u - 0.25 * q);
  // Estrin's scheme after the leading terms (a short dependency chain, Horner's accuracy)
  constexpr double f4 = 1.0 / 24, f6 = 1.0 / 720, f8 = 1.0 / 40320, f10 = 1.0 / 3628800,
                   f12 = 1.0 / 479001600, f14 = 1.0 / 87178291200.0, f16 = 1.0 / 20922789888000.0;
  constexpr double f3 = 1.0 / 6, f5 = 1.0 / 120, f7 = 1.0 / 5040, f9 = 1.0 / 362880,
                   f11 = 1.0 / 39916800, f13 = 1.0 / 6227020800.0, f15 = 1.0 / 1307674368000.0;
  const double y = x * x, y2 = y * y, y4 = y2 * y2;
  const double sn = x + x * y * ((-f3 + f5 * y) + (-f7 + f9 * y) * y2 +
                                 ((-f11 + f13 * y) - f15 * y2) * y4);
  const double cs = 1.0 - 0.5 * y + y2 * ((f4 - f6 * y) + (f8 - f10 * y) * y2 +
                                          ((f12 - f14 * y) + f16 * y2) * y4);
  switch (qi & 3) {
    case 0: c = cs; s = sn; break;
    case 1: c = -sn; s = cs; break;
    case 2: c = -cs; s = -sn; break;
    default: c = sn; s = -cs; break;
  }
}

// The same in float: the same exact reduction (4u, u - q/4 are exact in float too), the series
// to x^9 (sin) and x^10 (cos), whose truncation at |x| = pi/4 is below 3e-9, under float's
// rounding (6e-8).
RPT_HOT_INLINE void sincos_2pi(float u, float& c, float& s) {
  const int32_t qi = int32_t(4.0f * u + 0.5f);
  const float q = float(qi);
  const float x = float(kTwoPi) * (u - 0.25f * q);
  constexpr float f4 = 1.0f / 24, f6 = 1.0f / 720, f8 = 1.0f / 40320, f10 = 1.0f / 3628800;
  constexpr float f3 = 1.0f / 6, f5 = 1.0f / 120, f7 = 1.0f / 5040, f9 = 1.0f / 362880;
  const float y = x * x, y2 = y * y;
  const float sn = x + x * y * ((-f3 + f5 * y) + (-f7 + f9 * y) * y2);
  const float cs = 1.0f - 0.5f * y + y2 * ((f4 - f6 * y) + (f8 - f10 * y) * y2);
  switch (qi & 3) {
    case 0: c = cs; s = sn; break;
    case 1: c = -sn; s = cs; break;
    case 2: c = -cs; s = -sn; break;
    default: c = sn; s = -cs; break;
  }
}

// Isotropic unit vector, in the precision of the generator's uniform().
template <class Rng>
RPT_HOT_INLINE Vec3T<typename Rng::real_type> isotropic(Rng& rng) {
  using Real = typename Rng::real_type;
  Real w = Real(2) * rng.uniform() - Real(1);
  Real cp, sp;
  sincos_2pi(rng.uniform(), cp, sp);
  Real s = real_sqrt(dmax(Real(0), Real(1) - w * w));
  return Vec3T<Real>{s * cp, s * sp, w};
}

// Rotate direction d by polar angle (cos_theta) and azimuth 2 pi u_phi (the usual EGS/PENELOPE
// form).
template <class Real>
RPT_HOT_INLINE Vec3T<Real> rotate(const Vec3T<Real>& d, Real cos_theta, Real u_phi) {
  const Real sin2 = dmax(Real(0), Real(1) - cos_theta * cos_theta);
  Real cp, sp;
  sincos_2pi(u_phi, cp, sp);
  Real rho2 = d.x * d.x + d.y * d.y;
  Vec3T<Real> n;
  if (rho2 > Real(1e-20)) {
    const Real a = real_sqrt(sin2 / rho2);  // sin(theta) / rho, rho = |d projected on xy|
    n.x = d.x * cos_theta + a * (d.x * d.z * cp - d.y * sp);
    n.y = d.y * cos_theta + a * (d.y * d.z * cp + d.x * sp);
    n.z = d.z * cos_theta - a * cp * rho2;
  } else {
    const Real sin_theta = real_sqrt(sin2);
    Real sgn = d.z >= 0 ? Real(1) : Real(-1);
    n.x = sin_theta * cp;
    n.y = sin_theta * sp;
    n.z = sgn * cos_theta;
  }
  // renormalise against slow drift: one Newton step of 1/sqrt(n2) about 1 (|n2 - 1| is a few
  // ulp, so the result is a unit vector to rounding, without a square root and a division)
  const Real inv = Real(1.5) - Real(0.5) * (n.x * n.x + n.y * n.y + n.z * n.z);
  n.x *= inv; n.y *= inv; n.z *= inv;
  return n;
}

template <class Real>
RPT_INLINE Vec3T<Real> normalized(Vec3T<Real> v) {
  Real n2 = v.x * v.x + v.y * v.y + v.z * v.z;
  if (n2 <= Real(0)) return Vec3T<Real>{Real(0), Real(0), Real(1)};
  Real inv = Real(1) / real_sqrt(n2);
  return Vec3T<Real>{v.x * inv, v.y * inv, v.z * inv};
}

}  // namespace rpt
