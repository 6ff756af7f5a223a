// GPU-backend support inside rptdose._core (built on every machine, no CUDA needed):
//
// - simulate_emulated(): the batch loop of every backend (host/driver.hpp) driving the very
//   kernel bodies the __global__ kernels call (cuda/kernel_body.hpp), over loops of block and
//   thread indices on the CPU, atomics mapped to __atomic builtins. Integer tallies make its
//   result equal simulate_cpu's bit for bit: tests check the GPU launch logic without a GPU.
// - prepare_run(): validated inputs and the host-derived buffers (alias table, majorant,
//   multiple-scattering table) as numpy arrays, with the host layout of rpt::Params, for the
//   cupy backend, which uploads them and compiles kernels.cu with NVRTC.
// - emulate_kernel(): one kernel of kernels.cu, emulated on numpy arrays, so the cupy backend's
//   Python driver can be run on the CPU in tests (its Params image included).
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/run_args.hpp"
#include "host/driver.hpp"
#include "cuda/kernel_body.hpp"
#include "cuda/param_arrays.hpp"
#include "cuda/wavefront_loop.hpp"

namespace py = pybind11;
using rpt::gpu::Idx3;

namespace {

// Runs body(block_idx, block_dim, grid_dim, thread_idx) for every thread of a 1-D launch.
// The emulated threads run in any order and concurrently (OpenMP), as on a device.
template <class Body>
void emulate_launch(uint32_t grid, uint32_t block, int threads, Body&& body) {
  const int64_t n = int64_t(grid) * int64_t(block);
  const Idx3 gd{grid, 1, 1}, bd{block, 1, 1};
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    const Idx3 bi{uint32_t(i / block), 0, 0};
    const Idx3 ti{uint32_t(i % block), 0, 0};
    body(bi, bd, gd, ti);
  }
}

// Device interface of wavefront_loop.hpp on the CPU: the queues and lists a CudaExec keeps on
// the device, the kernel bodies over emulated launches of `grid` blocks of `block` threads.
template <class Real>
struct EmulatedWaveDev : rpt::gpu::WaveBuffers<Real> {
  const rpt::ParamsT<Real>* P = nullptr;
  uint32_t grid = 1, block = 1;
  int threads = 1;

  void words(unsigned long long* w, bool to_device) {
    if (to_device) std::memcpy(this->words_d, w, rpt::gpu::kWaveWords * sizeof(*w));
    else std::memcpy(w, this->words_d, rpt::gpu::kWaveWords * sizeof(*w));
  }
  void decay(int64_t n_list, int64_t h_start, int64_t n_fresh, uint32_t limit) {
    if (n_list + n_fresh == 0) return;
    const int s = this->side, d = this->dside;
    emulate_launch(grid, block, threads, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      rpt::gpu::wave_decay_body(bi, bd, gd, ti, *P, this->seed, this->def[d], n_list, h_start, n_fresh,
                                this->q[s][0], this->q[s][1], limit, limit, this->words_d, this->def[d ^ 1],
                                this->tally, this->counters);
    });
  }
  void step(bool photon, int64_t n_in, int64_t n_step) {
    const int s = this->side;
    emulate_launch(grid, block, threads, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      if (photon)
        rpt::gpu::wave_step_body<true>(bi, bd, gd, ti, *P, this->seed, this->q[s][1], n_in, n_step,
                                       this->q[s ^ 1][0], this->q[s ^ 1][1], this->words_d, this->tally,
                                       this->counters);
      else
        rpt::gpu::wave_step_body<false>(bi, bd, gd, ti, *P, this->seed, this->q[s][0], n_in, n_step,
                                        this->q[s ^ 1][0], this->q[s ^ 1][1], this->words_d, this->tally,
                                        this->counters);
    });
  }
};

// Queue capacity of an emulated wavefront when the request leaves it at 0.
constexpr int64_t kEmulatedQueueCapacity = 1 << 16;

