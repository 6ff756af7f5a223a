// The CPU backend: OpenMP threads over histories (CpuExec), driven by host/driver.hpp's batch
// loop, and the host-side fold of batches (host/tally_state.hpp), shared with export-mode runs.
#include "cpu/driver.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <memory>
#include <string>

#include "host/tally_state.hpp"
#include "physics/history.hpp"

namespace rpt {
namespace host {

TallyState::TallyState(int64_t n_voxels, int32_t batches, const int32_t* regions, int32_t n_regions)
    : total(size_t(n_voxels), 0), m2(size_t(n_voxels), 0.0f),
      region_units(size_t(batches) * size_t(std::max(n_regions, 0)), 0), nv_(n_voxels),
      batches_(batches), regions_(regions), n_regions_(std::max(n_regions, 0)) {
  if (n_voxels < 0) throw std::invalid_argument("n_voxels: expected >= 0");
  if (batches < kMinBatches) throw std::invalid_argument("batches: expected >= " + std::to_string(kMinBatches));
  if (n_regions_ > 0 && !regions) throw std::invalid_argument("regions: null array");
}

void TallyState::fold(int32_t b, int64_t* x_arr, bool clear, int64_t histories, int64_t em,
                      int64_t es, int threads) {
  if (b != next_batch)
    throw std::invalid_argument("batch " + std::to_string(b) + " folded out of order: the next batch is " +
                                std::to_string(next_batch));
  if (b >= batches_) throw std::invalid_argument("batch " + std::to_string(b) + ": the run has " +
                                                 std::to_string(batches_) + " batches");
  int64_t h0, h1;
  batch_range(histories, batches_, b, h0, h1);
  const int64_t n_b = h1 - h0;
  const int32_t nr = n_regions_;
  const int64_t nv = nv_;
  int64_t* row = region_units.data() + size_t(b) * size_t(nr);
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t> reg(size_t(nr), 0);
#pragma omp for schedule(static)
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t x = x_arr[v];
      if (clear && x != 0) x_arr[v] = 0;
      const int64_t t = total[size_t(v)] + x;
      if (t == 0) continue;  // nothing here yet: M2 stays 0
      total[size_t(v)] = t;
      m2[size_t(v)] = welford_m2(m2[size_t(v)], x, t, h0, n_b);
      if (x == 0 || nr == 0) continue;
      const int32_t r = regions_[v];
      if (r >= 0 && r < nr) reg[size_t(r)] += x;
    }
    for (int32_t r = 0; r < nr; ++r)
      if (reg[size_t(r)] != 0) __atomic_fetch_add(&row[r], reg[size_t(r)], __ATOMIC_RELAXED);
  }
  emitted += em;
  escaped += es;
  ++next_batch;
}

void TallyState::finish(int64_t histories, std::vector<int64_t>& scratch, RunOutput& out, int threads) {
  if (next_batch != batches_)
    throw std::invalid_argument("finish: " + std::to_string(next_batch) + " of " + std::to_string(batches_) +
                                " batches folded");
  out.region_batch_mev.resize(region_units.size());
  for (size_t i = 0; i < region_units.size(); ++i)
    out.region_batch_mev[i] = double(region_units[i]) * kEnergyUnitMeV;
  scratch.resize(size_t(nv_));
  // results in place: energy (MeV) over the run total, uncertainty over the scratch buffer
  int64_t deposited = 0;
  const int64_t nv = nv_;
  const int32_t nb = batches_;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : deposited)
  for (int64_t v = 0; v < nv; ++v) {
    const int64_t t = total[size_t(v)];
    deposited += t;
    const double e = double(t) * kEnergyUnitMeV;
    const double rel = batch_rel_uncertainty(double(t), double(m2[size_t(v)]), histories, nb);
    std::memcpy(&total[size_t(v)], &e, sizeof(double));
    std::memcpy(&scratch[size_t(v)], &rel, sizeof(double));
  }
  std::vector<float>().swap(m2);
  out.edep_mev_bits.swap(total);
  out.rel_uncertainty_bits.swap(scratch);
  out.emitted = emitted;
  out.deposited = deposited;
  out.escaped = escaped;
}

}  // namespace host

