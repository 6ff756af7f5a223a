// The GPU's wavefront (event-based) transport: kernel bodies as plain host+device functions.
//
// One thread per history keeps a GPU idle: the electrons of one warp take very different
// numbers of steps, so most lanes wait (2.65 of 32 threads active per instruction, measured on
// an H200 with the history kernel). The wavefront moves particles instead of histories:
//
//   decay kernel    one thread per decay: its voxel, its local energy, and each particle it
//                   emits that does not end at once (79 % of Lu-177's betas range-reject in
//                   a 4.8 mm voxel and end here) appended to the electron or photon queue
//   electron kernel one thread per live electron/positron: one condensed-history step
//   photon kernel   one thread per live photon: its flights to the next real interaction and
//                   that interaction
//
// Each step kernel reads its queue (structure of arrays, TrackQueue) and appends what is still
// alive, and the secondaries it made, to the output queues (double buffered: the host swaps
// them after each round; host side: wavefront_loop.hpp). The queues are dense, so every lane
// of a warp runs the same action, and no thread keeps a particle stack. Each particle carries
// its own random stream (physics/rng.hpp), so the queue order, which atomics make arbitrary,
// does not change a bit of the result; the tallies are the 64-bit integer sums of the history
// kernel (kernel_body.hpp).
//
// Room in the queues: the decay kernel first counts the particles of a decay (the decay runs
// with a counting sink: it is a pure function of (seed, history)), then reserves room for all
// of them at once (one compare-and-swap on a word holding both queue counts); a decay that
// does not fit is deferred to the next round, so nothing is dropped. A step makes at most 2
// electrons and 3 photons per electron (survivor + delta ray; bremsstrahlung photon + 2
// annihilation photons) and 1 of each per photon: the host steps only as many particles as
// the output queues are sure to hold and copies the rest unchanged.
//
// The kernels take the run's parameters by value (kernel parameter space: read through the
// constant cache where a field is used, no registers held for the whole struct).
//
// Compiled by nvcc (wavefront_kernels.cu) and by the host compiler (bindings/emulation.cpp, which runs
// these bodies over loops of thread indices: the tests compare them with the CPU backend bit
// for bit).
#pragma once
#include "kernel_body.hpp"

#if defined(__CUDACC__)  // both passes of nvcc (the host stubs must see what the device code does)
#include <cooperative_groups.h>
#include <cooperative_groups/scan.h>
#endif

namespace rpt {
namespace gpu {

// Word indices of the wavefront's counters (unsigned long long [kWaveWords]).
enum WaveWord : int32_t {
  kWaveIn = 0,        // queue counts as the decay kernel fills them: electrons | photons << 32
  kWaveOutE = 1,      // electron output queue count (step kernels)
  kWaveOutP = 2,      // photon output queue count
  kWaveDeferred = 3,  // decays deferred by the decay kernel (no room)
  kWaveWords = 4
};

// Most threads per block of a wavefront kernel (their __launch_bounds__).
constexpr uint32_t kWaveMaxBlock = 512;

// Most outputs of one step (see the header): per electron step 2 electrons or 3 photons, per
// photon step 1 of each (a scattered photon and its Compton electron).
constexpr uint32_t kElectronStepMaxElectrons = 2, kElectronStepMaxPhotons = 3;
constexpr uint32_t kPhotonStepMaxElectrons = 1, kPhotonStepMaxPhotons = 1;

RPT_INLINE unsigned long long atomic_cas_u64(unsigned long long* p, unsigned long long expected,
                                             unsigned long long desired) {
#if defined(__CUDA_ARCH__)
  return atomicCAS(p, expected, desired);
#else
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;  // the value found (== the expected one when the exchange happened)
#endif
}

RPT_INLINE unsigned long long atomic_load_u64(unsigned long long* p) {
#if defined(__CUDA_ARCH__)
  return *(volatile unsigned long long*)p;
#else
  return __atomic_load_n(p, __ATOMIC_RELAXED);
#endif
}

// Live particles as a structure of arrays: each field of TrackT in an array of its own, so a
// warp's loads and stores of one field are contiguous. The random stream is stored as
// (history, stream id, block, words used); its key is the run's seed.
template <class Real>
struct TrackQueue {
  unsigned long long* history;
  Real *rx, *ry, *rz, *dx, *dy, *dz, *e, *kf;
  int32_t *ix, *iy, *iz, *ki, *steps;
  uint32_t *meta;  // particle type | words of the stream's block used << 8
  uint32_t *stream, *block;