// The executor of host/driver.hpp on the CPU: the memory a CudaExec keeps on the device.
class EmulatedExec {
 public:
  EmulatedExec(const rpt::host::HostRun& hr, const rpt::host::RunOptions& opt, int threads)
      : P_(hr.params), P32_(hr.params_f32), single_(opt.precision == rpt::host::Precision::kSingle),
        nv_(hr.n_voxels), grid_(opt.grid_dim), block_(opt.block_dim), wavefront_(opt.wavefront),
        threads_(threads), regions_(opt.regions), n_regions_(opt.n_regions),
        batch_(size_t(nv_), 0ull), total_(size_t(nv_), 0ull), m2_(size_t(nv_), 0.0f),
        counters_(rpt::gpu::kNumCounters, 0ull),
        region_units_(size_t(opt.batches) * size_t(opt.n_regions > 0 ? opt.n_regions : 0), 0ull) {
    rpt::gpu::check_block_dim(block_, wavefront_, single_);
    if (wavefront_) {
      wave_.capacity = uint64_t(std::max<int64_t>(
          opt.queue_capacity > 0 ? opt.queue_capacity : kEmulatedQueueCapacity, int64_t(rpt::gpu::kMinQueueCapacity)));
      queues_.assign(size_t(rpt::gpu::wave_queue_bytes(wave_, single_) / 8), 0ull);
      deferred_.assign(size_t(rpt::gpu::wave_deferred_entries(wave_)), 0ll);
      if (single_) attach_wave(dev_f_, P32_);
      else attach_wave(dev_d_, P_);
    }
  }

  uint32_t grid_dim() const { return grid_; }
  uint32_t block_dim() const { return block_; }
  int32_t threads_used() const { return int32_t(int64_t(grid_) * block_); }
  void chunk_bounds(int64_t histories, int64_t& lower, int64_t& upper) const {
    if (wavefront_) {
      rpt::gpu::wave_chunk_bounds(wave_, histories, lower, upper);
      return;
    }
    lower = rpt::host::min_chunk(int64_t(grid_) * block_);
    upper = rpt::host::default_chunk(histories, int64_t(grid_) * block_);
  }

  void report(rpt::host::RunOutput& out) const { rpt::gpu::report_wave(wavefront_, wave_, stats_, out); }

  void end_batch() {
    if (!wavefront_) return;
    if (single_) wave(dev_f_, seed_, 0, 0, true);
    else wave(dev_d_, seed_, 0, 0, true);
  }

  void histories(uint64_t seed, int64_t h0, int64_t h1) {
    if (wavefront_) {
      seed_ = seed;
      if (single_) wave(dev_f_, seed, h0, h1, false);
      else wave(dev_d_, seed, h0, h1, false);
      return;
    }
    emulate_launch(grid_, block_, threads_, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      if (single_)
        rpt::gpu::histories_body(bi, bd, gd, ti, &P32_, seed, h0, h1, batch_.data(), counters_.data());
      else
        rpt::gpu::histories_body(bi, bd, gd, ti, &P_, seed, h0, h1, batch_.data(), counters_.data());
    });
  }
  int64_t emitted_units() const { return int64_t(counters_[rpt::gpu::kEmitted]); }
  int64_t escaped_units() const { return int64_t(counters_[rpt::gpu::kEscaped]); }
  // export mode: the batch tally copied out (as from a device), and zeroed for the next batch
  const int64_t* take_batch() {
    taken_.resize(batch_.size());
    std::memcpy(taken_.data(), batch_.data(), batch_.size() * sizeof(int64_t));
    std::fill(batch_.begin(), batch_.end(), 0ull);
    return taken_.data();
  }
  // The voxel kernels get the same launch shape as the histories here, so tests vary both.
  void fold(int32_t b, int64_t h_before, int64_t n_batch) {
    unsigned long long* row = n_regions_ > 0 ? region_units_.data() + size_t(b) * n_regions_ : nullptr;
    emulate_launch(grid_, block_, threads_, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      rpt::gpu::fold_body(bi, bd, gd, ti, nv_, batch_.data(), total_.data(), m2_.data(), h_before,
                          n_batch, regions_, n_regions_, row);
    });
  }
  void finalize(int64_t histories, int32_t batches) {
    edep_.assign(size_t(nv_), 0.0);
    emulate_launch(grid_, block_, threads_, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      rpt::gpu::finalize_body(bi, bd, gd, ti, nv_, total_.data(), m2_.data(), edep_.data(),
                              histories, batches, counters_.data());
    });
  }
  void download(rpt::host::RunOutput& out) {
    out.edep_mev_bits.resize(edep_.size());
    std::memcpy(out.edep_mev_bits.data(), edep_.data(), edep_.size() * sizeof(double));
    out.rel_uncertainty_bits.resize(total_.size());  // float64 bits over the totals
    std::memcpy(out.rel_uncertainty_bits.data(), total_.data(), total_.size() * sizeof(double));
    out.emitted = int64_t(counters_[rpt::gpu::kEmitted]);
    out.escaped = int64_t(counters_[rpt::gpu::kEscaped]);
    out.deposited = int64_t(counters_[rpt::gpu::kDeposited]);
    out.region_batch_mev.resize(region_units_.size());
    for (size_t i = 0; i < region_units_.size(); ++i)
      out.region_batch_mev[i] = double(int64_t(region_units_[i])) * rpt::kEnergyUnitMeV;
  }

 private:
  // histories [h0, h1) into the wavefront (drain: and every particle in flight to its end)
  template <class Real>
  void wave(EmulatedWaveDev<Real>& d, uint64_t seed, int64_t h0, int64_t h1, bool drain) {
    d.seed = seed;
    rpt::gpu::run_wavefront(d, wave_, wave_state_, h0, h1, drain, stats_);
  }

  template <class Real>
  void attach_wave(EmulatedWaveDev<Real>& d, const rpt::ParamsT<Real>& P) {
    d.attach(wave_, reinterpret_cast<unsigned char*>(queues_.data()), deferred_.data(), words_, batch_.data(),
             counters_.data(), 0);
    d.P = &P;
    d.grid = grid_;
    d.block = block_;
    d.threads = threads_;
  }

  const rpt::Params& P_;
  const rpt::ParamsT<float>& P32_;
  bool single_;
  int64_t nv_;
  uint32_t grid_, block_;
  bool wavefront_;
  rpt::gpu::WaveShape wave_;
  rpt::gpu::WaveState wave_state_;
  rpt::gpu::WaveStats stats_;
  uint64_t seed_ = 0;
  EmulatedWaveDev<double> dev_d_;
  EmulatedWaveDev<float> dev_f_;
  std::vector<unsigned long long> queues_;  // 8-byte aligned
  std::vector<long long> deferred_;
  unsigned long long words_[rpt::gpu::kWaveWords] = {0, 0, 0, 0};
  int threads_;
  const int32_t* regions_;
  int32_t n_regions_;
  std::vector<unsigned long long> batch_, total_;
  std::vector<float> m2_;
  std::vector<double> edep_;
  std::vector<unsigned long long> counters_, region_units_;
  std::vector<int64_t> taken_;
};

