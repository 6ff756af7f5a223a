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

#include "bindings/prepared_run.hpp"
#include "bindings/run_args.hpp"
#include "cuda/launch.hpp"

namespace py = pybind11;

namespace {

py::dict simulate_cuda(py::object request) {
  rpt::bind::RunArgs a;
  rpt::host::RunOptions opt;
  std::optional<py::error_already_set> py_error;
  rpt::bind::parse_request(a, opt, request, py_error);  // threads: ignored (the launch shape replaces it)
  const int32_t batches = opt.batches;

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<rpt::host::HostRun> hr;
  rpt::host::RunOutput out;
  {
    py::gil_scoped_release release;
    hr = std::make_unique<rpt::host::HostRun>(a.in);
    out = rpt::gpu::run_cuda(*hr, opt);
  }
  if (out.aborted) rpt::bind::raise_aborted(py_error);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  py::dict res = rpt::bind::result_dict(a, std::move(out), *hr, batches, elapsed);
  res["device"] = rpt::gpu::device_info().name;
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
  m.def("simulate_cuda", &simulate_cuda, py::arg("request"),
        "Run a rptdose.transport.request.RunRequest on the current CUDA device; result as "
        "_core.simulate_cpu (docs/core_contract.md). The request's threads are ignored: the launch "
        "shape is chosen from the kernel's occupancy unless grid_dim/block_dim are given; the "
        "result's 'launch' entry reports it, 'threads_used' is grid_dim * block_dim.");
  m.def("device_count", []() { return rpt::gpu::device_status().count; },
        "Number of visible CUDA devices; 0 when there is no driver or device "
        "(device_status()['reason'] says why).");
  m.def("device_status", &device_status,
        "{'count', 'reason', 'driver_version', 'runtime_version'}; never raises.");
  m.def("device_info", &device_info, py::arg("device") = -1,
        "Name, compute capability and memory of a device (default: the current one); "
        "raises RuntimeError naming the failed CUDA call when there is none.");
  rpt::bind::def_prepared_run<&rpt::gpu::run_cuda>(
      m, "A run's inputs checked and its host tables built once; run_batches() hands out the integer "
         "tallies of any range of batches, run on the current CUDA device (export mode of the batch loop).");
  m.def("version", []() { return std::string(RPTDOSE_VERSION); });
  m.attr("ENERGY_UNIT_MEV") = rpt::kEnergyUnitMeV;
}
