# CUDA backend: the module rptdose._core_cuda, and the sources the cupy backend compiles at
# run time (NVRTC). Included from CMakeLists.txt after the _core target.
#
# RPTDOSE_CUDA=AUTO (default): build the CUDA module when check_language(CUDA) finds a CUDA
# compiler; ON: a missing CUDA compiler is an error; OFF: CPU only. The CPU build (_core) is
# complete either way: it also carries the CPU emulation of the CUDA kernels used by the tests.
# CMAKE_CUDA_ARCHITECTURES (or the CUDAARCHS environment variable) overrides the default
# architectures: sm_80 (A100) and sm_90 (H100/H200) machine code, plus compute_90 PTX that
# the driver JIT-compiles for newer GPUs.

string(TOUPPER "${RPTDOSE_CUDA}" _rpt_cuda_mode)
if(NOT _rpt_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "RPTDOSE_CUDA='${RPTDOSE_CUDA}': expected AUTO, ON or OFF")
endif()

# Headers and kernel source for the cupy backend: shipped in every build (a CPU-only wheel
# still runs on a GPU through cupy), under rptdose/csrc/ in the installed package.
file(GLOB _rpt_physics_headers "${CMAKE_CURRENT_SOURCE_DIR}/csrc/physics/*.hpp")
install(FILES ${_rpt_physics_headers} DESTINATION rptdose/csrc/physics)
install(FILES csrc/cuda/kernels.cu csrc/cuda/kernels.cuh csrc/cuda/kernel_body.hpp
        DESTINATION rptdose/csrc/cuda)

if(_rpt_cuda_mode STREQUAL "OFF")
  message(STATUS "rptdose: CUDA backend disabled (RPTDOSE_CUDA=OFF)")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(_rpt_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "rptdose: RPTDOSE_CUDA=ON but no CUDA compiler was found (put nvcc on "
                        "PATH or set CMAKE_CUDA_COMPILER / CUDACXX)")
  endif()
  message(STATUS "rptdose: no CUDA compiler found, building the CPU backend only")
  return()
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
message(STATUS "rptdose: building the CUDA backend (${CMAKE_CUDA_COMPILER_ID} "
               "${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")

python_add_library(_core_cuda MODULE
  csrc/bindings/cuda_module.cpp
  csrc/cuda/kernels.cu
  csrc/cuda/launch.cu
  csrc/cuda/wavefront_kernels.cu
  csrc/host/params.cpp
  WITH_SOABI)
target_include_directories(_core_cuda PRIVATE csrc)
target_compile_definitions(_core_cuda PRIVATE RPTDOSE_VERSION="${SKBUILD_PROJECT_VERSION}")
# Static CUDA runtime: the module imports without a CUDA installation; without a driver or a
# device, device_count() is 0 and device_status() says why.
set_target_properties(_core_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static)
target_link_libraries(_core_cuda PRIVATE pybind11::headers CUDA::cudart_static)
# --fmad=false (device) and -ffp-contract=off (host), as for the CPU build: no fused
# multiply-add contraction. CPU and GPU results are still not bit-identical: the device's
# libm (log, exp, sin, cos) differs from the host's in the last bits, so histories diverge
# after a few steps; they agree statistically (tests/gpu).
target_compile_options(_core_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 --fmad=false -Xcompiler=-ffp-contract=off>
  $<$<COMPILE_LANGUAGE:CXX>:-O3 -ffp-contract=off>)
install(TARGETS _core_cuda LIBRARY DESTINATION rptdose)
