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

RPT_INLINE int64_t quantize(double e_mev) { return int64_t(e_mev * kUnitsPerMeV + 0.5); }

struct Vec3 {
  double x, y, z;
};

// Positrons are transported by the electron routines (electron.hpp) with their own stopping
// power and hard-collision tables, and annihilate at rest when they stop.
enum ParticleType : int32_t { kElectron = 0, kPhoton = 1, kPositron = 2 };

// Data only (kept apart from behaviour, so a structure-of-arrays layout can replace it).
struct Particle {
  Vec3 r;      // position (mm) in the grid frame: [0, n*spacing) on each axis
  Vec3 d;      // unit direction
  double e;    // kinetic energy (MeV)
  int32_t type;
};

// cos and sin of 2 pi u for u in [0, 1]. The reduction is exact: u = q/4 + r with q the
// nearest quarter turn, |r| <= 1/8 (r = u - q/4 has no rounding error), then Taylor series of
// sin and cos at 2 pi r (|x| <= pi/4: truncation below 5e-17) and the quarter-turn symmetry.
// Within 2 ulp of the correctly rounded values; the same bits on every backend, and several
// times faster than libm's sin and cos (which save and restore the rounding mode).
RPT_INLINE void sincos_2pi(double u, double& c, double& s) {
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

// Isotropic unit vector.
template <class Rng>
RPT_INLINE Vec3 isotropic(Rng& rng) {
  double w = 2.0 * rng.uniform() - 1.0;
  double cp, sp;
  sincos_2pi(rng.uniform(), cp, sp);
  double s = sqrt(dmax(0.0, 1.0 - w * w));
  return Vec3{s * cp, s * sp, w};
}

// Rotate direction d by polar angle (cos_theta) and azimuth 2 pi u_phi (the usual EGS/PENELOPE
// form).
RPT_INLINE Vec3 rotate(const Vec3& d, double cos_theta, double u_phi) {
  const double sin2 = dmax(0.0, 1.0 - cos_theta * cos_theta);
  double cp, sp;
  sincos_2pi(u_phi, cp, sp);
  double rho2 = d.x * d.x + d.y * d.y;
  Vec3 n;
  if (rho2 > 1e-20) {
    const double a = sqrt(sin2 / rho2);  // sin(theta) / rho, rho = |d projected on xy|
    n.x = d.x * cos_theta + a * (d.x * d.z * cp - d.y * sp);
    n.y = d.y * cos_theta + a * (d.y * d.z * cp + d.x * sp);
    n.z = d.z * cos_theta - a * cp * rho2;
  } else {
    const double sin_theta = sqrt(sin2);
    double sgn = d.z >= 0 ? 1.0 : -1.0;
    n.x = sin_theta * cp;
    n.y = sin_theta * sp;
    n.z = sgn * cos_theta;
  }
  // renormalise against slow drift: one Newton step of 1/sqrt(n2) about 1 (|n2 - 1| is a few
  // ulp, so the result is a unit vector to rounding, without a square root and a division)
  const double inv = 1.5 - 0.5 * (n.x * n.x + n.y * n.y + n.z * n.z);
  n.x *= inv; n.y *= inv; n.z *= inv;
  return n;
}

RPT_INLINE Vec3 normalized(Vec3 v) {
  double n2 = v.x * v.x + v.y * v.y + v.z * v.z;
  if (n2 <= 0.0) return Vec3{0.0, 0.0, 1.0};
  double inv = 1.0 / sqrt(n2);
  return Vec3{v.x * inv, v.y * inv, v.z * inv};
}

}  // namespace rpt
