// CPU emulation of the CUDA kernels' launch logic (filled by the GPU backend work).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void init_emulation(py::module_& m) { (void)m; }
