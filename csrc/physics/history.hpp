// A decay (the one function every backend starts a history with) and the history-based loop.
//
// One decay = one history: the voxel drawn from the source map (an alias table over voxels,
// or over blocks of voxels on large grids: params.hpp SourceView), a uniform
// position inside it, then every emission of the nuclide (ICRP-107 data): the beta particle(s)
// from the tabulated spectrum, the positron(s) from theirs (beta+ emitters; each annihilates at
// rest where it stops, electron.hpp), and each discrete line (conversion and Auger electrons, gamma and
// X rays) emitted floor(y) times plus once with probability y - floor(y) (independently of the
// other lines), isotropically, each transported with all its secondaries. Lines below the
// tracking cuts are deposited at the decay site as their expected energy (zero-variance local
// deposition, documented). Each particle is then moved step by step (photon_step,
// electron_step) with a random stream of its own (rng.hpp), by the history loop (run_history:
// the CPU, the GPU's history kernel) or by the GPU's wavefront (csrc/cuda/wavefront_body.hpp).
#pragma once
#include "electron.hpp"
#include "photon.hpp"
#include "rng.hpp"

namespace rpt {

// The source is sampled in double in both precisions (SourceView is shared: params.hpp), once
// per decay; the particles it emits take the history's precision `Real`.
template <class Rng>
RPT_INLINE int32_t sample_count(double yield, Rng& rng) {
  double n = floor(yield);
  double frac = yield - n;
  int32_t c = int32_t(n);
  if (frac > 0.0 && double(rng.uniform()) < frac) ++c;
  return c;
}

// Energy from an inverse CDF tabulated at u = i/(n-1), linear in between.
template <class Rng>
RPT_INLINE double sample_inverse_cdf(const double* inv, int32_t n, Rng& rng) {
  double x = double(rng.uniform()) * double(n - 1);
  int32_t i = int32_t(x);
  if (i >= n - 1) return inv[n - 1];
  double f = x - double(i);
  return inv[i] + f * (inv[i + 1] - inv[i]);
}

template <class Rng>
RPT_INLINE double sample_beta_energy(const SourceView& s, Rng& rng) {
  return sample_inverse_cdf(s.beta_inv_cdf, s.n_beta, rng);
}

// One emitted particle of a decay at r0 in voxel v: counted as emitted, a stream of its own.
template <class Real, class Ctx>
RPT_INLINE void emit_primary(const Vec3T<Real>& r0, int64_t v, Real e, int32_t type,
                             PhiloxT<Real>& rng, Ctx& c) {
  if (e <= Real(0)) return;
  c.cnt.emitted += quantize(e);
  c.emit(rng, ParticleT<Real>{r0, isotropic(rng), e, type}, v);
}

// The discrete lines of one decay. Line l of yield n_l + f_l is emitted n_l times, plus once
// more with probability f_l, independently of the other lines. The Bernoulli(f_l) draws are
// made as a unit-rate Poisson process on the cumulative-hazard axis (h_l = -ln(1 - f_l),
// H_k = h_1 + ... + h_k): line k fires when a point falls in (H_{k-1}, H_k], which happens
// with probability 1 - exp(-h_k) = f_k, independently for disjoint intervals. After a firing
// the process restarts at H_k (it is memoryless), so a decay costs one exponential per emitted
// line plus one, instead of one uniform per line (Lu-177 has 100 lines, ~0.6 emitted).
// emit(l) is called once per emission of line l, in the order drawn. The axis is in double
// (the hazards of rare lines stay distinct); the exponential deviates come in the generator's
// precision.
template <class Rng, class Emit>
RPT_INLINE void sample_lines(const SourceView& s, Rng& rng, Emit&& emit) {
  for (int32_t k = 0; k < s.n_whole; ++k) {
    const int32_t l = s.whole_line[k];
    for (int32_t c = 0; c < s.whole_count[k]; ++c) emit(l);
  }
  if (s.n_frac == 0) return;
  const double* H = s.frac_hcum;
  const int32_t last = s.n_frac - 1;
  int32_t lo = 0;
  double x = -double(real_log(rng.uniform()));
  while (x <= H[last]) {
    int32_t a = lo, b = last;  // the first k >= lo with H[k] >= x
    while (a < b) {
      const int32_t mid = (a + b) >> 1;
      if (H[mid] >= x) b = mid; else a = mid + 1;
    }
    emit(s.frac_line[a]);
    if (a == last) return;
    lo = a + 1;
    x = H[a] - double(real_log(rng.uniform()));
  }
}

// The voxel of drawn block b (params.hpp SourceView): the block itself when blocks are single
// voxels; else each of its voxels with probability decays / block_weight. The running sum is
// formed in the order block_weight was (host/params.cpp build_source), so it reaches the
// block's sum at its last voxel with decays; a voxel without decays leaves it unchanged and so
// never ends the scan. A target rounded up to the block's sum takes that last voxel.
template <class Rng>
RPT_INLINE uint32_t voxel_in_block(const SourceView& s, uint32_t b, uint32_t n_voxels, Rng& rng) {
  if (s.block == 1) return b;
  const uint32_t v0 = b * s.block;
  const uint32_t len = n_voxels - v0 < s.block ? n_voxels - v0 : s.block;
  const double target = double(rng.uniform()) * s.block_weight[b];
  const double* w = s.decays + v0;
  double c = 0.0;
  for (uint32_t i = 0; i < len; ++i) {
    c += w[i];
    if (c > target) return v0 + i;
  }
  for (uint32_t i = len; i-- > 0;)
    if (w[i] > 0.0) return v0 + i;
  return v0;  // not reached: a drawn block has decays
}

// Decay number `history` (global index, independent of batch and thread) in the precision of
// the context's parameters (ParamsT<double> or ParamsT<float>: the same random words either
// way): its voxel and position, the energy it deposits at once, and every particle it emits,
// each with a stream of its own; the particles that do not end at once go to the context's
// sink. The decay is a pure function of (seed, history): the GPU's wavefront runs it twice,
// once to count the particles (room in its queues), once to emit them.
template <class Real, class Tally, class Sink>
RPT_INLINE void decay(uint64_t seed, uint64_t history, StepCtx<Real, Tally, Sink>& c) {
  PhiloxT<Real> rng(seed, history);
  const ParamsT<Real>& P = c.P;
  const SourceView& s = P.src;
  const GridViewT<Real>& g = P.grid;
  const uint32_t j = rng.below(s.n_src);  // alias column (params.hpp SourceView)
  const uint32_t u = rng.next_u32();
  uint32_t b;
  if (s.alias_dense) {
    const uint32_t* col = s.alias + 2 * size_t(j);
    b = u < col[0] ? j : col[1];
  } else {
    const uint32_t* col = s.alias + 3 * size_t(j);
    b = u < col[0] ? col[1] : col[2];
  }
  const uint32_t nxy = uint32_t(g.nx) * uint32_t(g.ny);
  const uint32_t v = voxel_in_block(s, b, nxy * uint32_t(g.nz), rng);
  // the decay voxel's phantom entries are read by the first particle, its tally entry soon
  // after: start those cache misses now
  RPT_PREFETCH(g.material + v);
  RPT_PREFETCH(g.density + v);
  c.tally.prefetch(int64_t(v));
  const uint32_t iz = v / nxy;
  const uint32_t rem = v - iz * nxy;
  const uint32_t iy = rem / uint32_t(g.nx);
  const uint32_t ix = rem - iy * uint32_t(g.nx);
  const Vec3T<Real> r0{(Real(ix) + rng.uniform()) * g.sx, (Real(iy) + rng.uniform()) * g.sy,
                       (Real(iz) + rng.uniform()) * g.sz};
  if (s.local_mev > 0.0) {
    const int64_t q = quantize(s.local_mev);
    c.cnt.emitted += q;
    c.deposit(int64_t(v), q);
  }
  if (s.beta_yield > 0.0) {
    const int32_t nb = sample_count(s.beta_yield, rng);
    for (int32_t i = 0; i < nb; ++i)
      emit_primary(r0, int64_t(v), Real(sample_beta_energy(s, rng)), kElectron, rng, c);
  }
  if (s.pos_yield > 0.0) {
    // a positron is emitted even with no kinetic energy: it annihilates where it is born
    const int32_t np = sample_count(s.pos_yield, rng);
    for (int32_t i = 0; i < np; ++i) {
      const Real e = Real(sample_inverse_cdf(s.pos_inv_cdf, s.n_pos, rng));
      c.cnt.emitted += quantize(e);
      c.emit(rng, ParticleT<Real>{r0, isotropic(rng), e, kPositron}, int64_t(v));
    }
  }
  sample_lines(s, rng, [&](int32_t l) {
    emit_primary(r0, int64_t(v), Real(s.line_e[l]), s.line_photon[l] ? kPhoton : kElectron, rng, c);
  });
}

// A live particle's steps to its end.
template <class Real, class Tally, class Sink>
RPT_INLINE void run_to_end(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c) {
  if (t.p.type == kPhoton) {
    while (photon_step(t, c)) {
    }
  } else {
    while (electron_step(t, c)) {
    }
  }
}

// The history-based loop of the GPU's history kernel: decay `history`, then every particle of
// it to its end, depth first, from `stack` (a FixedStack; empty on entry and on return). The
// CPU runs each new particle to its end as it is made (cpu/driver.cpp), the same bits.
template <class Real, class Tally, class Stack>
RPT_INLINE void run_history(uint64_t seed, uint64_t history, const ParamsT<Real>& P, Tally& tally,
                            Counters& cnt, Stack& stack) {
  StepCtx<Real, Tally, Stack> c(P, tally, cnt, stack);
  decay(seed, history, c);
  while (!stack.empty()) {
    TrackT<Real> t = stack.pop();
    run_to_end(t, c);
  }
  c.flush();
}

}  // namespace rpt
