// PreparedRun: a run's inputs checked and its host tables built once (a Dask worker keeps it
// between work units), handing out the integer tallies of any range of batches (export mode of
// host/driver.hpp). One class for the backends that have it: `_core.PreparedRun` runs on CPU
// threads, `_core_cuda.PreparedRun` on the current CUDA device; `Run` is the backend's entry
// point (cpu::run, gpu::run_cuda).
#pragma once
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "bindings/run_args.hpp"
#include "host/driver.hpp"

namespace rpt::bind {

template <host::RunOutput (*Run)(const host::HostRun&, const host::RunOptions&)>
class PreparedRun {
 public:
  explicit PreparedRun(py::object request) : args_(std::make_unique<RunArgs>()) {
    parse_inputs(*args_, request, false);  // regions are the folding side's (TallyState)
    parse_transport_options(base_, request);  // precision, GPU launch and transport
    py::gil_scoped_release release;
    hr_ = std::make_unique<host::HostRun>(args_->in);
  }

  int64_t n_voxels() const { return hr_->n_voxels; }
  py::tuple shape() const { return py::make_tuple(args_->shape[0], args_->shape[1], args_->shape[2]); }
  double max_mev() const { return hr_->max_mev_per_decay; }
  double mean_mev() const { return hr_->mean_mev_per_decay; }

  // Batches [first, end) of a run of `histories` in `batches` batches; each batch's tally goes
  // to on_batch(b, tally, emitted_units, escaped_units) (a new int64 array [n_voxels]), or, without
  // on_batch, into the returned list of such tuples.
  py::object run_batches(int64_t histories, uint64_t seed, int32_t batches, int32_t first, int32_t end,
                         int32_t threads, py::object progress, py::object on_batch) {
    host::RunOptions opt = base_;
    opt.histories = histories;
    opt.seed = seed;
    opt.batches = batches;
    opt.threads = threads;
    opt.first_batch = first;
    opt.end_batch = end;
    std::optional<py::error_already_set> py_error;
    opt.progress = make_progress(progress, py_error);
    py::list collected;
    const int64_t nv = hr_->n_voxels;
    opt.take_batch = [&](int32_t b, const int64_t* tally, int64_t emitted, int64_t escaped) -> bool {
      py::gil_scoped_acquire gil;
      try {
        py::array_t<int64_t> t{py::ssize_t(nv)};
        if (nv) std::memcpy(t.mutable_data(), tally, size_t(nv) * sizeof(int64_t));
        py::tuple item = py::make_tuple(b, t, emitted, escaped);
        if (on_batch.is_none()) collected.append(item);
        else on_batch(*item);
        return true;
      } catch (py::error_already_set& e) {
        py_error = e;
        return false;
      }
    };
    host::RunOutput out;
    {
      py::gil_scoped_release release;
      out = Run(*hr_, opt);
    }
    if (out.aborted) raise_aborted(py_error);
    if (on_batch.is_none()) return std::move(collected);
    return py::none();
  }

 private:
  std::unique_ptr<RunArgs> args_;
  std::unique_ptr<host::HostRun> hr_;
  host::RunOptions base_;  // the request's transport options (no run yet)
};

// Registers PreparedRun<Run> as `name` in module m.
template <host::RunOutput (*Run)(const host::HostRun&, const host::RunOptions&)>
void def_prepared_run(py::module_& m, const char* doc) {
  using PR = PreparedRun<Run>;
  py::class_<PR>(m, "PreparedRun", doc)
      .def(py::init<py::object>(), py::arg("request"))
      .def_property_readonly("n_voxels", &PR::n_voxels)
      .def_property_readonly("shape", &PR::shape)
      .def_property_readonly("max_mev_per_decay", &PR::max_mev)
      .def_property_readonly("mean_mev_per_decay", &PR::mean_mev)
      .def("run_batches", &PR::run_batches, py::arg("histories"), py::arg("seed"), py::arg("batches"),
           py::arg("first"), py::arg("end"), py::arg("threads") = 0, py::arg("progress") = py::none(),
           py::arg("on_batch") = py::none(),
           "Batches [first, end) of a run of `histories` decays in `batches` batches: each batch's "
           "(b, tally int64 [n_voxels] in energy units, emitted units, escaped units) to "
           "on_batch(...), or returned as a list.");
}

}  // namespace rpt::bind
