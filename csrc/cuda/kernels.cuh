// Declarations of the CUDA kernels of kernels.cu (extern "C": the cupy backend finds them by
// name in the NVRTC-compiled module, and a definition whose parameters differ from these
// declarations does not compile). Included by the launch code (launch.cu) and by kernels.cu.
#pragma once
#include "../physics/params.hpp"

#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ < 11)
#error "rptdose's CUDA backend needs CUDA 11 or newer"
#endif

extern "C" {

// Histories [h0, h1) of a batch, grid-stride, one thread per history.
__global__ void rpt_histories_kernel(const rpt::Params* __restrict__ params,
                                     unsigned long long seed, long long h0, long long h1,
                                     unsigned long long* batch_tally,
                                     unsigned long long* counters);

// The same in single precision (host/params.hpp Precision: float tables and transport).
__global__ void rpt_histories_kernel_f32(const rpt::ParamsT<float>* __restrict__ params,
                                         unsigned long long seed, long long h0, long long h1,
                                         unsigned long long* batch_tally,
                                         unsigned long long* counters);

// Fold the batch tally into the run total and the batch-mean spread M2 (and the region sums),
// zeroing the batch tally; the batch holds n_batch histories, h_before came before it.
__global__ void rpt_fold_kernel(long long n_voxels, unsigned long long* batch_tally,
                                unsigned long long* total, float* m2, long long h_before,
                                long long n_batch, const int* regions, int n_regions,
                                unsigned long long* region_units);

// Energy per voxel (MeV) into edep_mev, relative uncertainty (float64 bits) over total,
// deposited total.
__global__ void rpt_finalize_kernel(long long n_voxels, unsigned long long* total,
                                    const float* m2, double* edep_mev, long long histories,
                                    int batches, unsigned long long* counters);

}  // extern "C"