py::dict simulate_emulated(py::object request) {
  rpt::bind::RunArgs a;
  rpt::host::RunOptions opt;
  std::optional<py::error_already_set> py_error;
  rpt::bind::parse_request(a, opt, request, py_error);
  if (opt.grid_dim < 1) throw std::invalid_argument("grid_dim: expected >= 1");
  if (opt.block_dim < 1 || opt.block_dim > 1024) throw std::invalid_argument("block_dim: expected 1..1024");
  const int32_t threads = opt.threads, batches = opt.batches;
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<rpt::host::HostRun> hr;
  rpt::host::RunOutput out;
  {
    py::gil_scoped_release release;
    hr = std::make_unique<rpt::host::HostRun>(a.in);
    rpt::host::validate_options(*hr, opt);
    EmulatedExec ex(*hr, opt, nthreads);
    out = rpt::host::drive(ex, rpt::host::max_histories(hr->mean_mev_per_decay), opt);
  }
  if (out.aborted) rpt::bind::raise_aborted(py_error);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rpt::bind::result_dict(a, std::move(out), *hr, batches, elapsed);
}

template <class T>
py::array_t<T> copy_array(const T* p, size_t n) {
  py::array_t<T> a{py::ssize_t(n)};
  if (n) std::memcpy(a.mutable_data(), p, n * sizeof(T));
  return a;
}

// The Params image of one precision (host layout, pointers zeroed), its arrays and their
// pointers' byte offsets.
template <class Real>
void params_image(rpt::ParamsT<Real> p, int64_t n_voxels, py::dict& r) {
  py::dict arrays, offsets;
  rpt::gpu::visit_param_arrays(p, n_voxels, [&](const char* name, auto& ptr, size_t count) {
    using T = std::remove_cv_t<std::remove_pointer_t<std::remove_reference_t<decltype(ptr)>>>;
    arrays[name] = copy_array<T>(ptr, count);
    offsets[name] = py::int_(reinterpret_cast<const char*>(&ptr) - reinterpret_cast<const char*>(&p));
    ptr = nullptr;  // the image carries no host pointers: the caller writes its own
  });
  r["params_bytes"] = py::bytes(reinterpret_cast<const char*>(&p), sizeof(p));
  r["params_size"] = py::int_(sizeof(p));
  r["pointer_offsets"] = offsets;
  r["arrays"] = arrays;
}

