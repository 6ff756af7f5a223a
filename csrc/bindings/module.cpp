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

#include "bindings/dict_args.hpp"
#include "cpu/driver.hpp"
#include "host/params.hpp"
#include "physics/types.hpp"

namespace py = pybind11;
using rpt::host::ArrayRef;

namespace {

void check_3d(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape) {
  if (a.ndim() != 3) throw std::invalid_argument(std::string(name) + ": expected a 3-D array [z, y, x]");
  for (int i = 0; i < 3; ++i)
    if (a.shape(i) != shape[size_t(i)])
      throw std::invalid_argument(std::string(name) + ": shape differs from the density's");
}

py::dict simulate_cpu(FArr density, IArr material, std::tuple<double, double, double> spacing_mm,
                      DArr decays, py::dict tables, py::dict emissions, int64_t histories,
                      uint64_t seed, int32_t batches, int32_t threads, bool electron_transport,
                      py::object regions, py::object progress, const std::string& precision) {
  if (density.ndim() != 3) throw std::invalid_argument("density: expected a 3-D array [z, y, x]");
  std::vector<py::ssize_t> shape{density.shape(0), density.shape(1), density.shape(2)};
  check_3d(material, "material", shape);
  check_3d(decays, "decays", shape);

  rpt::host::RunInputs in;
  in.nz = int32_t(shape[0]);
  in.ny = int32_t(shape[1]);
  in.nx = int32_t(shape[2]);
  in.sx = std::get<0>(spacing_mm);
  in.sy = std::get<1>(spacing_mm);
  in.sz = std::get<2>(spacing_mm);
  in.density = density.data();
  in.material = material.data();
  in.decays = decays.data();
  in.electron_transport = electron_transport;
  std::vector<DArr> keep;
  split_dict(tables, "tables", in.tables, in.table_scalars, keep);
  split_dict(emissions, "emissions", in.emissions, in.emission_scalars, keep, "line_is_photon");
  IArr line_photon;
  if (emissions.contains("line_is_photon")) {
    line_photon = IArr::ensure(emissions["line_is_photon"]);
    if (!line_photon || line_photon.ndim() != 1)
      throw std::invalid_argument("emissions['line_is_photon']: expected a 1-D int32 array");
    in.line_photon = line_photon.data();
    in.n_line_photon = line_photon.shape(0);
  }

  rpt::cpu::RunOptions opt;
  opt.histories = histories;
  opt.seed = seed;
  opt.batches = batches;
  opt.threads = threads;
  opt.precision = rpt::host::parse_precision(precision);
  IArr reg;
  if (!regions.is_none()) {
    reg = IArr::ensure(regions);
    if (!reg) throw std::invalid_argument("regions: expected an integer array");
    check_3d(reg, "regions", shape);
    int32_t mx = -1;
    const int32_t* r = reg.data();
    for (py::ssize_t i = 0; i < reg.size(); ++i) {
      if (r[i] < -1) throw std::invalid_argument("regions: labels must be >= -1");
      mx = std::max(mx, r[i]);
    }
    opt.regions = r;
    opt.n_regions = mx + 1;
  }
  std::optional<py::error_already_set> py_error;  // raised by the progress callable
  if (!progress.is_none()) {
    opt.progress = [&progress, &py_error](int64_t done) -> bool {
      py::gil_scoped_acquire gil;
      try {
        progress(done);
        return PyErr_CheckSignals() == 0;
      } catch (py::error_already_set& e) {
        py_error = e;
        return false;
      }
    };
  } else {
    opt.progress = [](int64_t) -> bool {
      py::gil_scoped_acquire gil;
      return PyErr_CheckSignals() == 0;
    };
  }

  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<rpt::host::HostRun> hr;
  rpt::cpu::RunOutput out;
  {
    py::gil_scoped_release release;
    hr = std::make_unique<rpt::host::HostRun>(in);
    out = rpt::cpu::run(*hr, opt);
  }
  if (out.aborted) {
    if (py_error) throw *py_error;
    if (PyErr_Occurred()) throw py::error_already_set();
    throw std::runtime_error("simulation aborted");
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // hand the result buffers to numpy without copying (capsules own the vectors)
  auto* edep_vec = new std::vector<int64_t>(std::move(out.edep_mev_bits));
  auto* rel_vec = new std::vector<int64_t>(std::move(out.rel_uncertainty_bits));
  py::capsule edep_owner(edep_vec, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  py::capsule rel_owner(rel_vec, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  py::array_t<double> edep(shape, reinterpret_cast<const double*>(edep_vec->data()), edep_owner);
  py::array_t<double> rel(shape, reinterpret_cast<const double*>(rel_vec->data()), rel_owner);
  py::dict res;
  res["edep_mev"] = edep;
  res["rel_uncertainty"] = rel;
  res["emitted_mev"] = double(out.emitted) * rpt::kEnergyUnitMeV;
  res["deposited_mev"] = double(out.deposited) * rpt::kEnergyUnitMeV;
  res["escaped_mev"] = double(out.escaped) * rpt::kEnergyUnitMeV;
  res["emitted_units"] = out.emitted;
  res["deposited_units"] = out.deposited;
  res["escaped_units"] = out.escaped;
  res["energy_unit_mev"] = rpt::kEnergyUnitMeV;
  res["max_mev_per_decay"] = hr->max_mev_per_decay;
  res["mean_mev_per_decay"] = hr->mean_mev_per_decay;
  if (opt.n_regions > 0) {
    py::array_t<double> rb({py::ssize_t(batches), py::ssize_t(opt.n_regions)});
    std::copy(out.region_batch_mev.begin(), out.region_batch_mev.end(), rb.mutable_data());
    res["region_batch_edep_mev"] = rb;
  }
  res["threads_used"] = out.threads_used;
  res["elapsed_s"] = elapsed;
  res["precision"] = rpt::host::precision_name(opt.precision);
  return res;
}

}  // namespace

void init_emulation(py::module_& m);  // emulation.cpp
void init_sampling(py::module_& m);   // sampling.cpp

PYBIND11_MODULE(_core, m) {
  m.doc() = "rptdose transport core (CPU backend, OpenMP)";
  m.def("simulate_cpu", &simulate_cpu, py::arg("density"), py::arg("material"),
        py::arg("spacing_mm"), py::arg("decays"), py::arg("tables"), py::arg("emissions"),
        py::arg("histories"), py::arg("seed"), py::arg("batches"), py::arg("threads"),
        py::arg("electron_transport"), py::arg("regions") = py::none(),
        py::arg("progress") = py::none(), py::kw_only(), py::arg("precision") = "double",
        "Run `histories` decays on the CPU; see docs/core_contract.md. `precision`: 'double' "
        "or 'single' (float transport, the same integer tallies).");
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
  init_sampling(m);
}
