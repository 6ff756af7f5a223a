// Export-mode runs for the Python layer (python/rptdose/transport/batched.py): PreparedRun on
// CPU threads (bindings/prepared_run.hpp) hands out the integer tallies of any range of batches,
// and TallyState folds them on the host in batch order (host/tally_state.hpp: the CPU backend's
// own fold), its arrays saved and restored by a checkpoint. Folding every batch of a run gives
// simulate_cpu's result bit for bit.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings/prepared_run.hpp"
#include "bindings/run_args.hpp"
#include "cpu/driver.hpp"
#include "host/tally_state.hpp"

namespace py = pybind11;

namespace {

class PyTallyState {
 public:
  PyTallyState(std::tuple<int64_t, int64_t, int64_t> shape, int32_t batches, py::object regions)
      : shape_{py::ssize_t(std::get<0>(shape)), py::ssize_t(std::get<1>(shape)), py::ssize_t(std::get<2>(shape))} {
    for (auto s : shape_)
      if (s < 0) throw std::invalid_argument("shape: expected sizes >= 0");
    const int64_t nv = int64_t(shape_[0]) * shape_[1] * shape_[2];
    const int32_t nr = rpt::bind::parse_regions(regions, shape_, regions_);
    st_ = std::make_unique<rpt::host::TallyState>(nv, batches, nr > 0 ? regions_.data() : nullptr, nr);
  }

  void fold(int32_t b, py::array_t<int64_t, py::array::c_style | py::array::forcecast> tally, int64_t histories,
            int64_t emitted, int64_t escaped, int32_t threads) {
    live();
    if (tally.ndim() != 1 || tally.shape(0) != st_->n_voxels())
      throw std::invalid_argument("tally: expected an int64 array of " + std::to_string(st_->n_voxels()) + " voxels");
    auto* x = const_cast<int64_t*>(tally.data());  // read only: clear = false
    const int nthreads = threads > 0 ? threads : omp_get_max_threads();
    py::gil_scoped_release release;
    st_->fold(b, x, false, histories, emitted, escaped, nthreads);
  }

  py::dict arrays() const {
    live();
    py::dict d;
    const int32_t nr = st_->n_regions();
    d["total"] = copy(st_->total, {py::ssize_t(st_->total.size())});
    d["m2"] = copy(st_->m2, {py::ssize_t(st_->m2.size())});
    d["region_units"] = copy(st_->region_units, {py::ssize_t(st_->batches()), py::ssize_t(nr)});
    d["emitted"] = st_->emitted;
    d["escaped"] = st_->escaped;
    d["next_batch"] = st_->next_batch;
    return d;
  }

  void restore(py::array_t<int64_t, py::array::c_style | py::array::forcecast> total,
               py::array_t<float, py::array::c_style | py::array::forcecast> m2,
               py::array_t<int64_t, py::array::c_style | py::array::forcecast> region_units, int64_t emitted,
               int64_t escaped, int32_t next_batch) {
    live();
    if (total.size() != py::ssize_t(st_->total.size()) || m2.size() != py::ssize_t(st_->m2.size()))
      throw std::invalid_argument("restore: total and m2 must hold " + std::to_string(st_->n_voxels()) + " voxels");
    if (region_units.size() != py::ssize_t(st_->region_units.size()))
      throw std::invalid_argument("restore: region_units must hold batches x regions = " +
                                  std::to_string(st_->region_units.size()) + " values");
    if (next_batch < 0 || next_batch > st_->batches())
      throw std::invalid_argument("restore: next_batch outside 0.." + std::to_string(st_->batches()));
    std::memcpy(st_->total.data(), total.data(), st_->total.size() * sizeof(int64_t));
    std::memcpy(st_->m2.data(), m2.data(), st_->m2.size() * sizeof(float));
    if (!st_->region_units.empty())
      std::memcpy(st_->region_units.data(), region_units.data(), st_->region_units.size() * sizeof(int64_t));
    st_->emitted = emitted;
    st_->escaped = escaped;
    st_->next_batch = next_batch;
  }

  py::dict finish(int64_t histories, int32_t threads) {
    live();
    const int nthreads = threads > 0 ? threads : omp_get_max_threads();
    rpt::host::RunOutput out;
    std::vector<int64_t> scratch;
    {
      py::gil_scoped_release release;
      st_->finish(histories, scratch, out, nthreads);
    }
    out.threads_used = nthreads;
    const int32_t batches = st_->batches(), nr = st_->n_regions();
    st_.reset();
    return rpt::bind::result_dict(shape_, nr, std::move(out), batches, 0.0, false);
  }

  int32_t next_batch() const { live(); return st_->next_batch; }
  int32_t batches() const { live(); return st_->batches(); }
  int32_t n_regions() const { live(); return st_->n_regions(); }

 private:
  void live() const {
    if (!st_) throw std::invalid_argument("TallyState: already finished");
  }
  template <class T>
  static py::array_t<T> copy(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
    py::array_t<T> a(shape);
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
  }

  std::vector<py::ssize_t> shape_;
  IArr regions_;
  std::unique_ptr<rpt::host::TallyState> st_;
};

}  // namespace

void init_batched(py::module_& m) {
  rpt::bind::def_prepared_run<&rpt::cpu::run>(
      m, "A run's inputs checked and its host tables built once; run_batches() hands out the integer "
         "tallies of any range of batches, run on CPU threads (export mode of the batch loop).");
  py::class_<PyTallyState>(m, "TallyState",
                           "A run's sums folded batch by batch in batch order (the CPU backend's fold); "
                           "finish() gives simulate_cpu's result dict.")
      .def(py::init<std::tuple<int64_t, int64_t, int64_t>, int32_t, py::object>(), py::arg("shape"),
           py::arg("batches"), py::arg("regions") = py::none())
      .def("fold", &PyTallyState::fold, py::arg("batch"), py::arg("tally"), py::arg("histories"), py::arg("emitted"),
           py::arg("escaped"), py::arg("threads") = 0)
      .def("arrays", &PyTallyState::arrays, "Copies of total, m2, region_units and the counters (a checkpoint).")
      .def("restore", &PyTallyState::restore, py::arg("total"), py::arg("m2"), py::arg("region_units"),
           py::arg("emitted"), py::arg("escaped"), py::arg("next_batch"))
      .def("finish", &PyTallyState::finish, py::arg("histories"), py::arg("threads") = 0)
      .def_property_readonly("next_batch", &PyTallyState::next_batch)
      .def_property_readonly("batches", &PyTallyState::batches)
      .def_property_readonly("n_regions", &PyTallyState::n_regions);
}
