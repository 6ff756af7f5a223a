// Host/device qualifiers and internal assertions shared by every physics header.
//
// Everything under csrc/physics is header-only and compiled twice: by the host C++ compiler
// for the OpenMP backend and by nvcc/NVRTC for the CUDA backends. Rules for these headers:
// no allocation, no exceptions, no STL containers, no virtual calls.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define RPT_HD __host__ __device__
#define RPT_DEVICE_CODE 1
#else
#define RPT_HD
#endif

#define RPT_INLINE RPT_HD inline

// The step functions (photon_step, electron_step) and the small functions every step calls
// (random numbers, rotation, deposits): always inlined on the CPU, so a particle's state stays
// in registers from step to step and no call goes through the PLT (GCC's inliner otherwise
// stops short in the large step loop); on a GPU the compiler's own choice.
#if defined(RPT_DEVICE_CODE) || !defined(__GNUC__)
#define RPT_HOT_INLINE RPT_INLINE
#else
#define RPT_HOT_INLINE inline __attribute__((always_inline))
#endif

#if !defined(__CUDACC_RTC__)
#include <cstdint>
#include <cmath>
#else
// NVRTC (run-time compilation, the cupy backend) has no C++ standard headers: the fixed-width
// integer types come from here, the math functions (log, exp, sqrt, ...) are NVRTC built-ins.
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#endif

// Debug-only invariant checks (never user-input validation: that happens on the host, before
// any transport, in csrc/host).
#if defined(RPTDOSE_DEBUG) && !defined(RPT_DEVICE_CODE)
#include <cassert>
#define RPT_ASSERT(cond) assert(cond)
#else
#define RPT_ASSERT(cond) ((void)0)
#endif

// Minimum / maximum of two reals that are never NaN in the transport: plain comparisons
// (minsd/maxsd on x86-64, min/max on the GPU). std::fmin/fmax must honour NaN operands, which
// the baseline x86-64 build does with an out-of-line libm call. Both operands have the same
// type, so a single-precision expression is never silently widened to double.
template <class T>
RPT_INLINE T dmin(T a, T b) { return a < b ? a : b; }
template <class T>
RPT_INLINE T dmax(T a, T b) { return a > b ? a : b; }

// The transport is written once for a floating type `Real` (float or double: the precision
// switch, host/params.hpp Precision) and instantiated for both. Its math goes through these
// overloads so that the float instantiation calls the float functions (logf, expf, sqrtf:
// no silent promotion to double, whose throughput is 1/32-1/64 of float's on most GPUs) and
// the double one calls exactly what it always called.
namespace rpt {
RPT_INLINE double real_log(double x) { return log(x); }
RPT_INLINE float real_log(float x) { return logf(x); }
RPT_INLINE double real_exp(double x) { return exp(x); }
RPT_INLINE float real_exp(float x) { return expf(x); }
RPT_INLINE double real_sqrt(double x) { return sqrt(x); }
RPT_INLINE float real_sqrt(float x) { return sqrtf(x); }
}  // namespace rpt

// A hint that `addr` will be read soon (host compilers only; nothing on the GPU, whose caches
// work differently): for the first cache miss of a history, whose address is known early.
#if defined(RPT_DEVICE_CODE)
#define RPT_PREFETCH(addr) ((void)0)
#else
#define RPT_PREFETCH(addr) __builtin_prefetch(addr)
#endif
