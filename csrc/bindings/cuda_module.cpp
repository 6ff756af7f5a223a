// pybind11 module rptdose._core_cuda: the CUDA backend. Same arguments and result as
// _core.simulate_cpu (docs/core_contract.md); the GIL is released while the device works.
// Built only when CMake finds a CUDA compiler (cmake/cuda.cmake); imported guarded.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>

#include "bindings/run_args.hpp"
#include "cuda/launch.hpp"

namespace py = pybind11;

namespace {

py::dict simulate_cuda(FArr density, IArr material, std::tuple<double, double, double> spacing_mm,
                       DArr decays, py::dict tables, py::dict emissions, int64_t histories,
                       uint64_t seed, int32_t batches, int32_t threads, bool electron_transport,
                       py::object regions, py::object progress, uint32_t grid_dim,
                       uint32_t block_dim, const std::string& precision) {
  (void)threads;  // the launch shape replaces the thread count (see grid_dim / block_dim)
  rpt::bind::RunArgs a;
  rpt::bind::parse_run_args(a, density, material, spacing_mm, decays, tables, emissions,
                            electron_transport, regions);
  rpt::gpu::RunOptions opt;
  rpt::bind::fill_gpu_options(a, opt, histories, seed, batches);
  opt.grid_dim = grid_dim;
  opt.block_dim = block_dim;
  opt.precision = rpt::host::parse_precision(precision);
  std::optional<py::error_already_set> py_error;
  opt.progress = rpt::bind::make_progress(progress, py_error);

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<rpt::host::HostRun> hr;
  rpt::gpu::RunOutput out;
  {
    py::gil_scoped_release release;
    hr = std::make_unique<rpt::host::HostRun>(a.in);
    out = rpt::gpu::run_cuda(*hr, opt);
  }
  if (out.aborted) rpt::bind::raise_aborted(py_error);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  py::dict res = rpt::bind::result_dict(a, std::move(out), *hr, batches, elapsed);
  res["device"] = rpt::gpu::device_info().name;
  res["precision"] = rpt::host::precision_name(opt.precision);
  return res;
}

py::dict device_info(int device) {
  rpt::gpu::DeviceInfo d = rpt::gpu::device_info(device);
  py::dict r;
  r["device"] = d.device;
  r["name"] = d.name;
  r["compute_capability"] = py::make_tuple(d.major, d.minor);
  r["total_memory_bytes"] = d.total_memory;
  r["free_memory_bytes"] = d.free_memory;
  r["multiprocessors"] = d.multiprocessors;
  r["driver_version"] = d.driver_version;
  r["runtime_version"] = d.runtime_version;
  return r;
}

py::dict device_status() {
  rpt::gpu::DeviceStatus s = rpt::gpu::device_status();
  py::dict r;
  r["count"] = s.count;
  r["reason"] = s.reason;
  r["driver_version"] = s.driver_version;
  r["runtime_version"] = s.runtime_version;
  return r;
}

}  // namespace

PYBIND11_MODULE(_core_cuda, m) {
  m.doc() = "rptdose transport core, CUDA backend (one GPU thread per history)";
  m.def("simulate_cuda", &simulate_cuda, py::arg("density"), py::arg("material"),
        py::arg("spacing_mm"), py::arg("decays"), py::arg("tables"), py::arg("emissions"),
        py::arg("histories"), py::arg("seed"), py::arg("batches"), py::arg("threads"),
        py::arg("electron_transport"), py::arg("regions") = py::none(),
        py::arg("progress") = py::none(), py::kw_only(), py::arg("grid_dim") = 0u,
        py::arg("block_dim") = 0u, py::arg("precision") = "double",
        "Run `histories` decays on the current CUDA device; arguments and result as "
        "_core.simulate_cpu (docs/core_contract.md). `threads` is ignored: the launch shape is "
        "chosen from the kernel's occupancy unless grid_dim/block_dim are given; the result's "
        "'launch' entry reports it, 'threads_used' is grid_dim * block_dim. `precision`: 'double' "
        "or 'single' (rpt_histories_kernel_f32: float tables and transport).");
  m.def("device_count", []() { return rpt::gpu::device_status().count; },
        "Number of visible CUDA devices; 0 when there is no driver or device "
        "(device_status()['reason'] says why).");
  m.def("device_status", &device_status,
        "{'count', 'reason', 'driver_version', 'runtime_version'}; never raises.");
  m.def("device_info", &device_info, py::arg("device") = -1,
        "Name, compute capability and memory of a device (default: the current one); "
        "raises RuntimeError naming the failed CUDA call when there is none.");
  m.def("version", []() { return std::string(RPTDOSE_VERSION); });
  m.attr("ENERGY_UNIT_MEV") = rpt::kEnergyUnitMeV;
}
