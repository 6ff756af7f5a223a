// OpenMP batch driver for the CPU backend.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "host/params.hpp"

namespace rpt::cpu {

struct RunOptions {
  int64_t histories = 0;
  uint64_t seed = 0;
  int32_t batches = 10;
  int32_t threads = 0;                 // 0: OpenMP's default
  const int32_t* regions = nullptr;    // [n_voxels] labels 0..n_regions-1, -1 none
  int32_t n_regions = 0;
  // called on the calling thread between chunks with the histories done; return false to abort
  std::function<bool(int64_t)> progress;
};

struct RunOutput {
  // [n_voxels] energy (MeV) summed over all histories, stored as float64 bit patterns in the
  // buffer that held the integer tally (converted in place to keep peak memory low)
  std::vector<int64_t> edep_mev_bits;
  std::vector<double> rel_uncertainty;  // [n_voxels], computed in place of the sum of squares
  std::vector<double> region_batch_mev; // [batches * n_regions]
  int64_t emitted = 0, deposited = 0, escaped = 0;  // energy units (kEnergyUnitMeV)
  int32_t threads_used = 0;
  bool aborted = false;
};

// First and one-past-last history of batch b when n histories are split in nb batches.
inline void batch_range(int64_t n, int32_t nb, int32_t b, int64_t& h0, int64_t& h1) {
  const int64_t q = n / nb, r = n % nb;
  h0 = q * b + (b < r ? b : r);
  h1 = h0 + q + (b < r ? 1 : 0);
}

// Relative standard error of the mean from batch sums: `total` the sum over all batches of the
// per-voxel batch sums x_b, `sumsq` the sum over batches of (x_b / n_b)^2 with n_b the batch's
// histories. Returns 1.0 where nothing was deposited.
double batch_rel_uncertainty(double total, double sumsq, int64_t histories, int32_t batches);

RunOutput run(const host::HostRun& run, const RunOptions& opt);

}  // namespace rpt::cpu
