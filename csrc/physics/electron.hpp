// Electron transport: class II condensed history.
//
// - Continuous slowing down with the restricted collision + restricted radiative stopping power
//   (photons below brems_kc); the energy after a path is taken from the range table (exact CSDA
//   bookkeeping within a step). Bremsstrahlung photons above brems_kc are hard events
//   (brems_emission): energy from the 3BN cross section (Koch & Motz 1959) by dk/k sampling and
//   rejection, direction from the Lorentz-boosted dipole distribution; they are transported as
//   any photon. Without the brems tables (brems_kc = 0) the whole radiative loss is continuous.
// - Hard Moller collisions (energy transfer above el_wcc) sampled explicitly; the delta ray is
//   transported. Sampling as in Geant4's G4MollerBhabhaModel (Moller, Ann. Phys. 14:531, 1932).
// - Elastic scattering, mixed (class II) as in PENELOPE (Baro et al., NIM B 100:31, 1995):
//   hard events (mu = (1-cos)/2 above a cut-off mu_c, mean free path C1 lambda_1) one by one,
//   sampled from the screened Rutherford form with the Mott factor (sample_hard_elastic_cos);
//   the soft deflections of a step lumped into one, Gaussian in angle (exponential in mu), with
//   the soft Goudsmit-Saunderson first moment <mu> = (1 - exp(-s/lambda_1,soft))/2 (Lewis
//   1950), applied at a random hinge point.
// - Energy dependence within a step: the cross sections grow as the electron slows down. The
//   distance to the next hard event solves integral(sigma ds) = x by the midpoint rule, the soft
//   first moment integrates 1/lambda_1 along the step by the trapezoid rule, and a hard event
//   is sampled with the cross sections of the energy at which it happens. Taking the start
//   energy's instead under-scatters by about C1 times the step's relative change of sigma:
//   with these corrections the kernels do not change between C1 = 0.05 and 0.2 (the value
//   used, PENELOPE's upper limit), validation/dpk_water.
// - Step limits: a fraction of the residual range, the distances to the next hard collision and
//   to the next hard elastic event, and the distance to the voxel boundary, so every step stays
//   in one material and its energy is deposited in the voxel where it was lost.
// - Range rejection: when the residual range is shorter than the distance to the nearest face of
//   the current voxel, the electron (and every secondary it could make, whose ranges are
//   shorter) cannot leave the voxel: its energy is deposited there at once. Exact for the voxel
//   tally except for the bremsstrahlung the electron would still emit (its radiative yield,
//   < 1e-3 of its energy in tissue below the ~200 keV at which an electron's range fits inside a
//   1 mm voxel: physics/electron.py radiative_yield), which is deposited there too.
// - Positrons (kPositron) take the same path with what differs for them: the range table of
//   the Bhabha restricted collision stopping power (pos_range) and hard Bhabha collisions
//   (pos_sigma_hard, bhabha_collision: the positron may give the atomic electron up to all its
//   energy). Approximated as for electrons: radiative loss and bremsstrahlung photons, and elastic
//   scattering (the e+ Mott factor differs from the e- one in the sign of its pi alpha Z beta
//   term, <= 5 % of the cross section in tissue). Annihilation in flight is not simulated. A
//   positron that stops (tracking cut, range rejection, step limit, or no electron transport)
//   annihilates at rest where it is: two back-to-back photons of m_e c^2 (annihilate_at_rest),
//   their 1.022 MeV added to the emitted energy, so the energy balance stays exact; a positron
//   that leaves the grid takes only its kinetic energy with it.
#pragma once
#include "grid.hpp"
#include "track.hpp"
#include "tables.hpp"

