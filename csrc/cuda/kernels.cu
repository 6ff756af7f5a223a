// The CUDA kernels: thin wrappers around the bodies in kernel_body.hpp (all physics lives in
// csrc/physics). This file is compiled three ways: by nvcc into rptdose._core_cuda, by NVRTC at
// run time for the cupy backend (shipped in the wheel under rptdose/csrc/cuda/), and by the
// tests (nvcc --ptx). Floating-point contraction is disabled in every build (--fmad=false).
#include "cuda/kernel_body.hpp"
#include "cuda/kernels.cuh"

// Layout check for the cupy backend, which builds the Params image on the host: it passes
// -DRPT_EXPECTED_PARAMS_SIZE=sizeof(rpt::Params) as the host compiler laid it out.
#if defined(RPT_EXPECTED_PARAMS_SIZE)
static_assert(sizeof(rpt::Params) == RPT_EXPECTED_PARAMS_SIZE,
              "rpt::Params has a different layout on the device than on the host");
#endif
#if defined(RPT_EXPECTED_PARAMS_F32_SIZE)
static_assert(sizeof(rpt::ParamsT<float>) == RPT_EXPECTED_PARAMS_F32_SIZE,
              "rpt::ParamsT<float> has a different layout on the device than on the host");
#endif

namespace {
__device__ __forceinline__ rpt::gpu::Idx3 idx3(const uint3& v) { return {v.x, v.y, v.z}; }
__device__ __forceinline__ rpt::gpu::Idx3 idx3(const dim3& v) { return {v.x, v.y, v.z}; }
}  // namespace

extern "C" {

__global__ void rpt_histories_kernel(const rpt::Params* __restrict__ params,
                                     unsigned long long seed, long long h0, long long h1,
                                     unsigned long long* batch_tally,
                                     unsigned long long* counters) {
  rpt::gpu::histories_body(idx3(blockIdx), idx3(blockDim), idx3(gridDim), idx3(threadIdx),
                           params, seed, h0, h1, batch_tally, counters);
}

// The same in single precision (rpt::ParamsT<float>: float tables, float transport), within
// 128 registers (at most 512 threads per block; without the bound ptxas takes 133).
__global__ void __launch_bounds__(512, 1) rpt_histories_kernel_f32(const rpt::ParamsT<float>* __restrict__ params,
                                         unsigned long long seed, long long h0, long long h1,
                                         unsigned long long* batch_tally,
                                         unsigned long long* counters) {
  rpt::gpu::histories_body(idx3(blockIdx), idx3(blockDim), idx3(gridDim), idx3(threadIdx),
                           params, seed, h0, h1, batch_tally, counters);
}

__global__ void rpt_fold_kernel(long long n_voxels, unsigned long long* batch_tally,
                                unsigned long long* total, float* m2, long long h_before,
                                long long n_batch, const int* regions, int n_regions,
                                unsigned long long* region_units) {
  rpt::gpu::fold_body(idx3(blockIdx), idx3(blockDim), idx3(gridDim), idx3(threadIdx), n_voxels,
                      batch_tally, total, m2, h_before, n_batch, regions, n_regions, region_units);
}

__global__ void rpt_finalize_kernel(long long n_voxels, unsigned long long* total,
                                    const float* m2, double* edep_mev, long long histories,
                                    int batches, unsigned long long* counters) {
  rpt::gpu::finalize_body(idx3(blockIdx), idx3(blockDim), idx3(gridDim), idx3(threadIdx),
                          n_voxels, total, m2, edep_mev, histories, batches, counters);
}

}  // extern "C"
