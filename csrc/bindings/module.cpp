// pybind11 module rptdose._core: numpy arrays in, numpy arrays out; the GIL is released while
// histories run; C++ argument errors become ValueError.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "bindings/run_args.hpp"
#include "cpu/driver.hpp"
#include "host/params.hpp"
#include "physics/types.hpp"

namespace py = pybind11;

namespace {

py::dict simulate_cpu(py::object request) {
  rpt::bind::RunArgs a;
  rpt::host::RunOptions opt;
  std::optional<py::error_already_set> py_error;  // raised by the progress callable
  rpt::bind::parse_request(a, opt, request, py_error);
  const int32_t batches = opt.batches;

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<rpt::host::HostRun> hr;
  rpt::host::RunOutput out;
  {
    py::gil_scoped_release release;
    hr = std::make_unique<rpt::host::HostRun>(a.in);
    out = rpt::cpu::run(*hr, opt);
  }
  if (out.aborted) rpt::bind::raise_aborted(py_error);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rpt::bind::result_dict(a, std::move(out), *hr, batches, elapsed, false);
}

}  // namespace

void init_batched(py::module_& m);    // batched.cpp
void init_py_exec(py::module_& m);    // py_exec.cpp
void init_emulation(py::module_& m);  // emulation.cpp
void init_sampling(py::module_& m);   // sampling.cpp

PYBIND11_MODULE(_core, m) {
  m.doc() = "rptdose transport core (CPU backend, OpenMP)";
  m.def("simulate_cpu", &simulate_cpu, py::arg("request"),
        "Run a rptdose.transport.request.RunRequest on CPU threads; see docs/core_contract.md.");
  m.def("version", []() { return std::string(RPTDOSE_VERSION); });
  m.attr("MIN_BATCHES") = rpt::kMinBatches;
  m.def("_set_voxel_alias_max_bytes", &rpt::host::set_voxel_alias_max_bytes, py::arg("bytes"),
        "Test hook: the largest alias table over single voxels before the source draw uses "
        "blocks of voxels (default 256 MiB); returns the previous value.");
  m.def("openmp_max_threads", []() { return omp_get_max_threads(); });
  m.def("max_histories", &rpt::host::max_histories, py::arg("mean_mev_per_decay"),
        "Largest number of histories whose expected emitted energy fills at most half of the "
        "64-bit tallies (a run-time guard stops a run that would overflow anyway).");
  m.attr("ENERGY_UNIT_MEV") = rpt::kEnergyUnitMeV;
  init_emulation(m);
  init_batched(m);
  init_py_exec(m);
  init_sampling(m);
}
