// Checked CUDA runtime calls and RAII device buffers (host code compiled by nvcc).
// Every runtime call goes through check(): a failure becomes rpt::gpu::CudaError whose message
// names the call, what it was for, and the runtime's reason (cudaGetErrorString).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace rpt::gpu {

class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& msg, cudaError_t code) : std::runtime_error(msg), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

inline void check(cudaError_t e, const char* call, const std::string& what = std::string()) {
  if (e == cudaSuccess) return;
  std::string msg = std::string("CUDA call ") + call;
  if (!what.empty()) msg += " (" + what + ")";
  msg += " failed: " + std::string(cudaGetErrorString(e)) + " [" + cudaGetErrorName(e) + "]";
  throw CudaError(msg, e);
}

#define RPT_CUDA_CHECK(call, what) ::rpt::gpu::check((call), #call, (what))

// Owns `count` elements of T in device memory (cudaMalloc; never managed memory).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t count, const std::string& what) : what_(what) {
    if (count == 0) return;
    void* p = nullptr;
    check(cudaMalloc(&p, count * sizeof(T)), "cudaMalloc",
          what_ + ", " + std::to_string(count * sizeof(T)) + " bytes");
    ptr_ = static_cast<T*>(p);
    count_ = count;
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);  // never throws; a failure here cannot be acted upon
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

  void upload(const T* host, size_t count) {
    if (count != count_) throw std::logic_error("DeviceBuffer::upload: size mismatch (" + what_ + ")");
    if (count == 0) return;
    check(cudaMemcpy(ptr_, host, bytes(), cudaMemcpyHostToDevice), "cudaMemcpy host->device", what_);
  }
  void download(T* host, size_t count) const {
    if (count != count_) throw std::logic_error("DeviceBuffer::download: size mismatch (" + what_ + ")");
    if (count == 0) return;
    check(cudaMemcpy(host, ptr_, bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy device->host", what_);
  }
  void zero() {
    if (count_ == 0) return;
    check(cudaMemset(ptr_, 0, bytes()), "cudaMemset", what_);
  }

 private:
  void swap(DeviceBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    std::swap(what_, o.what_);
  }
  T* ptr_ = nullptr;
  size_t count_ = 0;
  std::string what_;
};

}  // namespace rpt::gpu
