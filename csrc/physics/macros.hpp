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

// Minimum / maximum of two doubles that are never NaN in the transport: plain comparisons
// (minsd/maxsd on x86-64, min/max on the GPU). std::fmin/fmax must honour NaN operands, which
// the baseline x86-64 build does with an out-of-line libm call.
RPT_INLINE double dmin(double a, double b) { return a < b ? a : b; }
RPT_INLINE double dmax(double a, double b) { return a > b ? a : b; }

// A hint that `addr` will be read soon (host compilers only; nothing on the GPU, whose caches
// work differently): for the first cache miss of a history, whose address is known early.
#if defined(RPT_DEVICE_CODE)
#define RPT_PREFETCH(addr) ((void)0)
#else
#define RPT_PREFETCH(addr) __builtin_prefetch(addr)
#endif
