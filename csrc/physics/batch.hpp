// Batch-method bookkeeping shared by every backend (CPU driver, CUDA kernels, cupy/NVRTC).
//
// The histories of a run are split into `batches` contiguous ranges of global history indices;
// each voxel's statistical uncertainty is the standard error of the mean over the batch means.
// Host and device use these exact functions, so the same tallies give the same bits everywhere.
#pragma once
#include "macros.hpp"

namespace rpt {

// First and one-past-last history of batch b when n histories are split in nb batches
// (the first n % nb batches hold one history more).
RPT_INLINE void batch_range(int64_t n, int32_t nb, int32_t b, int64_t& h0, int64_t& h1) {
  const int64_t q = n / nb, r = n % nb;
  h0 = q * b + (b < r ? b : r);
  h1 = h0 + q + (b < r ? 1 : 0);
}

// Relative standard error of the mean from batch sums: `total` the sum over all batches of the
// per-voxel batch sums x_b, `sumsq` the sum over batches of (x_b / n_b)^2 with n_b the batch's
// histories. Returns 1.0 where nothing was deposited.
RPT_INLINE double batch_rel_uncertainty(double total, double sumsq, int64_t histories,
                                        int32_t batches) {
  if (total == 0.0) return 1.0;
  const double b = double(batches);
  const double mean = total / double(histories);  // per-history mean (all batches)
  double var = (sumsq - b * mean * mean) / (b - 1.0);
  if (var < 0.0) var = 0.0;
  return sqrt(var / b) / fabs(mean);
}

}  // namespace rpt
