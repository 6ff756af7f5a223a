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

enum ParticleType : int32_t { kElectron = 0, kPhoton = 1 };

// Data only (kept apart from behaviour, so a structure-of-arrays layout can replace it).
struct Particle {
  Vec3 r;      // position (mm) in the grid frame: [0, n*spacing) on each axis
  Vec3 d;      // unit direction
  double e;    // kinetic energy (MeV)
  int32_t type;
};

// Isotropic unit vector.
template <class Rng>
RPT_INLINE Vec3 isotropic(Rng& rng) {
  double w = 2.0 * rng.uniform() - 1.0;
  double phi = kTwoPi * rng.uniform();
  double s = sqrt(fmax(0.0, 1.0 - w * w));
  return Vec3{s * cos(phi), s * sin(phi), w};
}

// Rotate direction d by polar angle (cos_theta) and azimuth phi (the usual EGS/PENELOPE form).
RPT_INLINE Vec3 rotate(const Vec3& d, double cos_theta, double phi) {
  double sin_theta = sqrt(fmax(0.0, 1.0 - cos_theta * cos_theta));
  double cp = cos(phi), sp = sin(phi);
  double rho2 = d.x * d.x + d.y * d.y;
  Vec3 n;
  if (rho2 > 1e-20) {
    double rho = sqrt(rho2);
    double a = sin_theta / rho;
    n.x = d.x * cos_theta + a * (d.x * d.z * cp - d.y * sp);
    n.y = d.y * cos_theta + a * (d.y * d.z * cp + d.x * sp);
    n.z = d.z * cos_theta - sin_theta * cp * rho;
  } else {
    double sgn = d.z >= 0 ? 1.0 : -1.0;
    n.x = sin_theta * cp;
    n.y = sin_theta * sp;
    n.z = sgn * cos_theta;
  }
  // renormalise against slow drift
  double inv = 1.0 / sqrt(n.x * n.x + n.y * n.y + n.z * n.z);
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
