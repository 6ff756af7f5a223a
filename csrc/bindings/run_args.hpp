// The arguments of `_core.simulate_cpu` (docs/core_contract.md), parsed once for every entry
// point that takes them: `_core.simulate_cpu`, `_core_cuda.simulate_cuda`,
// `_core.simulate_emulated`, `_core.prepare_run` and `PreparedRun`; and the one result dict
// they return.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/dict_args.hpp"
#include "host/driver.hpp"
#include "host/params.hpp"
#include "physics/types.hpp"

namespace rpt::bind {

namespace py = pybind11;

// Holds the converted arrays alive while `in` points into them (not copyable or movable).
struct RunArgs {
  std::vector<py::ssize_t> shape;  // [nz, ny, nx]
  host::RunInputs in;
  std::vector<DArr> keep;
  FArr density;
  IArr material, line_photon, regions;
  DArr decays;
  int32_t n_regions = 0;

  RunArgs() = default;
  RunArgs(const RunArgs&) = delete;
  RunArgs& operator=(const RunArgs&) = delete;
};

inline void check_3d(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape) {
  if (a.ndim() != 3) throw std::invalid_argument(std::string(name) + ": expected a 3-D array [z, y, x]");
  for (int i = 0; i < 3; ++i)
    if (a.shape(i) != shape[size_t(i)])
      throw std::invalid_argument(std::string(name) + ": shape differs from the density's");
}

// Region labels [z, y, x] (int32, -1 = none, else 0..R-1) checked against `shape` into `out`;
// returns R (0 for None).
inline int32_t parse_regions(const py::object& regions, const std::vector<py::ssize_t>& shape, IArr& out) {
  if (regions.is_none()) return 0;
  out = IArr::ensure(regions);
  if (!out) throw std::invalid_argument("regions: expected an integer array");
  check_3d(out, "regions", shape);
  int32_t mx = -1;
  const int32_t* r = out.data();
  for (py::ssize_t i = 0; i < out.size(); ++i) {
    if (r[i] < -1) throw std::invalid_argument("regions: labels must be >= -1");
    mx = std::max(mx, r[i]);
  }
  return mx + 1;
}

// The checks and conversions of a run's inputs, for every entry point.
inline void parse_run_args(RunArgs& a, FArr density, IArr material,
                           std::tuple<double, double, double> spacing_mm, DArr decays,
                           py::dict tables, py::dict emissions, bool electron_transport,
                           py::object regions) {
  if (!density || density.ndim() != 3)
    throw std::invalid_argument("density: expected a 3-D array [z, y, x]");
  a.shape = {density.shape(0), density.shape(1), density.shape(2)};
  check_3d(material, "material", a.shape);
  check_3d(decays, "decays", a.shape);
  a.density = density;
  a.material = material;
  a.decays = decays;
  host::RunInputs& in = a.in;
  in.nz = int32_t(a.shape[0]);
  in.ny = int32_t(a.shape[1]);
  in.nx = int32_t(a.shape[2]);
  in.sx = std::get<0>(spacing_mm);
  in.sy = std::get<1>(spacing_mm);
  in.sz = std::get<2>(spacing_mm);
  in.density = a.density.data();
  in.material = a.material.data();
  in.decays = a.decays.data();
  in.electron_transport = electron_transport;
  split_dict(tables, "tables", in.tables, in.table_scalars, a.keep);
  split_dict(emissions, "emissions", in.emissions, in.emission_scalars, a.keep, "line_is_photon");
  if (emissions.contains("line_is_photon")) {
    a.line_photon = IArr::ensure(emissions["line_is_photon"]);
    if (!a.line_photon || a.line_photon.ndim() != 1)
      throw std::invalid_argument("emissions['line_is_photon']: expected a 1-D int32 array");
    in.line_photon = a.line_photon.data();
    in.n_line_photon = a.line_photon.shape(0);
  }
  a.n_regions = parse_regions(regions, a.shape, a.regions);
}

inline void fill_options(const RunArgs& a, host::RunOptions& opt, int64_t histories,
                         uint64_t seed, int32_t batches) {
  opt.histories = histories;
  opt.seed = seed;
  opt.batches = batches;
  opt.regions = a.n_regions > 0 ? a.regions.data() : nullptr;
  opt.n_regions = a.n_regions;
}

// A field of the request, converted to T; a missing or wrong field named in the error.
template <class T>
T field(const py::object& req, const char* name) {
  if (!py::hasattr(req, name))
    throw std::invalid_argument(std::string("request: no field '") + name +
                                "' (expected an rptdose.transport.request.RunRequest)");
  try {
    return req.attr(name).cast<T>();
  } catch (const py::cast_error&) {
    throw std::invalid_argument(std::string("request.") + name + ": " +
                                std::string(py::str(py::type::of(req.attr(name)).attr("__name__"))) +
                                " does not convert to the expected type");
  }
}

// The inputs of a run (the arrays, tables, emissions, electron transport, regions) from an
// rptdose.transport.request.RunRequest, checked as parse_run_args does.
inline void parse_inputs(RunArgs& a, const py::object& req, bool with_regions = true) {
  py::object regions = with_regions ? field<py::object>(req, "regions") : py::object(py::none());
  parse_run_args(a, field<FArr>(req, "density"), field<IArr>(req, "material"),
                 field<std::tuple<double, double, double>>(req, "spacing_mm"), field<DArr>(req, "decays"),
                 field<py::dict>(req, "tables"), field<py::dict>(req, "emissions"),
                 field<bool>(req, "electron_transport"), regions);
}

// The progress hook of simulate_cpu: calls `progress(done)` with the GIL and checks for
// KeyboardInterrupt; an exception raised by `progress` is kept in `error` and aborts the run.
inline std::function<bool(int64_t)> make_progress(py::object progress,
                                                  std::optional<py::error_already_set>& error) {
  if (!progress.is_none()) {
    return [progress, &error](int64_t done) -> bool {
      py::gil_scoped_acquire gil;
      try {
        progress(done);
        return PyErr_CheckSignals() == 0;
      } catch (py::error_already_set& e) {
        error = e;
        return false;
      }
    };
  }
  return [](int64_t) -> bool {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() == 0;
  };
}

// How the request's histories are to be run, whoever runs them (a whole run, or batches of it:
// PreparedRun): the precision, the GPU launch shape, chunk and transport.
inline void parse_transport_options(host::RunOptions& opt, const py::object& req) {
  opt.grid_dim = field<uint32_t>(req, "grid_dim");
  opt.block_dim = field<uint32_t>(req, "block_dim");
  opt.chunk = field<int64_t>(req, "chunk");
  opt.precision = host::parse_precision(field<std::string>(req, "precision"));
  const std::string transport = field<std::string>(req, "gpu_transport");
  if (transport != "wavefront" && transport != "history")
    throw std::invalid_argument("gpu_transport: expected 'wavefront' or 'history', got '" + transport + "'");
  opt.wavefront = transport == "wavefront";
  opt.queue_capacity = field<int64_t>(req, "queue_capacity");
}

// The whole request: the inputs into `a`, the run's options into `opt` (progress through
// make_progress, its exception kept in `error`).
inline void parse_request(RunArgs& a, host::RunOptions& opt, const py::object& req,
                          std::optional<py::error_already_set>& error) {
  parse_inputs(a, req);
  const int64_t histories = field<int64_t>(req, "histories");
  const int64_t batches = field<int64_t>(req, "batches");
  if (batches < 1 || batches > INT32_MAX) throw std::invalid_argument("batches: expected 1..2^31-1");
  fill_options(a, opt, histories, field<uint64_t>(req, "seed"), int32_t(batches));
  opt.threads = field<int32_t>(req, "threads");
  parse_transport_options(opt, req);
  opt.progress = make_progress(field<py::object>(req, "progress"), error);
}

inline void raise_aborted(std::optional<py::error_already_set>& error) {
  if (error) throw *error;
  if (PyErr_Occurred()) throw py::error_already_set();
  throw std::runtime_error("simulation aborted");
}

// A float64 array over a vector of float64 bit patterns, owned by a capsule (no copy).
inline py::array_t<double> to_array(std::vector<int64_t>&& bits, const std::vector<py::ssize_t>& shape) {
  auto* owned = new std::vector<int64_t>(std::move(bits));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  return py::array_t<double>(shape, reinterpret_cast<const double*>(owned->data()), owner);
}

// The result dict of every backend (docs/core_contract.md); GPU runs add `launch`.
inline py::dict result_dict(const std::vector<py::ssize_t>& shape, int32_t n_regions, host::RunOutput&& out,
                            int32_t batches, double elapsed_s, bool gpu_launch) {
  py::dict res;
  res["edep_mev"] = to_array(std::move(out.edep_mev_bits), shape);
  res["rel_uncertainty"] = to_array(std::move(out.rel_uncertainty_bits), shape);
  res["emitted_mev"] = double(out.emitted) * kEnergyUnitMeV;
  res["deposited_mev"] = double(out.deposited) * kEnergyUnitMeV;
  res["escaped_mev"] = double(out.escaped) * kEnergyUnitMeV;
  res["emitted_units"] = out.emitted;
  res["deposited_units"] = out.deposited;
  res["escaped_units"] = out.escaped;
  res["energy_unit_mev"] = kEnergyUnitMeV;
  if (n_regions > 0) {
    py::array_t<double> rb({py::ssize_t(batches), py::ssize_t(n_regions)});
    std::copy(out.region_batch_mev.begin(), out.region_batch_mev.end(), rb.mutable_data());
    res["region_batch_edep_mev"] = rb;
  }
  res["threads_used"] = out.threads_used;
  res["elapsed_s"] = elapsed_s;
  res["precision"] = host::precision_name(out.precision);
  if (gpu_launch) {
    py::dict launch;
    launch["grid_dim"] = out.grid_dim;
    launch["block_dim"] = out.block_dim;
    launch["chunk"] = out.chunk;
    launch["launches"] = out.launches;
    launch["transport"] = out.wavefront ? "wavefront" : "history";
    if (out.wavefront) {
      launch["queue_capacity"] = out.queue_capacity;
      launch["rounds"] = out.wave.rounds;
      launch["decay_launches"] = out.wave.decay_launches;
      launch["deferred_decays"] = out.wave.deferred;
      launch["electron_steps"] = out.wave.electron_steps;
      launch["photon_steps"] = out.wave.photon_steps;
      launch["held_particles"] = out.wave.held;
    }
    res["launch"] = launch;
  }
  return res;
}

inline py::dict result_dict(const RunArgs& a, host::RunOutput&& out, const host::HostRun& hr,
                            int32_t batches, double elapsed_s, bool gpu_launch = true) {
  py::dict res = result_dict(a.shape, a.n_regions, std::move(out), batches, elapsed_s, gpu_launch);
  res["max_mev_per_decay"] = hr.max_mev_per_decay;
  res["mean_mev_per_decay"] = hr.mean_mev_per_decay;
  return res;
}

}  // namespace rpt::bind