namespace cpu {
namespace {

// Exact, order-free accumulation: relaxed 64-bit integer atomics.
struct CpuTally {
  int64_t* e;
  inline void add(int64_t voxel, int64_t units) const {
    __atomic_fetch_add(e + voxel, units, __ATOMIC_RELAXED);
  }
  inline void prefetch(int64_t voxel) const { __builtin_prefetch(e + voxel, 1); }
};

// The CPU's sink of new particles: each one runs to its end as it is made, and its own
// secondaries likewise, recursively (depth first, as the history kernel's stack; the depth is
// the number of generations). No stack to copy particles through and no limit on their number.
// push() is kept out of line: the emission that calls it stays small (most particles end at
// birth and never get here), and the transport loop is one function.
template <class Real>
struct RunNow {
  StepCtx<Real, const CpuTally, RunNow>* ctx = nullptr;
  __attribute__((noinline)) bool push(const TrackT<Real>& t) {
    TrackT<Real> u = t;
    run_to_end(u, *ctx);
    return true;
  }
};

// Decay `history` and all it sets in motion (physics/history.hpp decay, run_to_end).
template <class Real>
void run_history_cpu(uint64_t seed, uint64_t history, const ParamsT<Real>& P, const CpuTally& tally,
                     Counters& cnt) {
  RunNow<Real> sink;
  StepCtx<Real, const CpuTally, RunNow<Real>> c(P, tally, cnt, sink);
  sink.ctx = &c;
  decay(seed, history, c);
  c.flush();
}

// The executor of host/driver.hpp on CPU threads. Memory: the batch tally (8 B per voxel) and,
// when it folds (not in export mode), a TallyState (12 B per voxel).
class CpuExec {
 public:
  CpuExec(const host::HostRun& hr, const host::RunOptions& opt)
      : P_(hr.params), P32_(hr.params_f32), single_(opt.precision == host::Precision::kSingle), nv_(hr.n_voxels),
        threads_(opt.threads > 0 ? opt.threads : omp_get_max_threads()), histories_(opt.histories),
        batch_(size_t(hr.n_voxels), 0) {
    if (!opt.take_batch) state_ = std::make_unique<host::TallyState>(nv_, opt.batches, opt.regions, opt.n_regions);
  }

  uint32_t grid_dim() const { return 0; }
  uint32_t block_dim() const { return 0; }
  int32_t threads_used() const { return threads_; }
  // from 4096 histories up to 1/200 of the run (progress granularity), within kMaxChunk
  void chunk_bounds(int64_t histories, int64_t& lower, int64_t& upper) const {
    lower = 4096;
    upper = std::min<int64_t>(std::max<int64_t>(4096, histories / 200), host::kMaxChunk);
  }

  void histories(uint64_t seed, int64_t h0, int64_t h1) {
    if (clear_) {
      int64_t* x = batch_.data();
#pragma omp parallel for num_threads(threads_) schedule(static)
      for (int64_t v = 0; v < nv_; ++v) x[v] = 0;
      clear_ = false;
    }
    const CpuTally tally{batch_.data()};
    int64_t em = 0, es = 0;
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 64) reduction(+ : em, es)
    for (int64_t h = h0; h < h1; ++h) {
      Counters cnt{0, 0};
      if (single_) run_history_cpu(seed, uint64_t(h), P32_, tally, cnt);
      else run_history_cpu(seed, uint64_t(h), P_, tally, cnt);
      em += cnt.emitted;
      es += cnt.escaped;
    }
    emitted_ += em;
    escaped_ += es;
  }
  int64_t emitted_units() const { return emitted_; }
  int64_t escaped_units() const { return escaped_; }

  void fold(int32_t b, int64_t /*h_before*/, int64_t /*n_batch*/) {
    state_->fold(b, batch_.data(), true, histories_, emitted_ - folded_em_, escaped_ - folded_es_, threads_);
    folded_em_ = emitted_;
    folded_es_ = escaped_;
  }
  const int64_t* take_batch() {
    clear_ = true;
    return batch_.data();
  }
  void report(host::RunOutput& /*out*/) const {}
  void end_batch() {}  // every history ran to its end in histories()
  void finalize(int64_t /*histories*/, int32_t /*batches*/) {}  // done by download (TallyState::finish)
  void download(host::RunOutput& out) { state_->finish(histories_, batch_, out, threads_); }

 private:
  const Params& P_;
  const ParamsT<float>& P32_;  // the same run in single precision (host/params.cpp)
  bool single_;
  int64_t nv_;
  int threads_;
  int64_t histories_;  // the run's (TallyState::fold derives each batch's range from it)
  std::vector<int64_t> batch_;
  std::unique_ptr<host::TallyState> state_;
  bool clear_ = false;
  int64_t emitted_ = 0, escaped_ = 0, folded_em_ = 0, folded_es_ = 0;
};

}  // namespace

host::RunOutput run(const host::HostRun& hr, const host::RunOptions& opt) {
  host::validate_options(hr, opt);
  CpuExec ex(hr, opt);
  return host::drive(ex, host::max_histories(hr.mean_mev_per_decay), opt);
}

}  // namespace cpu
}  // namespace rpt
