// rptdose's CUDA backend, as seen from C++ code that does not include CUDA headers (the
// pybind11 module rptdose._core_cuda). Implemented in launch.cu.
#pragma once
#include <cstddef>
#include <string>

#include "host/driver.hpp"
#include "host/params.hpp"

namespace rpt::gpu {

struct DeviceStatus {
  int count = 0;            // visible CUDA devices (0 when there is no driver or no device)
  std::string reason;       // why count is 0, or a one-line description of the devices
  int driver_version = 0;   // CUDA version the driver supports (e.g. 13000), 0: no driver
  int runtime_version = 0;  // CUDA runtime this module was built with
};

struct DeviceInfo {
  int device = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t total_memory = 0, free_memory = 0;  // bytes
  int multiprocessors = 0;
  int driver_version = 0, runtime_version = 0;
};

// Never throws: counts the devices, or says why there are none.
DeviceStatus device_status();

// The current device (or `device` >= 0). Throws CudaError (std::runtime_error) without one.
DeviceInfo device_info(int device = -1);

// Run (or, in export mode, hand out the batch tallies of) `opt`'s histories on the current
// device. Throws std::invalid_argument for bad options and CudaError
// (std::runtime_error) when a CUDA call fails; the message names the call and the reason.
host::RunOutput run_cuda(const host::HostRun& hr, const host::RunOptions& opt);

}  // namespace rpt::gpu