py::dict prepare_run(py::object request) {
  rpt::bind::RunArgs a;
  rpt::bind::parse_inputs(a, request);  // the region labels checked too ('n_regions')
  const rpt::host::Precision prec = rpt::host::parse_precision(rpt::bind::field<std::string>(request, "precision"));
  std::unique_ptr<rpt::host::HostRun> hr;
  {
    py::gil_scoped_release release;
    hr = std::make_unique<rpt::host::HostRun>(a.in);
  }
  const rpt::Params& p = hr->params;
  py::dict r;
  if (prec == rpt::host::Precision::kSingle) params_image(hr->params_f32, hr->n_voxels, r);
  else params_image(hr->params, hr->n_voxels, r);
  r["precision"] = rpt::host::precision_name(prec);
  r["kernel"] = prec == rpt::host::Precision::kSingle ? "rpt_histories_kernel_f32" : "rpt_histories_kernel";
  py::dict sizes;
  sizes["double"] = py::int_(sizeof(rpt::ParamsT<double>));
  sizes["single"] = py::int_(sizeof(rpt::ParamsT<float>));
  r["params_sizes"] = sizes;
  r["n_voxels"] = hr->n_voxels;
  r["n_regions"] = a.n_regions;
  r["shape"] = py::make_tuple(a.shape[0], a.shape[1], a.shape[2]);
  r["max_mev_per_decay"] = hr->max_mev_per_decay;
  r["mean_mev_per_decay"] = hr->mean_mev_per_decay;
  r["max_histories"] = rpt::host::max_histories(hr->mean_mev_per_decay);
  r["tally_guard_units"] = rpt::host::kTallyGuardUnits;
  r["n_source_voxels"] = hr->n_source_voxels;
  r["alias_dense"] = bool(p.src.alias_dense);
  r["source_block"] = int(p.src.block);
  r["energy_unit_mev"] = rpt::kEnergyUnitMeV;
  return r;
}

// ---- emulate_kernel: one kernel of kernels.cu on numpy arrays

