// Declarations of the wavefront's CUDA kernels (wavefront_kernels.cu), in both precisions
// (the _f32 kernels take rpt::ParamsT<float> and float queues). Included by launch.cu.
#pragma once
#include "cuda/wavefront_body.hpp"

#define RPT_WAVE_KERNEL_DECLS(REAL, SUFFIX)                                                       \
  __global__ void rpt_wave_decay_kernel##SUFFIX(                                                \
      const rpt::ParamsT<REAL> params,      unsigned long long seed,                   \
      const long long* list, long long n_list, long long h_start, long long n_fresh,            \
      rpt::gpu::TrackQueue<REAL> qe, rpt::gpu::TrackQueue<REAL> qp, unsigned int limit_e,       \
      unsigned int limit_p, unsigned long long* words, long long* deferred,                     \
      unsigned long long* batch_tally, unsigned long long* counters);                           \
  __global__ void rpt_wave_electron_kernel##SUFFIX(                                             \
      const rpt::ParamsT<REAL> params,      unsigned long long seed,                   \
      rpt::gpu::TrackQueue<REAL> in, long long n_in, long long n_step,                          \
      rpt::gpu::TrackQueue<REAL> out_e, rpt::gpu::TrackQueue<REAL> out_p,                       \
      unsigned long long* words, unsigned long long* batch_tally, unsigned long long* counters); \
  __global__ void rpt_wave_photon_kernel##SUFFIX(                                               \
      const rpt::ParamsT<REAL> params,      unsigned long long seed,                   \
      rpt::gpu::TrackQueue<REAL> in, long long n_in, long long n_step,                          \
      rpt::gpu::TrackQueue<REAL> out_e, rpt::gpu::TrackQueue<REAL> out_p,                       \
      unsigned long long* words, unsigned long long* batch_tally, unsigned long long* counters);

extern "C" {
RPT_WAVE_KERNEL_DECLS(double, )
RPT_WAVE_KERNEL_DECLS(float, _f32)
}  // extern "C"
