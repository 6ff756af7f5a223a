// The batch loop of the GPU backends, written once for every executor.
//
// `drive` splits the histories into batches (physics/batch.hpp) and each batch into launches
// ("chunks", sized by time: host/chunking.hpp), calls the progress callable between launches,
// folds each batch and finalizes the run. An executor provides the kernels: CudaExec (launch.cu)
// launches them on a device, EmulatedExec (bindings/emulation.cpp) runs the same kernel bodies
// over loops of block and thread indices on the CPU, so this loop and the kernels' indexing are
// tested without a GPU.
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

namespace rpt::gpu {

// Most histories in one launch: bounds the energy a launch can add before the overflow guard
// looks again (as the CPU driver's chunks).
constexpr int64_t kMaxChunk = 100000000;

struct RunOptions {
  int64_t histories = 0;
  uint64_t seed = 0;
  int32_t batches = 10;
  const int32_t* regions = nullptr;  // [n_voxels] labels 0..n_regions-1, -1 none
  int32_t n_regions = 0;
  uint32_t grid_dim = 0;   // blocks per history launch; 0: chosen by the executor
  uint32_t block_dim = 0;  // threads per block; 0: chosen by the executor
  int64_t chunk = 0;       // histories per launch; 0: default_chunk()
  host::Precision precision = host::Precision::kDouble;  // the executor launches its kernel
  // called on the calling thread between launches with the histories done; false aborts
  std::function<bool(int64_t)> progress;
};

struct RunOutput {
  std::vector<double> edep_mev;          // [n_voxels] energy (MeV) summed over all histories
  std::vector<double> rel_uncertainty;   // [n_voxels]
  std::vector<double> region_batch_mev;  // [batches * n_regions]
  int64_t emitted = 0, deposited = 0, escaped = 0;  // energy units (kEnergyUnitMeV)
  uint32_t grid_dim = 0, block_dim = 0;  // shape of the history launches
  int64_t chunk = 0;                     // most histories per launch (the given chunk, or default_chunk)
  int64_t launches = 0;                  // history launches made
  bool aborted = false;
};

// The same argument checks, with the same messages, as the CPU driver.
inline void validate_options(const host::HostRun& hr, const RunOptions& opt) {
  if (opt.batches < kMinBatches)
    throw std::invalid_argument("batches: expected >= " + std::to_string(kMinBatches));
  if (opt.histories < opt.batches)
    throw std::invalid_argument("histories: expected >= batches (" + std::to_string(opt.batches) + ")");
  if (opt.histories > host::max_histories(hr.mean_mev_per_decay))
    throw std::invalid_argument("histories: " + std::to_string(opt.histories) +
                                " exceeds the tally capacity of " +
                                std::to_string(host::max_histories(hr.mean_mev_per_decay)) +
                                " for this source");
  if (opt.n_regions < 0) throw std::invalid_argument("regions: negative region count");
  if (opt.n_regions > 0 && !opt.regions) throw std::invalid_argument("regions: null array");
  if (opt.block_dim > 1024) throw std::invalid_argument("block_dim: expected 0 (auto) or 1..1024");
  if (opt.chunk < 0 || opt.chunk > kMaxChunk)
    throw std::invalid_argument("chunk: expected 0 (auto) or 1.." + std::to_string(kMaxChunk));
}

// Fewest histories per launch: ~16 per GPU thread (so the tail of a launch, where the last long
// histories run on few threads, stays short against its length).
inline int64_t min_chunk(int64_t threads_per_launch) {
  return std::min<int64_t>(kMaxChunk, 16 * std::max<int64_t>(threads_per_launch, 1));
}

// Most histories per launch: at least min_chunk, and at most ~100 launches per run (launch and
// synchronisation overhead). drive() sizes the launches by time within [min_chunk, this].
inline int64_t default_chunk(int64_t histories, int64_t threads_per_launch) {
  return std::min<int64_t>(kMaxChunk, std::max<int64_t>(min_chunk(threads_per_launch), (histories + 99) / 100));
}

// Executor interface (all calls in order on the calling thread; each call completes the work
// it launches before returning, except that CUDA errors may surface at the next call):
//   int64_t threads_per_launch() const;         grid_dim * block_dim of the history launches
//   uint32_t grid_dim() const, block_dim() const;
//   void histories(uint64_t seed, int64_t h0, int64_t h1);   histories [h0, h1) into the batch
//   int64_t emitted_units();                    emitted energy so far (after histories())
//   void fold(int32_t batch, int64_t h_before, int64_t n_batch);
//                                               batch tally -> total, M2, region row `batch`
//   void finalize(int64_t histories, int32_t batches);
//   void download(RunOutput& out);              edep, rel_uncertainty, counters, region sums
template <class Exec>
RunOutput drive(Exec& ex, const host::HostRun& hr, const RunOptions& opt) {
  validate_options(hr, opt);
  RunOutput out;
  out.grid_dim = ex.grid_dim();
  out.block_dim = ex.block_dim();
  out.chunk = opt.chunk > 0 ? opt.chunk : default_chunk(opt.histories, ex.threads_per_launch());
  // launches sized by time (host/chunking.hpp, ~0.2 s each: progress and Ctrl-C are checked
  // between launches) from 16 histories per thread up to out.chunk; a given chunk: fixed size
  host::ChunkSizer chunks(opt.chunk > 0 ? opt.chunk : min_chunk(ex.threads_per_launch()), out.chunk);
  int64_t done = 0;
  for (int32_t b = 0; b < opt.batches && !out.aborted; ++b) {
    int64_t h0, h1;
    batch_range(opt.histories, opt.batches, b, h0, h1);
    for (int64_t c0 = h0, c1 = h0; c0 < h1; c0 = c1) {
      c1 = std::min(h1, c0 + chunks.next());
      chunks.start();
      ex.histories(opt.seed, c0, c1);
      chunks.done(c1 - c0);
      ++out.launches;
      done += c1 - c0;
      if (ex.emitted_units() > host::kTallyGuardUnits)
        throw std::overflow_error("histories: the emitted energy reached the 64-bit tally capacity "
                                  "after " + std::to_string(done) + " histories; split the run");
      if (opt.progress && !opt.progress(done)) {
        out.aborted = true;
        break;
      }
    }
    if (out.aborted) break;
    ex.fold(b, h0, h1 - h0);
  }
  if (out.aborted) return out;
  ex.finalize(opt.histories, opt.batches);
  ex.download(out);
  return out;
}

}  // namespace rpt::gpu