template <class T>
T* array_ptr(const py::handle& h, const char* kernel, int index, bool allow_empty = false,
             bool writeable = true) {
  const std::string arg = std::string(kernel) + ": argument " + std::to_string(index);
  if (!py::isinstance<py::array>(h)) throw std::invalid_argument(arg + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(h);
  const char kind = a.dtype().kind();
  const bool kind_ok = std::is_floating_point<T>::value ? kind == 'f' : (kind == 'i' || kind == 'u');
  if (!kind_ok || a.dtype().itemsize() != py::ssize_t(sizeof(T)))
    throw std::invalid_argument(arg + " has dtype " + std::string(py::str(a.dtype())) +
                                ", expected " + std::to_string(sizeof(T)) + "-byte " +
                                (std::is_floating_point<T>::value ? "floats" : "integers"));
  if (!(a.flags() & py::array::c_style) || (writeable && !a.writeable()))
    throw std::invalid_argument(arg + " must be a C-contiguous" +
                                std::string(writeable ? ", writeable" : "") + " array");
  if (a.size() == 0) {
    if (allow_empty) return nullptr;
    throw std::invalid_argument(arg + " is empty");
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// rpt_histories_kernel (Real = double) or rpt_histories_kernel_f32 (float): the Params image
// (uint8) holds host pointers written by the caller.
template <class Real>
void emulate_histories(const std::string& name, uint32_t grid, uint32_t block, py::tuple args,
                       int nthreads) {
  const char* k = name.c_str();
  if (args.size() != 6) throw std::invalid_argument(name + ": expected 6 arguments");
  const unsigned char* img = array_ptr<unsigned char>(args[0], k, 0, false, false);
  if (py::reinterpret_borrow<py::array>(args[0]).nbytes() != py::ssize_t(sizeof(rpt::ParamsT<Real>)))
    throw std::invalid_argument(name + ": params image has the wrong size");
  rpt::ParamsT<Real> P;
  std::memcpy(&P, img, sizeof(P));
  const uint64_t seed = args[1].cast<uint64_t>();
  const int64_t h0 = args[2].cast<int64_t>(), h1 = args[3].cast<int64_t>();
  auto* tally = array_ptr<unsigned long long>(args[4], k, 4);
  auto* counters = array_ptr<unsigned long long>(args[5], k, 5);
  py::gil_scoped_release release;
  emulate_launch(grid, block, nthreads, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
    rpt::gpu::histories_body(bi, bd, gd, ti, &P, seed, h0, h1, tally, counters);
  });
}

void emulate_kernel(const std::string& name, uint32_t grid, uint32_t block, py::tuple args,
                    int32_t threads) {
  if (grid < 1 || block < 1 || block > 1024)
    throw std::invalid_argument("emulate_kernel: expected grid >= 1 and block 1..1024");
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
  const char* k = name.c_str();
  auto need = [&](size_t n) {
    if (args.size() != n)
      throw std::invalid_argument(name + ": expected " + std::to_string(n) + " arguments");
  };
  if (name == "rpt_histories_kernel") {
    emulate_histories<double>(name, grid, block, args, nthreads);
  } else if (name == "rpt_histories_kernel_f32") {
    emulate_histories<float>(name, grid, block, args, nthreads);
  } else if (name == "rpt_fold_kernel") {
    need(9);
    const int64_t nv = args[0].cast<int64_t>();
    auto* batch = array_ptr<unsigned long long>(args[1], k, 1);
    auto* total = array_ptr<unsigned long long>(args[2], k, 2);
    auto* m2 = array_ptr<float>(args[3], k, 3);
    const int64_t h_before = args[4].cast<int64_t>();
    const int64_t n_batch = args[5].cast<int64_t>();
    const int32_t nr = args[7].cast<int32_t>();
    const int32_t* regions = array_ptr<int32_t>(args[6], k, 6, true, false);
    unsigned long long* row = array_ptr<unsigned long long>(args[8], k, 8, true);
    if (nr > 0 && (!regions || !row)) throw std::invalid_argument(name + ": regions arrays are empty");
    py::gil_scoped_release release;
    emulate_launch(grid, block, nthreads, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      rpt::gpu::fold_body(bi, bd, gd, ti, nv, batch, total, m2, h_before, n_batch, regions, nr, row);
    });
  } else if (name == "rpt_finalize_kernel") {
    need(7);
    const int64_t nv = args[0].cast<int64_t>();
    auto* total = array_ptr<unsigned long long>(args[1], k, 1);
    auto* m2 = array_ptr<float>(args[2], k, 2, false, false);
    auto* edep = array_ptr<double>(args[3], k, 3);
    const int64_t histories = args[4].cast<int64_t>();
    const int32_t batches = args[5].cast<int32_t>();
    auto* counters = array_ptr<unsigned long long>(args[6], k, 6);
    py::gil_scoped_release release;
    emulate_launch(grid, block, nthreads, [&](const Idx3& bi, const Idx3& bd, const Idx3& gd, const Idx3& ti) {
      rpt::gpu::finalize_body(bi, bd, gd, ti, nv, total, m2, edep, histories, batches, counters);
    });
  } else {
    throw std::invalid_argument("emulate_kernel: unknown kernel '" + name + "'");
  }
}

}  // namespace

void init_emulation(py::module_& m) {
  m.def("simulate_emulated", &simulate_emulated, py::arg("request"),
        "CPU emulation of the CUDA backend: the batch loop and the kernel bodies over loops of "
        "block/thread indices (the request's grid_dim blocks of block_dim threads, both >= 1; "
        "chunk histories per launch, 0 = the CUDA default). Same result dict as simulate_cpu, plus 'launch'.");
  m.def("prepare_run", &prepare_run, py::arg("request"),
        "Validate a run's inputs (a RunRequest) and return what a GPU needs: 'arrays' (every array rpt::Params "
        "points to, host-derived ones included), 'params_bytes' (the host layout of "
        "rpt::Params, pointers zeroed) with 'pointer_offsets' (byte offset of each array's "
        "pointer), 'params_size', 'n_voxels', 'max_mev_per_decay', 'mean_mev_per_decay', 'max_histories', "
        "'tally_guard_units' (emitted energy at which a run stops), 'n_regions' (of the request's checked region labels).");
  m.def("emulate_kernel", &emulate_kernel, py::arg("name"), py::arg("grid"), py::arg("block"),
        py::arg("args"), py::arg("threads") = 0,
        "Run one kernel of csrc/cuda/kernels.cu on the CPU with numpy arrays for its pointer "
        "arguments (test hook of the cupy backend).");
}
