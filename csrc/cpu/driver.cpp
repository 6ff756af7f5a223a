#include "cpu/driver.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "host/chunking.hpp"
#include "physics/history.hpp"

namespace rpt::cpu {
namespace {

// Exact, order-free accumulation: relaxed 64-bit integer atomics.
struct CpuTally {
  int64_t* e;
  inline void add(int64_t voxel, int64_t units) const {
    __atomic_fetch_add(e + voxel, units, __ATOMIC_RELAXED);
  }
  inline void prefetch(int64_t voxel) const { __builtin_prefetch(e + voxel, 1); }
};

}  // namespace

RunOutput run(const host::HostRun& hr, const RunOptions& opt) {
  const Params& P = hr.params;
  const int64_t nv = hr.n_voxels;
  if (opt.batches < kMinBatches)
    throw std::invalid_argument("batches: expected >= " + std::to_string(kMinBatches));
  if (opt.histories < opt.batches)
    throw std::invalid_argument("histories: expected >= batches (" + std::to_string(opt.batches) + ")");
  if (opt.histories > host::max_histories(hr.mean_mev_per_decay))
    throw std::invalid_argument("histories: " + std::to_string(opt.histories) +
                                " exceeds the tally capacity of " +
                                std::to_string(host::max_histories(hr.mean_mev_per_decay)) +
                                " for this source");
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  const bool single = opt.precision == host::Precision::kSingle;

  RunOutput out;
  out.threads_used = threads;
  // 20 B per voxel: the batch tally, the exact run total and the spread of the batch means
  std::vector<int64_t> batch(size_t(nv), 0), total(size_t(nv), 0);
  std::vector<float> m2(size_t(nv), 0.0f);
  // region sums per batch in exact integer units (converted to MeV at the end)
  std::vector<int64_t> region_units(size_t(opt.batches) * size_t(std::max(opt.n_regions, 0)), 0);
  CpuTally tally{batch.data()};

  // chunks: the progress callable (and through it Ctrl-C) is reached between chunks, so they are
  // sized by time (host/chunking.hpp: ~0.2 s each), from 4096 histories up to a bound on the
  // energy one chunk can add before the overflow guard looks again (<= 1e8 histories * max
  // energy per decay << 2^63 units) and at most 1/200 of the run (progress granularity)
  host::ChunkSizer chunks(4096, std::min<int64_t>(std::max<int64_t>(4096, opt.histories / 200), 100000000));
  int64_t done = 0;
  int64_t emitted = 0, escaped = 0;
  for (int32_t b = 0; b < opt.batches && !out.aborted; ++b) {
    int64_t h0, h1;
    batch_range(opt.histories, opt.batches, b, h0, h1);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t v = 0; v < nv; ++v) batch[size_t(v)] = 0;
    for (int64_t c0 = h0, c1 = h0; c0 < h1; c0 = c1) {
      c1 = std::min(h1, c0 + chunks.next());
      chunks.start();
      int64_t em = 0, es = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64) reduction(+ : em, es)
      for (int64_t h = c0; h < c1; ++h) {
        Counters cnt{0, 0};
        if (single) run_history(opt.seed, uint64_t(h), hr.params_f32, tally, cnt);
        else run_history(opt.seed, uint64_t(h), P, tally, cnt);
        em += cnt.emitted;
        es += cnt.escaped;
      }
      chunks.done(c1 - c0);
      emitted += em;
      escaped += es;
      done += c1 - c0;
      if (emitted > host::kTallyGuardUnits)
        throw std::overflow_error("histories: the emitted energy reached the 64-bit tally capacity "
                                  "after " + std::to_string(done) + " histories; split the run");
      if (opt.progress && !opt.progress(done)) {
        out.aborted = true;
        break;
      }
    }
    if (out.aborted) break;
    const int64_t n_b = h1 - h0;
    const int32_t nr = opt.n_regions;
#pragma omp parallel num_threads(threads)
    {
      std::vector<int64_t> reg(size_t(nr), 0);
#pragma omp for schedule(static)
      for (int64_t v = 0; v < nv; ++v) {
        const int64_t x = batch[size_t(v)];
        const int64_t t = total[size_t(v)] + x;
        if (t == 0) continue;  // nothing here yet: M2 stays 0
        total[size_t(v)] = t;
        m2[size_t(v)] = welford_m2(m2[size_t(v)], x, t, h0, n_b);
        if (x == 0) continue;
        if (nr > 0) {
          const int32_t r = opt.regions[v];
          if (r >= 0 && r < nr) reg[size_t(r)] += x;
        }
      }
      if (nr > 0) {
        for (int32_t r = 0; r < nr; ++r)
          __atomic_fetch_add(&region_units[size_t(b) * nr + r], reg[size_t(r)], __ATOMIC_RELAXED);
      }
    }
  }
  if (out.aborted) return out;
  out.region_batch_mev.resize(region_units.size());
  for (size_t i = 0; i < region_units.size(); ++i)
    out.region_batch_mev[i] = double(region_units[i]) * kEnergyUnitMeV;

  // results in place: energy (MeV) over the run total, uncertainty over the batch tally
  int64_t deposited = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : deposited)
  for (int64_t v = 0; v < nv; ++v) {
    const int64_t t = total[size_t(v)];
    deposited += t;
    const double e = double(t) * kEnergyUnitMeV;
    const double rel = batch_rel_uncertainty(double(t), double(m2[size_t(v)]), opt.histories, opt.batches);
    std::memcpy(&total[size_t(v)], &e, sizeof(double));
    std::memcpy(&batch[size_t(v)], &rel, sizeof(double));
  }
  std::vector<float>().swap(m2);
  out.edep_mev_bits.swap(total);
  out.rel_uncertainty_bits.swap(batch);
  out.emitted = emitted;
  out.deposited = deposited;
  out.escaped = escaped;
  return out;
}

}  // namespace rpt::cpu