  RPT_INLINE void store(uint64_t i, const TrackT<Real>& t) const {
    history[i] = t.rng.history();
    rx[i] = t.p.r.x; ry[i] = t.p.r.y; rz[i] = t.p.r.z;
    dx[i] = t.p.d.x; dy[i] = t.p.d.y; dz[i] = t.p.d.z;
    e[i] = t.p.e;
    kf[i] = t.k.f;
    ix[i] = t.vp.ix; iy[i] = t.vp.iy; iz[i] = t.vp.iz;
    ki[i] = t.k.i;
    steps[i] = t.steps;
    meta[i] = uint32_t(t.p.type) | (uint32_t(t.rng.used) << 8);
    stream[i] = t.rng.stream;
    block[i] = t.rng.block;
  }

  RPT_INLINE TrackT<Real> load(uint64_t i, uint64_t seed, const GridViewT<Real>& g) const {
    TrackT<Real> t;
    const uint32_t m = meta[i];
    t.p.r = Vec3T<Real>{rx[i], ry[i], rz[i]};
    t.p.d = Vec3T<Real>{dx[i], dy[i], dz[i]};
    t.p.e = e[i];
    t.p.type = int32_t(m & 0xffu);
    t.vp.ix = ix[i]; t.vp.iy = iy[i]; t.vp.iz = iz[i];
    t.vp.index = (int64_t(t.vp.iz) * g.ny + t.vp.iy) * g.nx + t.vp.ix;
    t.k.i = ki[i];
    t.k.f = kf[i];
    t.steps = steps[i];
    t.rng = PhiloxT<Real>::resume(seed, history[i], stream[i], block[i], int(m >> 8));
    return t;
  }
};

// Bytes of one queue entry.
template <class Real>
RPT_INLINE constexpr uint64_t track_queue_bytes() {
  return 8 + 8 * sizeof(Real) + 5 * 4 + 3 * 4;
}

template <class T>
RPT_INLINE void take_array(unsigned char*& p, T*& field, uint64_t capacity) {
  field = reinterpret_cast<T*>(p);
  p += capacity * sizeof(T);
}

// A queue of `capacity` entries in the memory at `base` (track_queue_bytes() * capacity bytes,
// 8-byte aligned): the 8-byte fields first, so every array stays aligned.
template <class Real>
RPT_INLINE TrackQueue<Real> carve_track_queue(void* base, uint64_t capacity) {
  TrackQueue<Real> q;
  unsigned char* p = static_cast<unsigned char*>(base);
  take_array(p, q.history, capacity);
  take_array(p, q.rx, capacity); take_array(p, q.ry, capacity); take_array(p, q.rz, capacity);
  take_array(p, q.dx, capacity); take_array(p, q.dy, capacity); take_array(p, q.dz, capacity);
  take_array(p, q.e, capacity); take_array(p, q.kf, capacity);
  take_array(p, q.ix, capacity); take_array(p, q.iy, capacity); take_array(p, q.iz, capacity);
  take_array(p, q.ki, capacity); take_array(p, q.steps, capacity);
  take_array(p, q.meta, capacity); take_array(p, q.stream, capacity); take_array(p, q.block, capacity);
  return q;
}

// Sinks of new particles (physics/track.hpp StepCtx).
struct NullTally {
  RPT_INLINE void add(int64_t, int64_t) const {}
  RPT_INLINE void prefetch(int64_t) const {}
};

// Counts a decay's particles by type (the decay kernel's first pass).
template <class Real>
struct CountSink {
  uint32_t electrons = 0, photons = 0;
  RPT_INLINE bool push(const TrackT<Real>& t) {
    if (t.p.type == kPhoton) ++photons; else ++electrons;
    return true;
  }
};

// Writes a decay's particles into the room reserved for them.
template <class Real>
struct ReservedSink {
  TrackQueue<Real> qe, qp;
  uint64_t next_e, next_p;
  RPT_INLINE bool push(const TrackT<Real>& t) {
    if (t.p.type == kPhoton) qp.store(next_p++, t);
    else qe.store(next_e++, t);
    return true;
  }
};

// The next free entry of a queue whose count is words[which]. On a GPU the lanes of a warp that
// append to the same queue at the same time take their entries with one atomic add
// (cooperative groups: the lanes converged here, partitioned by queue); elsewhere one each.
RPT_INLINE uint64_t append_index(unsigned long long* words, int which) {
#if defined(__CUDA_ARCH__)
  namespace cg = cooperative_groups;
  const cg::coalesced_group active = cg::coalesced_threads();
  const cg::coalesced_group peers = cg::labeled_partition(active, which);
  unsigned long long base = 0;
  if (peers.thread_rank() == 0) base = atomicAdd(words + which, (unsigned long long)peers.size());
  base = peers.shfl(base, 0);
  return uint64_t(base) + peers.thread_rank();
#else
  return atomic_add_u64(words + which, 1ull);
#endif
}

// Appends to the output queues (room guaranteed by the host: wavefront_loop.hpp).
template <class Real>
struct AppendSink {
  TrackQueue<Real> qe, qp;
  unsigned long long* words;
  RPT_INLINE bool push(const TrackT<Real>& t) {
    if (t.p.type == kPhoton) qp.store(append_index(words, kWaveOutP), t);
    else qe.store(append_index(words, kWaveOutE), t);
    return true;
  }
};

// Room for ne electrons and np photons, both or neither: the queue counts (one word: electrons
// in the low half, photons in the high half) grow only while they stay within the limits.
RPT_INLINE bool reserve_room(unsigned long long* word, uint32_t ne, uint32_t np, uint32_t limit_e,
                             uint32_t limit_p, uint64_t& base_e, uint64_t& base_p) {
  unsigned long long old = atomic_load_u64(word);
  for (;;) {
    const uint64_t e0 = uint64_t(old & 0xffffffffull), p0 = uint64_t(old >> 32);
    if (e0 + ne > limit_e || p0 + np > limit_p) return false;
    const unsigned long long want = (unsigned long long)(e0 + ne) | ((unsigned long long)(p0 + np) << 32);
    const unsigned long long seen = atomic_cas_u64(word, old, want);
    if (seen == old) {
      base_e = e0;
      base_p = p0;
      return true;
    }
    old = seen;
  }
}

// Room for one decay's ne electrons and np photons (reserve_room). On a GPU the lanes of a warp
// that reach this together reserve with one compare-and-swap for all of them (their counts
// summed, each lane's room at its prefix sum), and are all deferred if it fails; elsewhere
// each decay reserves its own. A decay without particles needs no room.
RPT_INLINE bool reserve_decay(unsigned long long* words, uint32_t ne, uint32_t np, uint32_t limit_e,
                              uint32_t limit_p, uint64_t& base_e, uint64_t& base_p) {
#if defined(__CUDA_ARCH__)
  namespace cg = cooperative_groups;
  const cg::coalesced_group g = cg::coalesced_threads();
  const uint32_t end_e = cg::inclusive_scan(g, ne), end_p = cg::inclusive_scan(g, np);
  const uint32_t last = g.size() - 1;
  const uint32_t sum_e = g.shfl(end_e, last), sum_p = g.shfl(end_p, last);
  if ((sum_e | sum_p) == 0) return true;
  uint64_t be = 0, bp = 0;
  int ok = 0;
  if (g.thread_rank() == 0) ok = reserve_room(words + kWaveIn, sum_e, sum_p, limit_e, limit_p, be, bp) ? 1 : 0;
  ok = g.shfl(ok, 0);
  be = g.shfl(be, 0);
  bp = g.shfl(bp, 0);
  base_e = be + (end_e - ne);
  base_p = bp + (end_p - np);
  return ok != 0;
#else
  if ((ne | np) == 0) return true;
  return reserve_room(words + kWaveIn, ne, np, limit_e, limit_p, base_e, base_p);
#endif
}

// The decay kernel: decays list[0..n_list) then h_start .. h_start + n_fresh - 1, one thread
// each (grid-stride). A decay whose particles do not fit within the limits is written to
// `deferred` and leaves no trace (nothing tallied, nothing counted).
template <class Real>
RPT_INLINE void wave_decay_body(const Idx3& block_idx, const Idx3& block_dim, const Idx3& grid_dim,
                                const Idx3& thread_idx, const ParamsT<Real>& P, uint64_t seed,
                                const long long* list, int64_t n_list, int64_t h_start,
                                int64_t n_fresh, TrackQueue<Real> qe, TrackQueue<Real> qp,
                                uint32_t limit_e, uint32_t limit_p, unsigned long long* words,
                                long long* deferred, unsigned long long* batch_tally,
                                unsigned long long* counters) {
  AtomicTally tally{batch_tally};
  Counters cnt{0, 0};
  const int64_t n = n_list + n_fresh;
  const int64_t stride = grid_stride(block_dim, grid_dim);
  for (int64_t i = global_thread(block_idx, block_dim, thread_idx); i < n; i += stride) {
    const int64_t h = i < n_list ? int64_t(list[i]) : h_start + (i - n_list);
    CountSink<Real> count;
    NullTally none;
    Counters scratch{0, 0};
    StepCtx<Real, NullTally, CountSink<Real>> dry(P, none, scratch, count);
    decay(seed, uint64_t(h), dry);
    uint64_t be = 0, bp = 0;
    if (!reserve_decay(words, count.electrons, count.photons, limit_e, limit_p, be, bp)) {
      deferred[append_index(words, kWaveDeferred)] = h;
      continue;
    }
    ReservedSink<Real> sink{qe, qp, be, bp};
    StepCtx<Real, AtomicTally, ReservedSink<Real>> c(P, tally, cnt, sink);
    decay(seed, uint64_t(h), c);
    c.flush();
  }
  if (cnt.emitted != 0) atomic_add_u64(counters + kEmitted, (unsigned long long)cnt.emitted);
  if (cnt.escaped != 0) atomic_add_u64(counters + kEscaped, (unsigned long long)cnt.escaped);
}

// A step kernel: entries [0, n_step) of `in` take one step (photon_step when Photon, else
// electron_step); the live ones and their secondaries are appended to out_e / out_p; entries
// [n_step, n_in) are copied there unchanged (no room was sure for their outputs).
template <bool Photon, class Real>
RPT_INLINE void wave_step_body(const Idx3& block_idx, const Idx3& block_dim, const Idx3& grid_dim,
                               const Idx3& thread_idx, const ParamsT<Real>& P, uint64_t seed,
                               TrackQueue<Real> in, int64_t n_in, int64_t n_step,
                               TrackQueue<Real> out_e, TrackQueue<Real> out_p,
                               unsigned long long* words, unsigned long long* batch_tally,
                               unsigned long long* counters) {
  AtomicTally tally{batch_tally};
  Counters cnt{0, 0};
  AppendSink<Real> sink{out_e, out_p, words};
  StepCtx<Real, AtomicTally, AppendSink<Real>> c(P, tally, cnt, sink);
  const int64_t stride = grid_stride(block_dim, grid_dim);
  for (int64_t i = global_thread(block_idx, block_dim, thread_idx); i < n_in; i += stride) {
    TrackT<Real> t = in.load(uint64_t(i), seed, P.grid);
    bool alive = true;
    if (i < n_step) alive = Photon ? photon_step(t, c) : electron_step(t, c);
    if (alive) sink.push(t);
  }
  c.flush();
  if (cnt.emitted != 0) atomic_add_u64(counters + kEmitted, (unsigned long long)cnt.emitted);
  if (cnt.escaped != 0) atomic_add_u64(counters + kEscaped, (unsigned long long)cnt.escaped);
}

}  // namespace gpu
}  // namespace rpt
