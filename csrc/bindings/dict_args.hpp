// Conversions from the Python dicts of tables/emissions to host ArrayRefs.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/params.hpp"

using DArr = pybind11::array_t<double, pybind11::array::c_style | pybind11::array::forcecast>;
using FArr = pybind11::array_t<float, pybind11::array::c_style | pybind11::array::forcecast>;
using IArr = pybind11::array_t<int32_t, pybind11::array::c_style | pybind11::array::forcecast>;

inline rpt::host::ArrayRef array_ref(const DArr& a) {
  rpt::host::ArrayRef r;
  r.data = a.data();
  for (pybind11::ssize_t i = 0; i < a.ndim(); ++i) r.shape.push_back(int64_t(a.shape(i)));
  return r;
}

// Split a Python dict into float64 arrays and float scalars; other entries (e.g. provenance)
// are ignored. `keep` holds the converted arrays alive while they are used.
inline void split_dict(const pybind11::dict& d, const char* name,
                       std::map<std::string, rpt::host::ArrayRef>& arrays,
                       std::map<std::string, double>& scalars, std::vector<DArr>& keep,
                       const std::string& skip = "") {
  namespace py = pybind11;
  for (auto item : d) {
    std::string key = py::str(item.first);
    if (key == skip) continue;
    py::handle v = item.second;
    if (py::isinstance<py::array>(v)) {
      DArr a = DArr::ensure(v);
      if (!a) {
        PyErr_Clear();
        throw std::invalid_argument(std::string(name) + "['" + key + "']: not a numeric array");
      }
      keep.push_back(a);
      arrays[key] = array_ref(keep.back());
    } else if (py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v)) {
      scalars[key] = v.cast<double>();
    }
  }
}
