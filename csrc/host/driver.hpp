// The one batch loop of every backend, written once over executors.
//
// `drive` splits the histories into batches (physics/batch.hpp) and each batch into chunks
// sized by time (host/chunking.hpp: ~0.2 s each; a CPU chunk is one OpenMP loop, a GPU chunk
// one launch), calls the progress callable between chunks, then either folds each batch into
// the run's sums and finalizes the run, or (export mode, `RunOptions::take_batch` set) hands
// each batch's integer tally to the caller, which folds it elsewhere in batch order: a
// checkpoint file, a Dask client (python/rptdose/transport/batched.py). Either way the same
// welford_m2 folds the same integer tallies in the same order, so the dose is bit-identical.
//
// Executors: CpuExec (cpu/driver.cpp, OpenMP threads over histories), CudaExec
// (cuda/launch.cu, kernels on a device), EmulatedExec (bindings/emulation.cpp: the CUDA kernel
// bodies over loops of block and thread indices on the CPU) and PyExec (bindings/py_exec.cpp:
// an executor written in Python: the cupy backend's launches, python/rptdose/transport/cupy_backend.py).
// Host-only C++ (no CUDA headers): compiled by the host compiler and by nvcc's host pass.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/chunking.hpp"
#include "host/params.hpp"
#include "physics/batch.hpp"
#include "physics/types.hpp"

