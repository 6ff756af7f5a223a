// A run's sums on the host, folded batch by batch: the exact integer total per voxel, the
// spread of the batch means (M2, physics/batch.hpp welford_m2), the integer region sums of each
// batch, the energy counters and the next batch to fold.
//
// The CPU executor folds into one (cpu/driver.cpp). Export-mode runs fold into one outside the
// executor (a Dask client, a checkpointed run: python/rptdose/transport/batched.py), from the
// same integer tallies in the same batch order, so their dose is the in-process run's to the
// last bit. The arrays are public so a checkpoint can save and restore them.
// Host-only C++ (OpenMP).
#pragma once
#include <cstdint>
#include <vector>

#include "host/driver.hpp"

namespace rpt::host {

class TallyState {
 public:
  // `regions` [n_voxels] labels 0..n_regions-1 (-1 none) must outlive the state; may be null
  // when n_regions is 0.
  TallyState(int64_t n_voxels, int32_t batches, const int32_t* regions, int32_t n_regions);

  // Folds batch `b` (which must be next_batch) of a run of `histories`: its tally x [n_voxels]
  // (integer units) into total and M2, its region sums into row b; adds its counters. With
  // `clear`, x is zeroed as it is read (the CPU executor's batch buffer, ready for the next
  // batch). Throws std::invalid_argument when b is not the next batch.
  void fold(int32_t b, int64_t* x, bool clear, int64_t histories, int64_t emitted,
            int64_t escaped, int threads);

  // After the last batch: energy (MeV) over `total`, the relative uncertainty over `scratch`
  // (resized to n_voxels; the CPU passes its batch buffer, so no third voxel array is made),
  // region sums in MeV and the counters into `out`. The state is spent afterwards.
  void finish(int64_t histories, std::vector<int64_t>& scratch, RunOutput& out, int threads);

  int64_t n_voxels() const { return nv_; }
  int32_t batches() const { return batches_; }
  int32_t n_regions() const { return n_regions_; }

  std::vector<int64_t> total;         // [n_voxels] exact energy units over the folded batches
  std::vector<float> m2;              // [n_voxels] spread of the batch means
  std::vector<int64_t> region_units;  // [batches * n_regions] integer region sums per batch
  int64_t emitted = 0, escaped = 0;   // energy units over the folded batches
  int32_t next_batch = 0;             // batches folded so far

 private:
  int64_t nv_;
  int32_t batches_;
  const int32_t* regions_;
  int32_t n_regions_;
};

}  // namespace rpt::host
