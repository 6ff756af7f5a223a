// Photon transport, one interaction per step (photon_step): Woodcock (delta) tracking against the grid's majorant, photoelectric
// absorption, incoherent scattering (Klein-Nishina with the incoherent scattering function)
// and coherent scattering (Thomson angular factor with the atomic form factor).
//
// References: E. Woodcock et al., ANL-7050 (1965) for delta tracking; Klein-Nishina sampling
// after Butcher & Messel, Nucl. Phys. 20:15 (1960) as used in Geant4's G4KleinNishinaCompton;
// coherent sampling as in PENELOPE-2018 (NEA/MBDAV/R(2019)1, sect. 2.1) from the cumulative of
// F^2(x) over x^2. Photoelectric: the photoelectron takes the whole photon energy (binding
// energy and fluorescence deposited with it; documented approximation, the fluorescence of
// tissue elements is < 4 keV) and starts in the photon's direction.
#pragma once
#include "grid.hpp"
#include "track.hpp"
#include "tables.hpp"

namespace rpt {

// S(x)/Z of material `mat` at momentum transfer x (1/Angstrom).
template <class Real>
RPT_INLINE Real incoherent_sf(const TableViewT<Real>& t, int32_t mat, Real x) {
  if (x <= Real(0)) return Real(0);
  Real lx = real_log(x);
  if (lx >= t.sf_lnx_max) return Real(1);
  Real u = (lx - t.sf_lnx_min) * t.sf_inv_dlnx;
  if (u <= Real(0)) return Real(0);
  int32_t i = int32_t(u);
  if (i >= t.n_sf - 1) return t.incoh_sf[size_t(mat) * t.n_sf + t.n_sf - 1];
  const Real* row = t.incoh_sf + size_t(mat) * t.n_sf;
  Real f = u - Real(i);
  return row[i] + f * (row[i + 1] - row[i]);
}

// Sample the scattered photon's energy fraction eps = E'/E and cos(theta) for incoherent
// scattering of a photon of energy e (MeV) in material mat.
template <class Real, class Rng>
RPT_INLINE void sample_incoherent(const TableViewT<Real>& t, int32_t mat, Real e, Rng& rng,
                                  Real& eps_out, Real& cost_out) {
  const Real k = e / Real(kElectronMassMeV);
  const Real eps0 = Real(1) / (Real(1) + Real(2) * k);
  const Real eps0sq = eps0 * eps0;
  const Real alpha1 = -real_log(eps0);
  const Real alpha2 = Real(0.5) * (Real(1) - eps0sq);
  const Real kx = e * Real(1e3) / Real(kHcKeVAngstrom);  // photon wave number (1/Angstrom)
  for (int iter = 0; iter < 10000; ++iter) {
    Real eps, epssq;
    if (alpha1 > (alpha1 + alpha2) * rng.uniform()) {
      eps = real_exp(-alpha1 * rng.uniform());
      epssq = eps * eps;
    } else {
      epssq = eps0sq + (Real(1) - eps0sq) * rng.uniform();
      eps = real_sqrt(epssq);
    }
    Real onecost = (Real(1) - eps) / (eps * k);
    Real sint2 = onecost * (Real(2) - onecost);
    Real greject = Real(1) - eps * sint2 / (Real(1) + epssq);
    Real x = kx * real_sqrt(Real(0.5) * onecost);  // sin(theta/2) / lambda
    Real sf = incoherent_sf(t, mat, x);
    if (greject * sf >= rng.uniform()) {
      eps_out = eps;
      cost_out = Real(1) - onecost;
      return;
    }
  }
  eps_out = Real(1);  // unreachable in practice; forward scattering keeps energy conserved
  cost_out = Real(1);
}

// Sample cos(theta) for coherent scattering of a photon of energy e (MeV) in material mat.
template <class Real, class Rng>
RPT_INLINE Real sample_coherent(const TableViewT<Real>& t, int32_t mat, Real e, Rng& rng) {
  const Real kx = e * Real(1e3) / Real(kHcKeVAngstrom);
  const Real x2max = kx * kx;
  const Real* x2 = t.coh_x2;
  const Real* cum = t.coh_cum + size_t(mat) * t.n_coh;
  // cumulative at x2max
  int32_t lo = 0, hi = t.n_coh - 1;
  Real cmax;
  if (x2max >= x2[hi]) {
    cmax = cum[hi];
  } else {
    while (hi - lo > 1) {
      int32_t mid = (lo + hi) >> 1;
      if (x2[mid] <= x2max) lo = mid; else hi = mid;
    }
    cmax = cum[lo] + (cum[hi] - cum[lo]) * (x2max - x2[lo]) / (x2[hi] - x2[lo]);
  }
  for (int iter = 0; iter < 10000; ++iter) {
    Real c = rng.uniform() * cmax;
    int32_t a = 0, b = t.n_coh - 1;
    while (b - a > 1) {
      int32_t mid = (a + b) >> 1;
      if (cum[mid] <= c) a = mid; else b = mid;
    }
    Real dc = cum[b] - cum[a];
    Real xs = dc > Real(0) ? x2[a] + (x2[b] - x2[a]) * (c - cum[a]) / dc : x2[a];
    Real cost = Real(1) - Real(2) * xs / x2max;
    if (cost < Real(-1)) cost = Real(-1);
    if (Real(0.5) * (Real(1) + cost * cost) >= rng.uniform()) return cost;
  }
  return Real(1);
}

// A new photon: where it is, its energy's table index; false if it ends at once (outside the
// grid: escaped; at or below the photon cut: deposited where it is).
template <class Real, class Tally, class Sink>
RPT_INLINE bool settle_photon(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c) {
  t.vp = locate(c.P.grid, t.p.r);
  if (t.vp.index < 0) {
    c.cnt.escaped += quantize(t.p.e);
    return false;
  }
  if (t.p.e <= c.P.set.ph_cut) {
    c.deposit(t.vp.index, quantize(t.p.e));
    return false;
  }
  t.k = energy_index(c.P.tab, t.p.e);
  return true;
}

// One step of photon t: Woodcock flights to its next real interaction, and that interaction.
// Returns false when the photon ends (absorbed, escaped, or scattered to below the cut).
// Electrons it sets in motion are emitted to the context.
template <class Real, class Tally, class Sink>
RPT_HOT_INLINE bool photon_step(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c) {
  const ParamsT<Real>& P = c.P;
  const GridViewT<Real>& g = P.grid;
  const TableViewT<Real>& tab = P.tab;
  PhiloxT<Real>& rng = t.rng;
  ParticleT<Real>& p = t.p;
  // the majorant of the current energy (delta tracking against the whole grid's maximum)
  const Real mu_max = lookup1(tab.majorant, t.k);  // 1/mm
  for (int iter = 0; iter < 1000000; ++iter) {
    const Real s = -real_log(rng.uniform()) / mu_max;
    p.r = advance(p.r, p.d, s);
    t.vp = locate(g, p.r);
    if (t.vp.index < 0) {
      c.cnt.escaped += quantize(p.e);
      return false;
    }
    const int64_t v = t.vp.index;
    const int32_t m = g.material[v];
    const Real rho10 = Real(g.density[v]) * Real(0.1);  // cm2/g -> 1/mm
    const Real mu_pe = lookup(tab.mu_photo, tab, m, t.k) * rho10;
    const Real mu_in = lookup(tab.mu_incoh, tab, m, t.k) * rho10;
    const Real mu_co = lookup(tab.mu_coh, tab, m, t.k) * rho10;
    const Real r = rng.uniform() * mu_max;
    if (r < mu_pe) {
      c.emit(rng, ParticleT<Real>{p.r, p.d, p.e, kElectron}, v);
      return false;
    } else if (r < mu_pe + mu_in) {
      Real eps, cost;
      sample_incoherent(tab, m, p.e, rng, eps, cost);
      const Real u_phi = rng.uniform();
      const Vec3T<Real> d_in = p.d;
      const Real e_in = p.e;
      const Real e_out = eps * e_in;
      p.d = rotate(d_in, cost, u_phi);
      // electron: momentum conservation p_e = k_in - k_out (units of MeV/c)
      const Real t_el = e_in - e_out;
      const int64_t q_before = quantize(e_in);
      p.e = e_out;
      if (t_el > Real(0)) {
        const Vec3T<Real> pe{e_in * d_in.x - e_out * p.d.x, e_in * d_in.y - e_out * p.d.y,
                             e_in * d_in.z - e_out * p.d.z};
        // exact integer bookkeeping: the rounding remainder is deposited here
        const int64_t rem = q_before - quantize(e_out) - quantize(t_el);
        if (rem != 0) c.deposit(v, rem);
        c.emit(rng, ParticleT<Real>{p.r, normalized(pe), t_el, kElectron}, v);
      } else {
        const int64_t rem = q_before - quantize(e_out);
        if (rem != 0) c.deposit(v, rem);
      }
      if (p.e <= P.set.ph_cut) {
        c.deposit(v, quantize(p.e));
        return false;
      }
      t.k = energy_index(tab, p.e);
      return true;
    } else if (r < mu_pe + mu_in + mu_co) {
      const Real cost = sample_coherent(tab, m, p.e, rng);
      p.d = rotate(p.d, cost, rng.uniform());
      return true;
    }
    // else: delta (virtual) collision, fly on
  }
  c.deposit(t.vp.index, quantize(p.e));  // safety net, never reached in transport
  return false;
}

}  // namespace rpt
