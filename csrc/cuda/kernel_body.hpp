// Bodies of the GPU kernels, as plain host+device functions.
//
// The __global__ kernels in kernels.cu are one-line wrappers that pass CUDA's built-in indices
// (blockIdx, blockDim, gridDim, threadIdx) to these functions. The CPU emulation
// (csrc/bindings/emulation.cpp) calls the very same functions over loops of block and thread
// indices, so the launch logic (grid-stride indexing, batch ranges, fold, counter reduction)
// is tested on machines without a GPU, bit for bit against the CPU backend.
//
// Compiled by nvcc (rptdose._core_cuda), by NVRTC (the cupy backend) and by the host C++
// compiler (emulation): no allocation, no exceptions, no STL (rules of csrc/physics).
#pragma once
#include "../physics/batch.hpp"
#include "../physics/history.hpp"

namespace rpt {
namespace gpu {

// Launch coordinates of one thread (only .x is used: 1-D grids of 1-D blocks).
struct Idx3 {
  uint32_t x, y, z;
};

// Relaxed 64-bit atomic add; the tallies hold int64 values in two's complement, so adding a
// negative value through the unsigned type is exact.
// Returns the value before the add (the wavefront's queue appends use it).
RPT_INLINE unsigned long long atomic_add_u64(unsigned long long* p, unsigned long long v) {
#if defined(__CUDA_ARCH__)
  return atomicAdd(p, v);
#else
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

// Tally policy for rpt::run_history: integer energy units added atomically to the batch tally.
struct AtomicTally {
  unsigned long long* e;
  RPT_INLINE void add(int64_t voxel, int64_t units) const {
    atomic_add_u64(e + voxel, (unsigned long long)units);
  }
  RPT_INLINE void prefetch(int64_t) const {}
};

// Indices into the run counters (unsigned long long [kNumCounters], int64 two's complement).
enum CounterIndex : int32_t { kEmitted = 0, kEscaped = 1, kDeposited = 2, kNumCounters = 3 };

// Threads per block of the voxel kernels (fold, finalize): grid-stride loops over the voxels.
constexpr uint32_t kVoxelBlock = 256;

// Blocks of a voxel kernel: enough for every voxel, at most 32 per multiprocessor.
RPT_INLINE uint32_t voxel_grid(int64_t n_voxels, int32_t multiprocessors) {
  const int64_t blocks = (n_voxels + kVoxelBlock - 1) / kVoxelBlock;
  const int64_t most = int64_t(multiprocessors > 0 ? multiprocessors : 1) * 32;
  return uint32_t(blocks < 1 ? 1 : (blocks < most ? blocks : most));
}

RPT_INLINE int64_t global_thread(const Idx3& block_idx, const Idx3& block_dim,
                                 const Idx3& thread_idx) {
  return int64_t(block_idx.x) * int64_t(block_dim.x) + int64_t(thread_idx.x);
}

RPT_INLINE int64_t grid_stride(const Idx3& block_dim, const Idx3& grid_dim) {
  return int64_t(grid_dim.x) * int64_t(block_dim.x);
}

// Live particles of one history in the history kernel: beyond this many, a new particle is
// deposited where it is made (the CPU and the wavefront have no such limit).
constexpr int kHistoryStack = 24;

// The history kernel: histories [h0, h1) of one launch, one thread per history in a
// grid-stride loop, each history to its end on a stack in local memory. Kept beside the
// wavefront (wavefront_body.hpp) for comparison and for the cupy backend. Each thread
// sums its own energy counters and adds them to `counters` once at the end.
// `P` points to a ParamsT (double or float: the run's precision) whose array pointers are valid
// where this runs (device memory on the GPU); its fields are read through the pointer where
// used (a copy in registers took 232 registers in single precision, 154 in double).
template <class Real>
RPT_INLINE void histories_body(const Idx3& block_idx, const Idx3& block_dim, const Idx3& grid_dim,
                               const Idx3& thread_idx, const ParamsT<Real>* P, uint64_t seed,
                               int64_t h0, int64_t h1, unsigned long long* batch_tally,
                               unsigned long long* counters) {
  const ParamsT<Real>& params = *P;
  AtomicTally tally{batch_tally};
  Counters cnt{0, 0};
  FixedStack<Real, kHistoryStack> stack;
  const int64_t stride = grid_stride(block_dim, grid_dim);
  for (int64_t h = h0 + global_thread(block_idx, block_dim, thread_idx); h < h1; h += stride)
    run_history(seed, uint64_t(h), params, tally, cnt, stack);
  if (cnt.emitted != 0) atomic_add_u64(counters + kEmitted, (unsigned long long)cnt.emitted);
  if (cnt.escaped != 0) atomic_add_u64(counters + kEscaped, (unsigned long long)cnt.escaped);
}

// End of a batch: fold the batch tally into the exact run total and the spread of the batch
// means (welford_m2; the batch holds `n_batch` histories, `h_before` came before it), add the
// batch's region sums (integer units, row of this batch), and zero the batch tally for the next
// batch. One thread per voxel (grid-stride): every voxel's sums are updated by one thread in
// batch order, as on the CPU.
RPT_INLINE void fold_body(const Idx3& block_idx, const Idx3& block_dim, const Idx3& grid_dim,
                          const Idx3& thread_idx, int64_t n_voxels,
                          unsigned long long* batch_tally, unsigned long long* total,
                          float* m2, int64_t h_before, int64_t n_batch, const int32_t* regions,
                          int32_t n_regions, unsigned long long* region_units) {
  const int64_t stride = grid_stride(block_dim, grid_dim);
  for (int64_t v = global_thread(block_idx, block_dim, thread_idx); v < n_voxels; v += stride) {
    const int64_t x = (int64_t)batch_tally[v];
    const int64_t t = (int64_t)total[v] + x;
    if (t == 0) continue;  // nothing here yet: M2 stays 0
    total[v] = (unsigned long long)t;
    m2[v] = welford_m2(m2[v], x, t, h_before, n_batch);
    if (x == 0) continue;
    batch_tally[v] = 0ull;
    if (n_regions > 0) {
      const int32_t r = regions[v];
      if (r >= 0 && r < n_regions) atomic_add_u64(region_units + r, (unsigned long long)x);
    }
  }
}

// End of the run: energy (MeV) per voxel into `edep_mev` (may be the batch tally's memory,
// which is no longer needed), the relative uncertainty's float64 bits over `total` (each
// thread reads its voxel's total first), and the deposited total (integer units) into
// counters[kDeposited].
RPT_INLINE void finalize_body(const Idx3& block_idx, const Idx3& block_dim, const Idx3& grid_dim,
                              const Idx3& thread_idx, int64_t n_voxels, unsigned long long* total,
                              const float* m2, double* edep_mev, int64_t histories,
                              int32_t batches, unsigned long long* counters) {
  const int64_t stride = grid_stride(block_dim, grid_dim);
  int64_t deposited = 0;
  for (int64_t v = global_thread(block_idx, block_dim, thread_idx); v < n_voxels; v += stride) {
    const int64_t t = (int64_t)total[v];
    deposited += t;
    edep_mev[v] = double(t) * kEnergyUnitMeV;
    total[v] = double_bits(batch_rel_uncertainty(double(t), double(m2[v]), histories, batches));
  }
  if (deposited != 0) atomic_add_u64(counters + kDeposited, (unsigned long long)deposited);
}

}  // namespace gpu
}  // namespace rpt
