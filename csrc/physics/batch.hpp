// Batch-method bookkeeping shared by every backend (CPU driver, CUDA kernels, cupy/NVRTC).
//
// The histories of a run are split into `batches` contiguous ranges of global history indices;
// each voxel's statistical uncertainty is the standard error of the mean over the batch means.
// Host and device use these exact functions, so the same tallies give the same bits everywhere.
#pragma once
#include "macros.hpp"
#if !defined(__CUDACC_RTC__)
#include <cstring>
#endif

namespace rpt {

// The fewest batches of the batch method: below ~10 the standard error of the mean is itself
// too uncertain to report (the same limit as the Python API's rptdose.transport.simulate
// MIN_BATCHES; a test checks that they agree).
constexpr int32_t kMinBatches = 10;

// First and one-past-last history of batch b when n histories are split in nb batches
// (the first n % nb batches hold one history more).
RPT_INLINE void batch_range(int64_t n, int32_t nb, int32_t b, int64_t& h0, int64_t& h1) {
  const int64_t q = n / nb, r = n % nb;
  h0 = q * b + (b < r ? b : r);
  h1 = h0 + q + (b < r ? 1 : 0);
}

// Spread of the batch means, one voxel: M2 = sum_b n_b (y_b - ybar)^2 with y_b = x_b / n_b the
// batch mean per history (x_b the batch's integer energy, n_b its histories) and ybar the mean
// per history, accumulated batch by batch with Welford's update for weighted data (West, Comm.
// ACM 22:532, 1979): M2 += n_b (y_b - m_before)(y_b - m_after), where the running means come
// from the exact integer totals (m = total / histories so far), so nothing cancels and M2 can
// be held in float32. `t_after` is the voxel's total after the batch, `h_before` the histories
// before it. The first batch (h_before = 0) gives 0.
RPT_INLINE float welford_m2(float m2, int64_t x_b, int64_t t_after, int64_t h_before, int64_t n_b) {
  if (h_before == 0) return 0.0f;
  const double y = double(x_b) / double(n_b);
  const double m_before = double(t_after - x_b) / double(h_before);
  const double m_after = double(t_after) / double(h_before + n_b);
  return float(double(m2) + double(n_b) * (y - m_before) * (y - m_after));
}

// Relative standard error of the mean per history: `total` the voxel's energy over all
// `histories`, `m2` from welford_m2 over `batches` batches. E[M2] = (B - 1) sigma^2 for a
// per-history variance sigma^2, so var(mean) = M2 / ((B - 1) H); with equal batches this is
// the textbook s^2(batch means) / B. Returns 1.0 where nothing was deposited.
RPT_INLINE double batch_rel_uncertainty(double total, double m2, int64_t histories,
                                        int32_t batches) {
  if (total == 0.0) return 1.0;
  const double mean = total / double(histories);
  double var = m2 / (double(batches - 1) * double(histories));
  if (var < 0.0) var = 0.0;
  return sqrt(var) / fabs(mean);
}

// The bits of a double as an unsigned 64-bit integer (results written over integer tallies).
RPT_INLINE uint64_t double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return (uint64_t)__double_as_longlong(x);
#else
  uint64_t u;
  memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

}  // namespace rpt
