// Per-history secondary stack and energy counters (fixed size: no allocation in kernels).
#pragma once
#include "params.hpp"
#include "types.hpp"

namespace rpt {

constexpr int kStackSize = 48;

struct Counters {
  int64_t emitted;   // energy units emitted by the decays (primaries + local lines)
  int64_t escaped;   // energy units that left the grid
};

template <class Real>
struct ParticleStackT {
  ParticleT<Real> p[kStackSize];
  int n;
  RPT_INLINE ParticleStackT() : n(0) {}
  RPT_INLINE bool full() const { return n >= kStackSize; }
  RPT_INLINE void push(const ParticleT<Real>& q) { p[n++] = q; }
  RPT_INLINE ParticleT<Real> pop() { return p[--n]; }
};
using ParticleStack = ParticleStackT<double>;

// A history's mutable context: its random stream, its stack, its counters and the tally, in
// the precision `Real` of its parameters (Rng::uniform() returns Real).
// Tally is a policy type with `void add(int64_t voxel, int64_t units)` (atomic on every backend)
// and `void prefetch(int64_t voxel)` (a cache hint before a later add; may do nothing).
// Deposits go through deposit(): consecutive deposits in the same voxel (the steps of an
// electron inside one voxel, a range-rejected secondary where it was made) are summed here and
// reach the tally as one atomic add when the voxel changes or at flush(). The tally is an
// integer sum, so the result is the same to the last unit, with fewer atomic operations.
template <class Real, class Rng, class Tally>
struct Track {
  Rng& rng;
  ParticleStackT<Real>& stack;
  Counters& cnt;
  Tally& tally;
  const ParamsT<Real>& P;
  int64_t pend_voxel = -1;  // voxel of the pending sum
  int64_t pend_units = 0;   // energy units not yet added to the tally

  RPT_INLINE void deposit(int64_t voxel, int64_t units) {
    if (voxel != pend_voxel) {
      if (pend_units != 0) tally.add(pend_voxel, pend_units);
      pend_voxel = voxel;
      pend_units = 0;
    }
    pend_units += units;
  }

  // Hands the pending sum to the tally; every history ends with it.
  RPT_INLINE void flush() {
    if (pend_units != 0) tally.add(pend_voxel, pend_units);
    pend_units = 0;
  }

  // Secondary creation: pushed for later transport; when the stack is full it deposits locally
  // (never silently lost: the energy stays in the balance).
  RPT_INLINE void emit_secondary(const ParticleT<Real>& q, int64_t voxel) {
    if (stack.full()) {
      deposit(voxel, quantize(q.e));
    } else {
      stack.push(q);
    }
  }
};

}  // namespace rpt
