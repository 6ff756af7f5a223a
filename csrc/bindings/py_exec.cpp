// An executor written in Python, driven by the one batch loop (host/driver.hpp): the cupy
// backend (python/rptdose/transport/cupy_backend.py) launches the kernels of kernels.cu through
// cupy, and this adapter lets host::drive run it exactly as it runs CpuExec, CudaExec and
// EmulatedExec: the same batches, chunks sized by time, progress and Ctrl-C checks, overflow
// guard, fold order and result dict. The GIL is held throughout (every call goes to Python).
//
// The Python object provides (the executor interface of host/driver.hpp, in Python):
//   grid_dim, block_dim, threads_used            ints (attributes)
//   chunk_bounds(histories) -> (lower, upper)
//   histories(seed, h0, h1); emitted_units() -> int
//   fold(batch, h_before, n_batch)
//   finalize(histories, batches)
//   download() -> {"edep_mev": float64 [n_voxels], "rel_uncertainty": float64 [n_voxels],
//                  "emitted", "escaped", "deposited": ints, "region_units": int64 [batches, regions]}
// Constants the Python side needs come from C++ (init_py_exec): the kernel names, the counter
// indices, the voxel kernels' block size, the chunk bounds.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings/run_args.hpp"
#include "cuda/kernel_body.hpp"
#include "host/chunking.hpp"
#include "host/driver.hpp"

namespace py = pybind11;

namespace {

using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

class PyExec {
 public:
  PyExec(py::object o, int64_t n_voxels) : o_(std::move(o)), nv_(n_voxels) {}

  uint32_t grid_dim() const { return o_.attr("grid_dim").cast<uint32_t>(); }
  uint32_t block_dim() const { return o_.attr("block_dim").cast<uint32_t>(); }
  int32_t threads_used() const { return o_.attr("threads_used").cast<int32_t>(); }
  void chunk_bounds(int64_t histories, int64_t& lower, int64_t& upper) const {
    auto t = o_.attr("chunk_bounds")(histories).cast<std::pair<int64_t, int64_t>>();
    lower = t.first;
    upper = t.second;
  }
  void histories(uint64_t seed, int64_t h0, int64_t h1) { o_.attr("histories")(seed, h0, h1); }
  int64_t emitted_units() const { return o_.attr("emitted_units")().cast<int64_t>(); }
  // export mode is not offered through drive_executor (no take_batch consumer): never called
  int64_t escaped_units() const { throw std::logic_error("PyExec: no export mode"); }
  void fold(int32_t b, int64_t h_before, int64_t n_batch) { o_.attr("fold")(b, h_before, n_batch); }
  const int64_t* take_batch() { throw std::logic_error("PyExec: no export mode"); }
  void finalize(int64_t histories, int32_t batches) { o_.attr("finalize")(histories, batches); }
  void report(rpt::host::RunOutput& /*out*/) const {}  // the history kernel only
  void end_batch() {}  // each launch runs its histories to their end
  void download(rpt::host::RunOutput& out) {
    py::dict d = o_.attr("download")();
    F64 edep = F64::ensure(d["edep_mev"]), rel = F64::ensure(d["rel_uncertainty"]);
    check(edep, "download()['edep_mev']");
    check(rel, "download()['rel_uncertainty']");
    out.edep_mev_bits.resize(size_t(nv_));
    out.rel_uncertainty_bits.resize(size_t(nv_));
    std::memcpy(out.edep_mev_bits.data(), edep.data(), size_t(nv_) * sizeof(double));
    std::memcpy(out.rel_uncertainty_bits.data(), rel.data(), size_t(nv_) * sizeof(double));
    out.emitted = d["emitted"].cast<int64_t>();
    out.escaped = d["escaped"].cast<int64_t>();
    out.deposited = d["deposited"].cast<int64_t>();
    I64 units = I64::ensure(d["region_units"]);
    if (!units) throw std::invalid_argument("executor download()['region_units']: expected an int64 array");
    out.region_batch_mev.resize(size_t(units.size()));
    for (py::ssize_t i = 0; i < units.size(); ++i)
      out.region_batch_mev[size_t(i)] = double(units.data()[i]) * rpt::kEnergyUnitMeV;
  }

 private:
  template <class A>
  void check(const A& a, const char* what) const {
    if (!a || a.ndim() != 1 || a.shape(0) != nv_)
      throw std::invalid_argument(std::string("executor ") + what + ": expected a 1-D array of " +
                                  std::to_string(nv_) + " voxels");
  }