namespace rpt::host {

// Most histories in one chunk: bounds the energy a chunk can add before the overflow guard
// looks again (<= 1e8 histories * the most energy per decay << 2^63 units).
constexpr int64_t kMaxChunk = 100000000;

// Export mode's consumer: batch b's tally [n_voxels] (integer energy units; the buffer is the
// executor's and is reused after the call), the energy its histories emitted and the energy
// that escaped the grid (units). Returns false to stop the run.
using BatchSink = std::function<bool(int32_t b, const int64_t* tally, int64_t emitted, int64_t escaped)>;

struct RunOptions {
  int64_t histories = 0;
  uint64_t seed = 0;
  int32_t batches = 10;
  const int32_t* regions = nullptr;  // [n_voxels] labels 0..n_regions-1, -1 none
  int32_t n_regions = 0;
  int32_t threads = 0;     // CPU threads; 0: OpenMP's default
  Precision precision = Precision::kDouble;  // of the transport: HostRun params or params_f32
  uint32_t grid_dim = 0;   // GPU: blocks per history launch; 0: chosen by the executor
  uint32_t block_dim = 0;  // GPU: threads per block; 0: chosen by the executor
  int64_t chunk = 0;       // histories per chunk, fixed; 0: sized by time
  bool wavefront = true;   // GPU: the wavefront (cuda/wavefront_body.hpp), else the history kernel
  int64_t queue_capacity = 0;  // GPU wavefront: particles per queue; 0: chosen by the executor
  // export mode: batches [first_batch, end_batch) (end_batch < 0: to the last) handed to
  // take_batch instead of folded; nothing is finalized
  int32_t first_batch = 0;
  int32_t end_batch = -1;
  BatchSink take_batch;
  // called on the calling thread between chunks with the histories done; false aborts
  std::function<bool(int64_t)> progress;
};

// What a GPU wavefront did in a run (cuda/wavefront_loop.hpp counts it).
struct WaveStats {
  int64_t rounds = 0;          // step launches (one electron and one photon kernel each)
  int64_t decay_launches = 0;
  int64_t deferred = 0;        // decays deferred for want of room (run in a later round)
  int64_t electron_steps = 0, photon_steps = 0;
  int64_t held = 0;            // particles copied without a step (no room sure for their outputs)
};

struct RunOutput {
  // [n_voxels] energy (MeV) summed over all histories, and the relative uncertainty, as
  // float64 bit patterns (the CPU converts its integer tallies in place: no second buffer)
  std::vector<int64_t> edep_mev_bits;
  std::vector<int64_t> rel_uncertainty_bits;
  std::vector<double> region_batch_mev;  // [batches * n_regions]
  int64_t emitted = 0, deposited = 0, escaped = 0;  // energy units (kEnergyUnitMeV)
  int32_t threads_used = 0;              // CPU threads, or grid_dim * block_dim
  uint32_t grid_dim = 0, block_dim = 0;  // GPU launch shape (0 on the CPU)
  int64_t chunk = 0;                     // most histories per chunk
  int64_t launches = 0;                  // chunks run
  bool wavefront = false;                // GPU: the wavefront ran (else the history kernel)
  int64_t queue_capacity = 0;            // wavefront: particles per queue
  WaveStats wave;                        // wavefront: what it did
  Precision precision = Precision::kDouble;
  bool aborted = false;
};

// The argument checks of every backend, with the same messages; `capacity` is the most histories
// the tallies hold for this source (max_histories(mean energy per decay)).
inline void validate_options(int64_t capacity, const RunOptions& opt) {
  if (opt.batches < kMinBatches)
    throw std::invalid_argument("batches: expected >= " + std::to_string(kMinBatches));
  if (opt.histories < opt.batches)
    throw std::invalid_argument("histories: expected >= batches (" + std::to_string(opt.batches) + ")");
  if (opt.histories > capacity)
    throw std::invalid_argument("histories: " + std::to_string(opt.histories) + " exceeds the tally capacity of " +
                                std::to_string(capacity) + " for this source");
  if (opt.n_regions < 0) throw std::invalid_argument("regions: negative region count");
  if (opt.n_regions > 0 && !opt.regions) throw std::invalid_argument("regions: null array");
  if (opt.block_dim > 1024) throw std::invalid_argument("block_dim: expected 0 (auto) or 1..1024");
  if (opt.queue_capacity < 0 || opt.queue_capacity > 0x7fffffffLL)
    throw std::invalid_argument("queue_capacity: expected 0 (auto) or up to 2^31-1");
  if (opt.chunk < 0 || opt.chunk > kMaxChunk)
    throw std::invalid_argument("chunk: expected 0 (auto) or 1.." + std::to_string(kMaxChunk));
  const int32_t end = opt.end_batch < 0 ? opt.batches : opt.end_batch;
  if (opt.first_batch < 0 || end > opt.batches || opt.first_batch > end)
    throw std::invalid_argument("batch range: expected 0 <= first <= end <= batches (" +
                                std::to_string(opt.batches) + "), got " + std::to_string(opt.first_batch) +
                                ".." + std::to_string(end));
  if ((opt.first_batch != 0 || end != opt.batches) && !opt.take_batch)
    throw std::invalid_argument("batch range: a part of the batches needs a consumer of their tallies");
}

// GPU chunk bounds: at least ~16 histories per GPU thread (so the tail of a launch, where the
// last long histories run on few threads, stays short against its length) ...
inline int64_t min_chunk(int64_t threads_per_launch) {
  return std::min<int64_t>(kMaxChunk, 16 * std::max<int64_t>(threads_per_launch, 1));
}

// ... and at most ~100 launches per run (launch and synchronisation overhead).
inline int64_t default_chunk(int64_t histories, int64_t threads_per_launch) {
  return std::min<int64_t>(kMaxChunk, std::max<int64_t>(min_chunk(threads_per_launch), (histories + 99) / 100));
}

// Executor interface (all calls in order on the calling thread; each call completes the work
// it launches before returning, except that CUDA errors may surface at the next call):
//   void chunk_bounds(int64_t histories, int64_t& lower, int64_t& upper) const;
//                                               chunk sizes when RunOptions::chunk is 0
//   int32_t threads_used() const; uint32_t grid_dim() const, block_dim() const;
//   void histories(uint64_t seed, int64_t h0, int64_t h1);   histories [h0, h1) into the batch
//                                               (a wavefront may keep particles in flight)
//   void end_batch();                           the batch's particles all to their end
//   int64_t emitted_units(), escaped_units();   energy so far (after histories())
//   void fold(int32_t batch, int64_t h_before, int64_t n_batch);
//                                               batch tally -> total, M2, region row `batch`;
//                                               the batch tally is zero afterwards
//   const int64_t* take_batch();                export mode: the batch tally on the host; it is
//                                               zeroed by the next histories() call
//   void finalize(int64_t histories, int32_t batches);
//   void download(RunOutput& out);              edep, rel_uncertainty, counters, region sums
//   void report(RunOutput& out) const;          what the executor ran (GPU: wavefront figures)
inline void validate_options(const HostRun& hr, const RunOptions& opt) {
  validate_options(max_histories(hr.mean_mev_per_decay), opt);
}

template <class Exec>
RunOutput drive(Exec& ex, int64_t capacity, const RunOptions& opt) {
  validate_options(capacity, opt);
  RunOutput out;
  out.grid_dim = ex.grid_dim();
  out.block_dim = ex.block_dim();
  out.threads_used = ex.threads_used();
  out.precision = opt.precision;
  int64_t lower = opt.chunk, upper = opt.chunk;
  if (opt.chunk == 0) ex.chunk_bounds(opt.histories, lower, upper);
  out.chunk = upper;
  ChunkSizer chunks(lower, upper);
  const bool export_mode = bool(opt.take_batch);
  const int32_t end = opt.end_batch < 0 ? opt.batches : opt.end_batch;
  int64_t done = 0, emitted_before = 0, escaped_before = 0;
  for (int32_t b = opt.first_batch; b < end && !out.aborted; ++b) {
    int64_t h0, h1;
    batch_range(opt.histories, opt.batches, b, h0, h1);
    for (int64_t c0 = h0, c1 = h0; c0 < h1; c0 = c1) {
      c1 = std::min(h1, c0 + chunks.next());
      chunks.start();
      ex.histories(opt.seed, c0, c1);
      chunks.done(c1 - c0);
      ++out.launches;
      done += c1 - c0;
      if (ex.emitted_units() > kTallyGuardUnits)
        throw std::overflow_error("histories: the emitted energy reached the 64-bit tally capacity "
                                  "after " + std::to_string(done) + " histories; split the run");
      if (opt.progress && !opt.progress(done)) {
        out.aborted = true;
        break;
      }
    }
    if (out.aborted) break;
    ex.end_batch();  // whatever the batch's histories still have in flight, to its end
    if (export_mode) {
      const int64_t em = ex.emitted_units(), es = ex.escaped_units();
      if (!opt.take_batch(b, ex.take_batch(), em - emitted_before, es - escaped_before)) out.aborted = true;
      emitted_before = em;
      escaped_before = es;
    } else {
      ex.fold(b, h0, h1 - h0);
    }
  }
  ex.report(out);
  if (out.aborted || export_mode) return out;
  ex.finalize(opt.histories, opt.batches);
  ex.download(out);
  return out;
}

}  // namespace rpt::host