namespace rpt {

constexpr int kMaxElectronSteps = 100000;  // safety net (electron_step); never reached in normal transport

// Soft multiple-scattering deflection with <mu> = mean_mu, mu = (1-cos)/2: the sum of many
// small deflections, each below the hard-event cut-off, is Gaussian in the polar angle (central
// limit; Fermi-Eyges / the core of Moliere's distribution), i.e. exponential in mu ~ theta^2/4:
// p(mu) = lambda exp(-lambda mu) / (1 - exp(-lambda)) on [0, 1], lambda from the host table
// (ms_ln_lambda) so that the truncated mean is exactly mean_mu; isotropic as mean_mu -> 1/2.
// Below <mu> = 1/40 (lambda > 40, the usual condensed-history step) the truncation is below
// 2e-16 of the mean: lambda = 1 / <mu> and mu = <mu> times an exponential deviate, no table.
template <class Real, class Rng>
RPT_INLINE Real sample_multiple_scattering_cos(const TableViewT<Real>& t, Real mean_mu, Rng& rng) {
  if (mean_mu <= Real(0)) return Real(1);
  if (mean_mu < Real(0.025)) return Real(1) - Real(2) * mean_mu * -real_log(Real(1) - rng.uniform());
  if (mean_mu >= t.ms_mean_max) return Real(2) * rng.uniform() - Real(1);  // isotropic limit
  // the table starts below 1/40 (host/params.cpp), so x > 0 here
  const Real x = (real_log(mean_mu) - t.ms_ln_mean_min) * t.ms_inv_dln;
  const int32_t i = int32_t(x);
  Real ln_l;
  if (i >= t.ms_n - 1) {
    ln_l = t.ms_ln_lambda[t.ms_n - 1];
  } else {
    const Real f = x - Real(i);
    ln_l = t.ms_ln_lambda[i] + f * (t.ms_ln_lambda[i + 1] - t.ms_ln_lambda[i]);
  }
  const Real lam = real_exp(ln_l);
  // exp(-lam) < 2^-54 above lam = 38: 1 - exp(-lam) rounds to 1 and need not be computed
  const Real norm = lam > Real(38) ? Real(1) : Real(1) - real_exp(-lam);
  Real mu = -real_log(Real(1) - rng.uniform() * norm) / lam;
  if (mu > Real(1)) mu = Real(1);
  return Real(1) - Real(2) * mu;
}

// 1 - exp(-x) for x >= 0: its Taylor series to x^9 below x = 0.05 (truncation < 3e-20, and no
// cancellation), the exponential above.
template <class Real>
RPT_INLINE Real one_minus_exp_neg(Real x) {
  if (x >= Real(0.05)) return Real(1) - real_exp(-x);
  constexpr Real c3 = Real(1.0 / 3), c5 = Real(1.0 / 5), c6 = Real(1.0 / 6), c7 = Real(1.0 / 7),
                 c9 = Real(1.0 / 9), one = Real(1), half = Real(0.5), quarter = Real(0.25),
                 eighth = Real(0.125);
  return x * (one - half * x * (one - c3 * x * (one - quarter * x * (one - c5 * x * (one - c6 * x * (
             one - c7 * x * (one - eighth * x * (one - c9 * x))))))));
}

// Hard elastic event: polar deflection mu = (1-cos)/2 sampled from the hard part of the elastic
// cross section (params.hpp: el_el_*), 1/(mu+eta) uniform between 1/(mu_c+eta) and 1/(1+eta),
// then rejection with the McKinley-Feshbach Mott factor R(mu) <= 1 + mott_c/4.
template <class Real, class Rng>
RPT_INLINE Real sample_hard_elastic_cos(const TableViewT<Real>& t, int32_t m, EIndexT<Real> k, Rng& rng) {
  const Real inv_lo = lookup(t.el_el_inv_lo, t, m, k);
  const Real inv_hi = lookup(t.el_el_inv_hi, t, m, k);
  const Real eta = lookup(t.el_el_eta, t, m, k);
  const Real b = lookup(t.el_mott_b, t, m, k);
  const Real c = lookup(t.el_mott_c, t, m, k);
  const Real rmax = Real(1) + Real(0.25) * c;  // max of sqrt(mu) - mu is 1/4
  Real mu = Real(0);
  for (int iter = 0; iter < 1000; ++iter) {
    mu = Real(1) / (inv_lo - rng.uniform() * (inv_lo - inv_hi)) - eta;
    if (mu < Real(0)) mu = Real(0);
    if (mu > Real(1)) mu = Real(1);
    const Real r = Real(1) - b * mu + c * (real_sqrt(mu) - mu);
    if (rng.uniform() * rmax <= r) break;
  }
  return Real(1) - Real(2) * mu;
}

// The end of a hard collision of p (kinetic energy T) that gives W to an atomic electron (Moller
// and Bhabha alike): the electron's direction from two-body kinematics, cos = sqrt(W (T + 2 mc2) /
// (T (W + 2 mc2))) at a uniform azimuth; the primary keeps T - W and the momentum that is left;
// the electron is emitted (StepCtx::emit); the quantised energy is conserved exactly (the rounding
// remainder deposited in the voxel).
template <class Real, class Rng, class Ctx>
RPT_INLINE void knock_on(ParticleT<Real>& p, Real w, int64_t voxel, Rng& rng, Ctx& c) {
  const Real mc2 = Real(kElectronMassMeV);
  const Real T = p.e;
  Real cost_d = real_sqrt(w * (T + Real(2) * mc2) / (T * (w + Real(2) * mc2)));
  if (cost_d > Real(1)) cost_d = Real(1);
  Vec3T<Real> dd = rotate(p.d, cost_d, rng.uniform());
  const Real p0 = real_sqrt(T * (T + Real(2) * mc2));
  const Real pd = real_sqrt(w * (w + Real(2) * mc2));
  Vec3T<Real> pp{p0 * p.d.x - pd * dd.x, p0 * p.d.y - pd * dd.y, p0 * p.d.z - pd * dd.z};
  int64_t q_old = quantize(T);
  p.e = T - w;
  if (p.e < Real(0)) p.e = Real(0);
  p.d = normalized(pp);
  int64_t rem = q_old - quantize(p.e) - quantize(w);
  if (rem != 0) c.deposit(voxel, rem);
  c.emit(rng, ParticleT<Real>{p.r, dd, w, kElectron}, voxel);
}

// Hard Moller collision of electron p (kinetic energy > 2 el_wcc): the delta ray is emitted, the primary is slowed down and deflected (momentum conservation).
template <class Real, class Rng, class Ctx>
RPT_INLINE void moller_collision(ParticleT<Real>& p, int64_t voxel, Rng& rng, Ctx& c) {
  const Real mc2 = Real(kElectronMassMeV);
  const Real T = p.e;
  const Real wcc = c.P.tab.el_wcc;
  if (T <= Real(2) * wcc) return;
  const Real xmin = wcc / T, xmax = Real(0.5);
  const Real gam = T / mc2 + Real(1);
  const Real gamma2 = gam * gam;
  const Real gg = (Real(2) * gam - Real(1)) / gamma2;
  Real y = Real(1) - xmax;
  const Real grej = Real(1) - gg * xmax + xmax * xmax * (Real(1) - gg + (Real(1) - gg * y) / (y * y));
  Real x = xmin;
  for (int iter = 0; iter < 10000; ++iter) {
    Real q = rng.uniform();
    x = xmin * xmax / (xmin * (Real(1) - q) + xmax * q);
    y = Real(1) - x;
    Real z = Real(1) - gg * x + x * x * (Real(1) - gg + (Real(1) - gg * y) / (y * y));
    if (grej * rng.uniform() <= z) break;
  }
  knock_on(p, x * T, voxel, rng, c);
}

// Hard Bhabha collision of positron p (kinetic energy T > el_wcc): an atomic electron gets
// W = x T, x in (el_wcc/T, 1], sampled as in Geant4's G4MollerBhabhaModel (Bhabha, Proc R Soc A
// 154:195, 1936): x from 1/x^2 between the limits, then rejection with the rest of the cross
// section, whose bound grej is Geant4's. The electron is emitted, the positron keeps
// T - W and is deflected by momentum conservation (as in moller_collision).
template <class Real, class Rng, class Ctx>
RPT_INLINE void bhabha_collision(ParticleT<Real>& p, int64_t voxel, Rng& rng, Ctx& c) {
  const Real mc2 = Real(kElectronMassMeV);
  const Real T = p.e;
  const Real wcc = c.P.tab.el_wcc;
  if (T <= wcc) return;
  const Real xmin = wcc / T, xmax = Real(1);
  const Real gam = T / mc2 + Real(1);
  const Real beta2 = Real(1) - Real(1) / (gam * gam);
  Real y = Real(1) / (Real(1) + gam);
  const Real y2 = y * y;
  const Real y12 = Real(1) - Real(2) * y;
  const Real b1 = Real(2) - y2;
  const Real b2 = y12 * (Real(3) + y2);
  const Real y122 = y12 * y12;
  const Real b4 = y122 * y12;
  const Real b3 = b4 + y122;
  y = xmax * xmax;
  const Real grej = Real(1) + (y * y * b4 - xmin * xmin * xmin * b3 + y * b2 - xmin * b1) * beta2;
  Real x = xmin;
  for (int iter = 0; iter < 10000; ++iter) {
    const Real q = rng.uniform();
    x = xmin * xmax / (xmin * (Real(1) - q) + xmax * q);
    y = x * x;
    const Real z = Real(1) + (y * y * b4 - x * y * b3 + y * b2 - x * b1) * beta2;
    if (grej * rng.uniform() <= z) break;
  }
  knock_on(p, x * T, voxel, rng, c);
}

// Hard bremsstrahlung event of electron/positron p (kinetic energy T > brems_kc) in material
// row k: photon energy kph in (brems_kc, T) drawn from dk/k (u uniform: kph = kc (T/kc)^u) and
// accepted with X(T, kph) / max X, the 3BN scaled cross section's shape (table brems_rej,
// linear in u and in ln T). Direction: the dipole distribution (3/8)(1 + cos'^2) in the
// electron's rest frame, Lorentz-boosted with its speed beta: cos = (cos' + beta) / (1 + beta
// cos'); PENELOPE's angular distribution (Salvat, PENELOPE-2018 manual, eq. 3.169; Acosta,
// Llovet & Salvat, Appl Phys Lett 80:3228, 2002) with A = 1, beta' = beta, i.e. without its
// fitted corrections. The electron keeps its direction (the nucleus takes the recoil).
template <class Real, class Rng, class Ctx>
RPT_INLINE void brems_emission(ParticleT<Real>& p, EIndexT<Real> k, int64_t voxel, Rng& rng,
                               Ctx& c) {
  const TableViewT<Real>& t = c.P.tab;
  const Real kc = t.brems_kc;
  const Real T = p.e;
  if (!(T > kc) || t.brems_nu < 2) return;
  const Real ln_ratio = real_log(T / kc);
  const int32_t nu = t.brems_nu;
  const int32_t i0 = k.i < 0 ? 0 : (k.i >= t.n_e - 1 ? t.n_e - 2 : k.i);
  const Real fe = k.f < Real(0) ? Real(0) : (k.f > Real(1) ? Real(1) : k.f);
  const Real* r0 = t.brems_rej + size_t(i0) * size_t(nu);
  const Real* r1 = r0 + nu;
  Real kph = kc;
  for (int iter = 0; iter < 1000; ++iter) {
    const Real u = rng.uniform();
    kph = kc * real_exp(u * ln_ratio);
    const Real x = u * Real(nu - 1);
    int32_t j = int32_t(x);
    if (j > nu - 2) j = nu - 2;
    const Real fu = x - Real(j);
    const Real a = r0[j] + fu * (r0[j + 1] - r0[j]);
    const Real b = r1[j] + fu * (r1[j + 1] - r1[j]);
    // the row above may be 0 (T just above kc at the lower row): take the non-zero one
    const Real rej = (r0[0] > Real(0) && r1[0] > Real(0)) ? a + fe * (b - a) : (r0[0] > Real(0) ? a : b);
    if (rng.uniform() <= rej) break;
  }
  if (kph >= T) kph = T;
  const Real gam = T / Real(kElectronMassMeV) + Real(1);
  const Real beta = real_sqrt(Real(1) - Real(1) / (gam * gam));
  Real cr = Real(0);  // cos in the electron's rest frame
  for (int iter = 0; iter < 1000; ++iter) {  // (1 + cr^2)/2 on [-1, 1]: acceptance 2/3
    cr = Real(2) * rng.uniform() - Real(1);
    if (Real(2) * rng.uniform() <= Real(1) + cr * cr) break;
  }
  Real cost = (cr + beta) / (Real(1) + beta * cr);
  if (cost > Real(1)) cost = Real(1);
  if (cost < Real(-1)) cost = Real(-1);
  const Vec3T<Real> dph = rotate(p.d, cost, rng.uniform());
  const int64_t q_old = quantize(T);
  p.e = T - kph;
  if (p.e < Real(0)) p.e = Real(0);
  const int64_t rem = q_old - quantize(p.e) - quantize(kph);
  if (rem != 0) c.deposit(voxel, rem);
  c.emit_photon(rng, ParticleT<Real>{p.r, dph, kph, kPhoton}, voxel);
}

// A positron at rest at r (in voxel `voxel`) annihilates into two photons of m_e c^2 in
// opposite, isotropic directions (annihilation at rest; positronium's three-photon decay and the
// ~0.5 degree acollinearity are neglected). Their energy comes from the rest masses: it is added
// to the emitted energy here, so emitted = deposited + escaped stays exact.
template <class Real, class Rng, class Ctx>
RPT_INLINE void annihilate_at_rest(const Vec3T<Real>& r, int64_t voxel, Rng& rng, Ctx& c) {
  const Real mc2 = Real(kElectronMassMeV);
  c.cnt.emitted += 2 * quantize(mc2);
  const Vec3T<Real> d = isotropic(rng);
  c.emit_photon(rng, ParticleT<Real>{r, d, mc2, kPhoton}, voxel);
  c.emit_photon(rng, ParticleT<Real>{r, Vec3T<Real>{-d.x, -d.y, -d.z}, mc2, kPhoton}, voxel);
}

// The end of a charged particle inside the grid: its kinetic energy into `voxel`, and for a
// positron the annihilation photons from where it stopped.
template <class Real, class Ctx>
RPT_HOT_INLINE void stop_charged(TrackT<Real>& t, int64_t voxel, Ctx& c) {
  c.deposit(voxel, quantize(t.p.e));
  if (t.p.type == kPositron) annihilate_at_rest(t.p.r, voxel, t.rng, c);
}

// Range rejection (see the header): true when the residual range of t (range_g, g/cm2, in its
// voxel's material) is shorter than the distance to the nearest face of its voxel.
template <class Real>
RPT_INLINE bool range_rejected(const GridViewT<Real>& g, const TrackT<Real>& t, Real range_g, Real rho10) {
  return range_g / rho10 < safety_distance(g, t.vp, t.p.r);
}

// A new electron or positron: where it is, its energy's table index; false if it ends at once:
// outside the grid (escaped), without electron transport or at or below the cut, or range
// rejected in its first voxel (79 % of Lu-177's betas in 4.8 mm voxels), all deposited where
// it is made (a positron's annihilation photons emitted from there).
template <class Real, class Tally, class Sink>
RPT_INLINE bool settle_electron(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c) {
  const ParamsT<Real>& P = c.P;
  const GridViewT<Real>& g = P.grid;
  t.vp = locate(g, t.p.r);
  if (t.vp.index < 0) {
    c.cnt.escaped += quantize(t.p.e);
    return false;
  }
  if (!P.set.electron_transport || t.p.e <= P.set.el_cut) {
    stop_charged(t, t.vp.index, c);
    return false;
  }
  const TableViewT<Real>& tab = P.tab;
  t.k = energy_index(tab, t.p.e);
  const int32_t m = g.material[t.vp.index];
  const Real rho10 = Real(g.density[t.vp.index]) * Real(0.1);  // cm2/g -> 1/mm
  const Real range_g = lookup(t.p.type == kPositron ? tab.pos_range : tab.el_range, tab, m, t.k);
  if (range_rejected(g, t, range_g, rho10)) {
    stop_charged(t, t.vp.index, c);
    return false;
  }
  return true;
}

// One condensed-history step of electron or positron t (settled: settle_electron). Returns
// false when it ends (range rejected at the step's start, stopped, or escaped). Secondaries
// (delta rays, bremsstrahlung and annihilation photons) are emitted to the context.
template <class Real, class Tally, class Sink>
RPT_HOT_INLINE bool electron_step(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c) {
  const ParamsT<Real>& P = c.P;
  const GridViewT<Real>& g = P.grid;
  const TableViewT<Real>& tab = P.tab;
  PhiloxT<Real>& rng = t.rng;
  ParticleT<Real>& p = t.p;
  VoxelPos& vp = t.vp;
  if (++t.steps > kMaxElectronSteps) {  // safety net; never reached in normal transport
    stop_charged(t, vp.index, c);
    return false;
  }
  const bool positron = p.type == kPositron;
  const Real* range_tab = positron ? tab.pos_range : tab.el_range;
  const Real* hard_tab = positron ? tab.pos_sigma_hard : tab.el_sigma_hard;
  const int32_t m = g.material[vp.index];
  const Real rho10 = Real(g.density[vp.index]) * Real(0.1);  // cm2/g -> 1/mm
  const EIndexT<Real> k = t.k;
  const Real range_g = lookup(range_tab, tab, m, k);      // g/cm2
  const Real range_mm = range_g / rho10;
  const Real safety = safety_distance(g, vp, p.r);
  if (range_mm < safety) {
    stop_charged(t, vp.index, c);  // range rejection (see header)
    return false;
  }
  const Real s_loss = P.set.max_loss_fraction * range_mm;
  // hard Moller collisions and hard elastic events: two independent Poisson processes,
  // sampled as one of the summed rate whose events are of either kind in proportion. The rate
  // grows as the electron slows down along the step: the path to the next event solves
  // integral(sigma ds) = x, x exponential, to second order by the midpoint rule (the rate
  // of the energy half-way along the path at the start energy's rate).
  const bool brems = tab.brems_kc > Real(0);
  const Real sig_ev0 = (lookup(hard_tab, tab, m, k) + lookup(tab.el_sigma_el, tab, m, k) +
                        (brems ? lookup(tab.el_sigma_brems, tab, m, k) : Real(0))) * rho10;
  const Real x_ev = -real_log(rng.uniform());
  Real s_ev = sig_ev0 > Real(0) ? x_ev / sig_ev0 : far_distance<Real>();
  if (s_ev < s_loss) {
    const EIndexT<Real> km = index_from_range(tab, range_tab, m, range_g - Real(0.5) * s_ev * rho10, k.i + 1);
    s_ev = x_ev / ((lookup(hard_tab, tab, m, km) + lookup(tab.el_sigma_el, tab, m, km) +
                    (brems ? lookup(tab.el_sigma_brems, tab, m, km) : Real(0))) * rho10);
  }
  // A path shorter than the safety distance cannot leave the voxel, whatever its
  // deflections: the distances to the faces are needed only for a step that reaches it.
  const Real s_phys = dmin(s_loss, s_ev);
  const bool near_face = s_phys >= safety;
  const Real s_bnd = near_face ? dmax(distance_to_boundary(g, vp, p.r, p.d) + P.set.boundary_push,
                                      P.set.min_step_mm)
                               : far_distance<Real>();
  const Real s = dmin(s_phys, s_bnd);
  const bool event = s_ev < s_loss && s_ev < s_bnd;
  // energy at the end of the step (CSDA along the path; s <= s_loss < range, so > 0)
  EIndexT<Real> k_end;
  Real e_new = energy_from_range(tab, range_tab, m, range_g - s * rho10, k.i + 1, k_end);
  // random hinge: straight to the hinge, deflect, straight on (truncated at the boundary).
  // Soft first moment over the step: s / lambda_1 integrated along the slowing-down path
  // (trapezoid rule between the start and end energies).
  const Real t1 = s * rng.uniform();
  p.r = advance(p.r, p.d, t1);
  const Real tr1 = Real(0.5) * (lookup(tab.el_tr1, tab, m, k) + lookup(tab.el_tr1, tab, m, k_end)) * rho10;
  const Real mean_mu = Real(0.5) * one_minus_exp_neg(s * tr1);
  const Real cost = sample_multiple_scattering_cos(tab, mean_mu, rng);
  p.d = rotate(p.d, cost, rng.uniform());
  Real t2 = s - t1;
  bool crossed = false;
  if (near_face) {
    const Real d2 = distance_to_boundary(g, vp, p.r, p.d);
    if (t2 >= d2) {
      t2 = dmax(d2 + P.set.boundary_push, Real(0));
      crossed = true;
    }
  }
  p.r = advance(p.r, p.d, t2);
  EIndexT<Real> k_next = k_end;
  if (crossed) {
    // energy loss over the shorter path actually travelled, all in this voxel
    const Real new_range_g = range_g - (t1 + t2) * rho10;
    e_new = new_range_g > Real(0) ? energy_from_range(tab, range_tab, m, new_range_g, k.i + 1, k_next) : Real(0);
  }
  if (e_new > p.e) {
    e_new = p.e;
    k_next = k;
  }
  c.deposit(vp.index, quantize(p.e) - quantize(e_new));
  p.e = e_new;
  if (event && !crossed) {
    // the event at the step's end, with the cross sections of the energy it has there
    const Real sh1 = lookup(hard_tab, tab, m, k_next);
    const Real sb1 = brems ? lookup(tab.el_sigma_brems, tab, m, k_next) : Real(0);
    const Real sev1 = sh1 + sb1 + lookup(tab.el_sigma_el, tab, m, k_next);
    const Real xev = rng.uniform() * sev1;
    if (xev >= sh1 && xev < sh1 + sb1) {
      brems_emission(p, k_next, vp.index, rng, c);
      if (p.e > Real(0)) k_next = energy_index(tab, p.e);
    } else if (xev < sh1) {
      if (positron) {
        if (p.e > tab.el_wcc) {
          bhabha_collision(p, vp.index, rng, c);
          if (p.e > Real(0)) k_next = energy_index(tab, p.e);
        }
      } else if (p.e > Real(2) * tab.el_wcc) {
        moller_collision(p, vp.index, rng, c);
        k_next = energy_index(tab, p.e);
      }
    } else {
      const Real cos_h = sample_hard_elastic_cos(tab, m, k_next, rng);
      p.d = rotate(p.d, cos_h, rng.uniform());
    }
  }
  t.k = k_next;
  if (p.e <= P.set.el_cut) {
    stop_charged(t, vp.index, c);
    return false;
  }
  if (!near_face) return true;  // still in the same voxel
  vp = locate(g, p.r);
  if (vp.index < 0) {
    c.cnt.escaped += quantize(p.e);
    return false;
  }
  return true;
}

}  // namespace rpt