  py::object o_;
  int64_t nv_;
};

py::dict drive_executor(py::object executor, std::tuple<int64_t, int64_t, int64_t> shape, int64_t histories,
                        uint64_t seed, int32_t batches, int32_t n_regions, int64_t capacity, int64_t chunk,
                        py::object progress) {
  const std::vector<py::ssize_t> sh{py::ssize_t(std::get<0>(shape)), py::ssize_t(std::get<1>(shape)),
                                    py::ssize_t(std::get<2>(shape))};
  const int64_t nv = int64_t(sh[0]) * sh[1] * sh[2];
  rpt::host::RunOptions opt;
  opt.histories = histories;
  opt.seed = seed;
  opt.batches = batches;
  opt.chunk = chunk;
  std::optional<py::error_already_set> py_error;
  opt.progress = rpt::bind::make_progress(progress, py_error);
  PyExec ex(executor, nv);
  auto t0 = std::chrono::steady_clock::now();
  rpt::host::RunOutput out = rpt::host::drive(ex, capacity, opt);
  if (out.aborted) rpt::bind::raise_aborted(py_error);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rpt::bind::result_dict(sh, n_regions, std::move(out), batches, elapsed, true);
}

}  // namespace

void init_py_exec(py::module_& m) {
  m.def("drive_executor", &drive_executor, py::arg("executor"), py::arg("shape"), py::arg("histories"),
        py::arg("seed"), py::arg("batches"), py::arg("n_regions"), py::arg("capacity"), py::arg("chunk") = 0,
        py::arg("progress") = py::none(),
        "Run the batch loop of every backend (csrc/host/driver.hpp) over an executor written in "
        "Python (see csrc/bindings/py_exec.cpp for its methods); returns the result dict of "
        "simulate_cpu plus 'launch'.");
  py::dict k;
  k["emitted"] = int(rpt::gpu::kEmitted);
  k["escaped"] = int(rpt::gpu::kEscaped);
  k["deposited"] = int(rpt::gpu::kDeposited);
  m.attr("COUNTER_INDEX") = k;
  m.attr("NUM_COUNTERS") = int(rpt::gpu::kNumCounters);
  m.attr("VOXEL_BLOCK") = rpt::gpu::kVoxelBlock;
  m.attr("KERNEL_NAMES") = py::make_tuple("rpt_histories_kernel", "rpt_histories_kernel_f32", "rpt_fold_kernel",
                                          "rpt_finalize_kernel");
  m.attr("MAX_CHUNK") = rpt::host::kMaxChunk;
  m.attr("CHUNK_SECONDS") = rpt::host::kChunkSeconds;
  m.attr("TALLY_GUARD_UNITS") = rpt::host::kTallyGuardUnits;
  m.def("gpu_chunk_bounds", [](int64_t histories, int64_t threads_per_launch) {
    return py::make_tuple(rpt::host::min_chunk(threads_per_launch), rpt::host::default_chunk(histories, threads_per_launch));
  }, py::arg("histories"), py::arg("threads_per_launch"),
        "(lower, upper) histories per launch of a GPU executor (host/driver.hpp min_chunk, default_chunk).");
  m.def("batch_range", [](int64_t n, int32_t nb, int32_t b) {
    if (nb < 1 || b < 0 || b >= nb) throw std::invalid_argument("batch_range: expected 0 <= b < nb");
    int64_t h0, h1;
    rpt::batch_range(n, nb, b, h0, h1);
    return py::make_tuple(h0, h1);
  }, py::arg("histories"), py::arg("batches"), py::arg("batch"),
        "(first, one-past-last) history of a batch (physics/batch.hpp: the split of every backend).");
  m.def("batch_sizes", [](int64_t n, int32_t nb) {
    if (nb < 1) throw std::invalid_argument("batch_sizes: expected batches >= 1");
    py::array_t<int64_t> out{py::ssize_t(nb)};
    for (int32_t b = 0; b < nb; ++b) {
      int64_t h0, h1;
      rpt::batch_range(n, nb, b, h0, h1);
      out.mutable_data()[b] = h1 - h0;
    }
    return out;
  }, py::arg("histories"), py::arg("batches"), "Histories of each batch (physics/batch.hpp batch_range).");
  m.def("voxel_grid", &rpt::gpu::voxel_grid, py::arg("n_voxels"), py::arg("multiprocessors"),
        "Blocks of a voxel kernel launch (cuda/kernel_body.hpp).");
}
