// The wavefront's CUDA kernels (wavefront_body.hpp): one-line wrappers, as in kernels.cu.
// Compiled by nvcc into rptdose._core_cuda (the cupy backend runs the history kernel only).
#include "cuda/wavefront_body.hpp"
#include "cuda/wavefront_kernels.cuh"

namespace {
__device__ __forceinline__ rpt::gpu::Idx3 idx3(const uint3& v) { return {v.x, v.y, v.z}; }
__device__ __forceinline__ rpt::gpu::Idx3 idx3(const dim3& v) { return {v.x, v.y, v.z}; }
}  // namespace

// A step kernel (electrons when PHOTON is false, photons when true).
#define RPT_WAVE_STEP_KERNEL(NAME, PHOTON, REAL)                                                \
  __global__ void __launch_bounds__(rpt::gpu::kWaveMaxBlock, 1) NAME(                           \
      const rpt::ParamsT<REAL> params, unsigned long long seed, rpt::gpu::TrackQueue<REAL> in,  \
      long long n_in, long long n_step, rpt::gpu::TrackQueue<REAL> out_e,                       \
      rpt::gpu::TrackQueue<REAL> out_p, unsigned long long* words,                              \
      unsigned long long* batch_tally, unsigned long long* counters) {                          \
    rpt::gpu::wave_step_body<PHOTON>(idx3(blockIdx), idx3(blockDim), idx3(gridDim),             \
                                     idx3(threadIdx), params, seed, in, n_in, n_step, out_e,    \
                                     out_p, words, batch_tally, counters);                      \
  }

// At most kWaveMaxBlock threads per block, so ptxas keeps each kernel within 65536 / 512 =
// 128 registers per thread (validation/bench/gpu_static.py).
#define RPT_WAVE_KERNELS(REAL, SUFFIX)                                                          \
  __global__ void __launch_bounds__(rpt::gpu::kWaveMaxBlock, 1) rpt_wave_decay_kernel##SUFFIX(   \
      const rpt::ParamsT<REAL> params, unsigned long long seed, const long long* list,          \
      long long n_list, long long h_start, long long n_fresh, rpt::gpu::TrackQueue<REAL> qe,    \
      rpt::gpu::TrackQueue<REAL> qp, unsigned int limit_e, unsigned int limit_p,                \
      unsigned long long* words, long long* deferred, unsigned long long* batch_tally,          \
      unsigned long long* counters) {                                                           \
    rpt::gpu::wave_decay_body(idx3(blockIdx), idx3(blockDim), idx3(gridDim), idx3(threadIdx),  \
                              params, seed, list, n_list, h_start, n_fresh, qe, qp, limit_e,    \
                              limit_p, words, deferred, batch_tally, counters);                 \
  }                                                                                             \
  RPT_WAVE_STEP_KERNEL(rpt_wave_electron_kernel##SUFFIX, false, REAL)                          \
  RPT_WAVE_STEP_KERNEL(rpt_wave_photon_kernel##SUFFIX, true, REAL)

extern "C" {
RPT_WAVE_KERNELS(double, )
RPT_WAVE_KERNELS(float, _f32)
}  // extern "C"
