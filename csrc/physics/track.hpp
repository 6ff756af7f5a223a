// A particle in flight, the context its steps run in, and the fixed stack of the GPU's history
// kernel. Every backend moves particles with the same step functions (photon_step,
// electron_step); they differ only in what happens to a new particle (the context's sink): the
// CPU runs it to its end at once (cpu/driver.cpp), the history kernel keeps it on a stack
// (run_history), the GPU's wavefront appends it to a queue in device memory
// (csrc/cuda/wavefront_body.hpp). Each particle carries its own random
// stream (rng.hpp), so every order of the steps gives the same bits.
#pragma once
#include "grid.hpp"
#include "params.hpp"
#include "rng.hpp"
#include "tables.hpp"
#include "types.hpp"

namespace rpt {

struct Counters {
  int64_t emitted;   // energy units emitted by the decays (primaries + local lines)
  int64_t escaped;   // energy units that left the grid
};

// A live particle between two steps: inside the grid (vp), above its tracking cut, its
// energy's table index (k), the electron steps taken (safety net: electron.hpp) and its
// random stream. Data only, so a structure-of-arrays layout can hold it
// (csrc/cuda/wavefront_body.hpp TrackQueue).
template <class Real>
struct TrackT {
  ParticleT<Real> p;
  VoxelPos vp;
  EIndexT<Real> k;
  int32_t steps;
  PhiloxT<Real> rng;
};

// Fixed-size stack of the GPU's history kernel (no allocation in kernels); push() fails when
// it is full.
template <class Real, int N>
struct FixedStack {
  TrackT<Real> t[N];
  int n = 0;
  RPT_INLINE bool empty() const { return n == 0; }
  RPT_INLINE bool push(const TrackT<Real>& q) {
    if (n >= N) return false;
    t[n++] = q;
    return true;
  }
  RPT_INLINE TrackT<Real> pop() { return t[--n]; }
};

template <class Real, class Tally, class Sink>
struct StepCtx;

template <class Real, class Tally, class Sink>
RPT_INLINE bool settle_photon(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c);
template <class Real, class Tally, class Sink>
RPT_INLINE bool settle_electron(TrackT<Real>& t, StepCtx<Real, Tally, Sink>& c);

// What the steps of a history (CPU) or of one kernel thread (GPU) share: the parameters in
// the precision `Real`, the tally, the energy counters and the sink of new particles.
// Tally is a policy type with `void add(int64_t voxel, int64_t units)` (atomic on every backend)
// and `void prefetch(int64_t voxel)` (a cache hint before a later add; may do nothing).
// Sink has `bool push(const TrackT<Real>&)` (false: no room). Deposits go through deposit():
// consecutive deposits in the same voxel (the steps of an electron inside one voxel, a
// range-rejected secondary where it was made) are summed here and reach the tally as one
// atomic add when the voxel changes or at flush(). The tally is an integer sum, so the result
// is the same to the last unit, with fewer atomic operations.
template <class Real, class Tally, class Sink>
struct StepCtx {
  const ParamsT<Real>& P;
  Tally& tally;
  Counters& cnt;
  Sink& sink;
  int64_t pend_voxel = -1;  // voxel of the pending sum
  int64_t pend_units = 0;   // energy units not yet added to the tally

  RPT_INLINE StepCtx(const ParamsT<Real>& p, Tally& t, Counters& c, Sink& s)
      : P(p), tally(t), cnt(c), sink(s) {}

  RPT_HOT_INLINE void deposit(int64_t voxel, int64_t units) {
    if (voxel != pend_voxel) {
      if (pend_units != 0) tally.add(pend_voxel, pend_units);
      pend_voxel = voxel;
      pend_units = 0;
    }
    pend_units += units;
  }

  // Hands the pending sum to the tally.
  RPT_INLINE void flush() {
    if (pend_units != 0) tally.add(pend_voxel, pend_units);
    pend_units = 0;
  }

  // A new particle q, made in `voxel` by the particle (or decay) whose stream is `parent`: it
  // gets a stream of its own; what ends at once (outside the grid, below its cut, an electron
  // whose range does not reach its voxel's faces) ends here, the rest waits in the sink. A
  // full sink (only the GPU history kernel's fixed stack) deposits the energy in `voxel`.
  // The stream is drawn only for a particle that draws random numbers: one that lives on, or
  // a positron (its annihilation photons' directions); an electron or photon that ends at once
  // costs its parent no random number (deterministic: settling draws none).
  RPT_INLINE void emit(PhiloxT<Real>& parent, const ParticleT<Real>& q, int64_t voxel) {
    TrackT<Real> t;
    t.p = q;
    t.steps = 0;
    if (q.type == kPositron) t.rng = parent.child();
    const bool alive = q.type == kPhoton ? settle_photon(t, *this) : settle_electron(t, *this);
    if (!alive) return;
    if (q.type != kPositron) t.rng = parent.child();
    if (!sink.push(t)) deposit(voxel, quantize(q.e));
  }

  // The same for a photon (annihilation photons: no call back into the electron routines).
  RPT_INLINE void emit_photon(PhiloxT<Real>& parent, const ParticleT<Real>& q, int64_t voxel) {
    TrackT<Real> t;
    t.p = q;
    t.steps = 0;
    if (!settle_photon(t, *this)) return;
    t.rng = parent.child();
    if (!sink.push(t)) deposit(voxel, quantize(q.e));
  }
};

}  // namespace rpt
