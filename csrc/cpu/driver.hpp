// OpenMP batch driver for the CPU backend.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "host/params.hpp"
#include "physics/batch.hpp"

namespace rpt::cpu {

struct RunOptions {
  int64_t histories = 0;
  uint64_t seed = 0;
  int32_t batches = 10;
  int32_t threads = 0;                 // 0: OpenMP's default
  const int32_t* regions = nullptr;    // [n_voxels] labels 0..n_regions-1, -1 none
  int32_t n_regions = 0;
  host::Precision precision = host::Precision::kDouble;  // of the transport (HostRun params / params_f32)
  // called on the calling thread between chunks with the histories done; return false to abort
  std::function<bool(int64_t)> progress;
};

struct RunOutput {
  // [n_voxels] energy (MeV) summed over all histories, stored as float64 bit patterns in the
  // buffer that held the integer tally (converted in place to keep peak memory low)
  std::vector<int64_t> edep_mev_bits;
  std::vector<int64_t> rel_uncertainty_bits;  // [n_voxels] float64 bits, in the batch tally's buffer
  std::vector<double> region_batch_mev; // [batches * n_regions]
  int64_t emitted = 0, deposited = 0, escaped = 0;  // energy units (kEnergyUnitMeV)
  int32_t threads_used = 0;
  bool aborted = false;
};

// batch_range(), welford_m2() and batch_rel_uncertainty() live in physics/batch.hpp (shared with the CUDA
// kernels, so every backend splits batches and computes uncertainties with the same code).
using rpt::batch_range;
using rpt::batch_rel_uncertainty;
using rpt::welford_m2;

RunOutput run(const host::HostRun& run, const RunOptions& opt);

}  // namespace rpt::cpu
