// Per-history secondary stack and energy counters (fixed size: no allocation in kernels).
#pragma once
#include "types.hpp"

namespace rpt {

constexpr int kStackSize = 48;

struct Counters {
  int64_t emitted;   // energy units emitted by the decays (primaries + local lines)
  int64_t escaped;   // energy units that left the grid
};

struct ParticleStack {
  Particle p[kStackSize];
  int n;
  RPT_INLINE ParticleStack() : n(0) {}
  RPT_INLINE bool full() const { return n >= kStackSize; }
  RPT_INLINE void push(const Particle& q) { p[n++] = q; }
  RPT_INLINE Particle pop() { return p[--n]; }
};

// A history's mutable context: its random stream, its stack, its counters and the tally.
// Tally is a policy type with `void add(int64_t voxel, int64_t units)` (atomic on every backend).
template <class Rng, class Tally>
struct Track {
  Rng& rng;
  ParticleStack& stack;
  Counters& cnt;
  Tally& tally;
  const Params& P;

  // Secondary creation: pushed for later transport; when the stack is full it deposits locally
  // (never silently lost: the energy stays in the balance).
  RPT_INLINE void emit_secondary(const Particle& q, int64_t voxel) {
    if (stack.full()) {
      tally.add(voxel, quantize(q.e));
    } else {
      stack.push(q);
    }
  }
};

}  // namespace rpt
