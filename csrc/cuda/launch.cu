// Host launch code of the CUDA backend: device buffers, the Params copy on the device, launch
// shapes, and the executor that host/driver.hpp's batch loop drives.
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/kernel_body.hpp"
#include "cuda/kernels.cuh"
#include "cuda/launch.hpp"
#include "cuda/param_arrays.hpp"
#include "cuda/wavefront_kernels.cuh"
#include "cuda/wavefront_loop.hpp"

namespace rpt::gpu {
namespace {

std::string version_str(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Device-resident copy of a run's parameters in the run's precision (hr.params or
// hr.params_f32): every array of the ParamsT, then the ParamsT itself (with device pointers)
// so kernels receive one pointer.
class DeviceParams {
 public:
  DeviceParams(const host::HostRun& hr, host::Precision precision) {
    if (precision == host::Precision::kSingle) upload(hr.params_f32, hr.n_voxels);
    else upload(hr.params, hr.n_voxels);
  }
  template <class Real>
  const ParamsT<Real>* get() const { return reinterpret_cast<const ParamsT<Real>*>(params_.get()); }
  // the same struct on the host (its pointers to device memory), for kernels that take it by value
  template <class Real>
  ParamsT<Real> host_copy() const {
    ParamsT<Real> p;
    std::memcpy(&p, host_.data(), sizeof(p));
    return p;
  }

 private:
  template <class Real>
  void upload(ParamsT<Real> p, int64_t n_voxels) {
    visit_param_arrays(p, n_voxels, [this](const char* name, auto& ptr, size_t count) {
      using T = std::remove_cv_t<std::remove_pointer_t<std::remove_reference_t<decltype(ptr)>>>;
      if (count == 0) {
        ptr = nullptr;
        return;
      }
      DeviceBuffer<unsigned char> buf(count * sizeof(T), std::string("params ") + name);
      buf.upload(reinterpret_cast<const unsigned char*>(ptr), count * sizeof(T));
      ptr = reinterpret_cast<const T*>(buf.get());
      arrays_.push_back(std::move(buf));
    });
    params_ = DeviceBuffer<unsigned char>(sizeof(p), "params struct");
    params_.upload(reinterpret_cast<const unsigned char*>(&p), sizeof(p));
    host_.assign(reinterpret_cast<const unsigned char*>(&p), reinterpret_cast<const unsigned char*>(&p) + sizeof(p));
  }

  std::vector<DeviceBuffer<unsigned char>> arrays_;
  DeviceBuffer<unsigned char> params_;
  std::vector<unsigned char> host_;  // the uploaded struct, as on the host
};

// Launch shape of a history kernel: occupancy-derived unless given (grid-stride: the grid only
// needs to fill the device).
template <class Kernel>
void history_shape(Kernel kernel, int sms, const host::RunOptions& opt, uint32_t& grid_out,
                   uint32_t& block_out) {
  int block = int(opt.block_dim);
  int grid = int(opt.grid_dim);
  if (block == 0) {
    int min_grid = 0;
    RPT_CUDA_CHECK(cudaOccupancyMaxPotentialBlockSize(&min_grid, &block, kernel, 0, 0),
                   "occupancy of the history kernel");
    if (grid == 0) grid = min_grid;
  }
  if (grid == 0) {
    int per_sm = 0;
    RPT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, 0),
                   "occupancy of the history kernel, block of " + std::to_string(block));
    grid = std::max(1, per_sm) * sms;
  }
  grid_out = uint32_t(std::max(grid, 1));
  block_out = uint32_t(std::max(block, 1));
}

// The wavefront kernels of one precision.
template <class Real>
struct WaveKernels;
template <>
struct WaveKernels<double> {
  static constexpr auto decay = rpt_wave_decay_kernel;
  static constexpr auto electron = rpt_wave_electron_kernel;
  static constexpr auto photon = rpt_wave_photon_kernel;
};
template <>
struct WaveKernels<float> {
  static constexpr auto decay = rpt_wave_decay_kernel_f32;
  static constexpr auto electron = rpt_wave_electron_kernel_f32;
  static constexpr auto photon = rpt_wave_photon_kernel_f32;
};

// Device interface of wavefront_loop.hpp on a CUDA device.
template <class Real>
struct CudaWaveDev : WaveBuffers<Real> {
  ParamsT<Real> P;  // pointers to device memory; passed by value to the kernels
  uint32_t block = 256, max_grid = 1;

  uint32_t grid_for(int64_t n) const {
    return uint32_t(std::max<int64_t>(1, std::min<int64_t>((n + block - 1) / block, max_grid)));
  }
  void words(unsigned long long* w, bool to_device) {
    if (to_device)
      RPT_CUDA_CHECK(cudaMemcpy(this->words_d, w, kWaveWords * sizeof(*w), cudaMemcpyHostToDevice),
                     "wavefront counters");
    else
      RPT_CUDA_CHECK(cudaMemcpy(w, this->words_d, kWaveWords * sizeof(*w), cudaMemcpyDeviceToHost),
                     "wavefront counters (after the kernels of the round)");
  }
  void decay(int64_t n_list, int64_t h_start, int64_t n_fresh, uint32_t limit) {
    const int64_t n = n_list + n_fresh;
    if (n == 0) return;
    const int s = this->side, d = this->dside;
    WaveKernels<Real>::decay<<<grid_for(n), block>>>(P, this->seed, this->def[d], n_list, h_start, n_fresh,
                                                     this->q[s][0], this->q[s][1], limit, limit, this->words_d,
                                                     this->def[d ^ 1], this->tally, this->counters);
    RPT_CUDA_CHECK(cudaGetLastError(), "launch of the wavefront's decay kernel");
  }
  void step(bool photon, int64_t n_in, int64_t n_step) {
    const int s = this->side;
    auto kernel = photon ? WaveKernels<Real>::photon : WaveKernels<Real>::electron;
    kernel<<<grid_for(n_in), block>>>(P, this->seed, this->q[s][photon ? 1 : 0], n_in, n_step, this->q[s ^ 1][0],
                                      this->q[s ^ 1][1], this->words_d, this->tally, this->counters);
    RPT_CUDA_CHECK(cudaGetLastError(), std::string("launch of the wavefront's ") +
                                           (photon ? "photon" : "electron") + " kernel");
  }
};

class CudaExec {
 public:
  CudaExec(const host::HostRun& hr, const host::RunOptions& opt)
      : nv_(hr.n_voxels), n_regions_(opt.n_regions), single_(opt.precision == host::Precision::kSingle),
        wavefront_(opt.wavefront), params_(hr, opt.precision) {
    check_block_dim(opt.block_dim, wavefront_, single_);
    int dev = 0;
    RPT_CUDA_CHECK(cudaGetDevice(&dev), "current device");
    RPT_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev),
                   "multiprocessor count");
    if (wavefront_) {
      // wavefront kernels: one thread per decay or particle, grid-stride beyond 64 blocks per SM
      block_ = opt.block_dim > 0 ? opt.block_dim : 256;
      grid_ = opt.grid_dim > 0 ? opt.grid_dim : uint32_t(64 * sms_);
      size_t free_b = 0, total_b = 0;
      RPT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b), "free device memory");
      const uint64_t per = single_ ? track_queue_bytes<float>() : track_queue_bytes<double>();
      // four queues (two buffers of two types), within a quarter of the free memory
      uint64_t cap = opt.queue_capacity > 0 ? uint64_t(opt.queue_capacity)
                                            : std::min<uint64_t>(uint64_t(1) << 21, free_b / 4 / (4 * per));
      wave_.capacity = std::max<uint64_t>(cap, kMinQueueCapacity);
      queues_ = DeviceBuffer<unsigned char>(wave_queue_bytes(wave_, single_), "wavefront particle queues");
      deferred_ = DeviceBuffer<long long>(wave_deferred_entries(wave_), "wavefront deferred decays");
      words_ = DeviceBuffer<unsigned long long>(kWaveWords, "wavefront counters");
    } else if (single_) {
      history_shape(rpt_histories_kernel_f32, sms_, opt, grid_, block_);
    } else {
      history_shape(rpt_histories_kernel, sms_, opt, grid_, block_);
    }
    // voxel kernels: kVoxelBlock threads, grid-stride over the voxels
    voxel_grid_ = voxel_grid(nv_, sms_);

    const size_t nv = size_t(nv_);
    batch_ = DeviceBuffer<unsigned long long>(nv, "batch tally");
    total_ = DeviceBuffer<unsigned long long>(nv, "total tally");
    m2_ = DeviceBuffer<float>(nv, "spread of the batch means");
    counters_ = DeviceBuffer<unsigned long long>(kNumCounters, "energy counters");
    batch_.zero();
    total_.zero();
    m2_.zero();
    counters_.zero();
    if (n_regions_ > 0) {
      regions_ = DeviceBuffer<int32_t>(nv, "region labels");
      regions_.upload(opt.regions, nv);
      region_units_ = DeviceBuffer<unsigned long long>(size_t(opt.batches) * size_t(n_regions_),
                                                       "region batch sums");
      region_units_.zero();
    }
    if (wavefront_) {  // the buffers in place: the wavefront's device interface over them
      if (single_) attach_wave(dev_f_);
      else attach_wave(dev_d_);
    }
  }

  uint32_t grid_dim() const { return grid_; }
  uint32_t block_dim() const { return block_; }
  int32_t threads_used() const { return int32_t(std::min<int64_t>(int64_t(grid_) * block_, INT32_MAX)); }
  void chunk_bounds(int64_t histories, int64_t& lower, int64_t& upper) const {
    if (wavefront_) {
      wave_chunk_bounds(wave_, histories, lower, upper);
      return;
    }
    const int64_t threads = int64_t(grid_) * block_;
    lower = host::min_chunk(threads);
    upper = host::default_chunk(histories, threads);
  }

  void histories(uint64_t seed, int64_t h0, int64_t h1) {
    if (wavefront_) {
      seed_ = seed;
      if (single_) wave<float>(seed, h0, h1, false);
      else wave<double>(seed, h0, h1, false);
      return;
    }
    const std::string kernel = single_ ? "rpt_histories_kernel_f32" : "rpt_histories_kernel";
    if (single_)
      rpt_histories_kernel_f32<<<grid_, block_>>>(params_.get<float>(), seed, h0, h1, batch_.get(),
                                                  counters_.get());
    else
      rpt_histories_kernel<<<grid_, block_>>>(params_.get<double>(), seed, h0, h1, batch_.get(),
                                              counters_.get());
    RPT_CUDA_CHECK(cudaGetLastError(), "launch of " + kernel + " <<<" +
                                           std::to_string(grid_) + ", " + std::to_string(block_) + ">>>");
    RPT_CUDA_CHECK(cudaDeviceSynchronize(), kernel + ", histories " +
                                                std::to_string(h0) + ".." + std::to_string(h1));
  }

  void report(host::RunOutput& out) const { report_wave(wavefront_, wave_, stats_, out); }

  void end_batch() {
    if (!wavefront_) return;
    if (single_) wave<float>(seed_, 0, 0, true);
    else wave<double>(seed_, 0, 0, true);
  }

  int64_t emitted_units() const { return counter(kEmitted, "emitted-energy counter"); }
  int64_t escaped_units() const { return counter(kEscaped, "escaped-energy counter"); }

  // export mode: the batch tally to the host, and zeroed on the device for the next batch
  const int64_t* take_batch() {
    taken_.resize(size_t(nv_));
    batch_.download(reinterpret_cast<unsigned long long*>(taken_.data()), size_t(nv_));
    batch_.zero();
    return taken_.data();
  }

  void fold(int32_t b, int64_t h_before, int64_t n_batch) {
    unsigned long long* row = n_regions_ > 0 ? region_units_.get() + size_t(b) * n_regions_ : nullptr;
    rpt_fold_kernel<<<voxel_grid_, kVoxelBlock>>>(nv_, batch_.get(), total_.get(), m2_.get(),
                                                  h_before, n_batch, regions_.get(), n_regions_, row);
    RPT_CUDA_CHECK(cudaGetLastError(), "launch of rpt_fold_kernel");
  }

  void finalize(int64_t histories, int32_t batches) {
    // the batch tally is all zeros after the last fold and no longer needed: it receives the
    // energies (same size: 8 bytes per voxel); the uncertainties go over the totals
    double* edep = reinterpret_cast<double*>(batch_.get());
    rpt_finalize_kernel<<<voxel_grid_, kVoxelBlock>>>(nv_, total_.get(), m2_.get(), edep,
                                                      histories, batches, counters_.get());
    RPT_CUDA_CHECK(cudaGetLastError(), "launch of rpt_finalize_kernel");
    RPT_CUDA_CHECK(cudaDeviceSynchronize(), "rpt_fold_kernel / rpt_finalize_kernel");
  }

  void download(host::RunOutput& out) {
    const size_t nv = size_t(nv_);
    out.edep_mev_bits.resize(nv);
    out.rel_uncertainty_bits.resize(nv);
    RPT_CUDA_CHECK(cudaMemcpy(out.edep_mev_bits.data(), batch_.get(), nv * sizeof(double),
                              cudaMemcpyDeviceToHost), "energy per voxel");
    RPT_CUDA_CHECK(cudaMemcpy(out.rel_uncertainty_bits.data(), total_.get(), nv * sizeof(double),
                              cudaMemcpyDeviceToHost), "relative uncertainty per voxel");
    unsigned long long c[kNumCounters];
    counters_.download(c, kNumCounters);
    out.emitted = int64_t(c[kEmitted]);
    out.escaped = int64_t(c[kEscaped]);
    out.deposited = int64_t(c[kDeposited]);
    if (n_regions_ > 0) {
      std::vector<unsigned long long> units(region_units_.size());
      region_units_.download(units.data(), units.size());
      out.region_batch_mev.resize(units.size());
      for (size_t i = 0; i < units.size(); ++i)
        out.region_batch_mev[i] = double(int64_t(units[i])) * kEnergyUnitMeV;
    }
  }

 private:
  template <class Real>
  CudaWaveDev<Real>& dev();

  // histories [h0, h1) into the wavefront (drain: and every particle in flight to its end)
  template <class Real>
  void wave(uint64_t seed, int64_t h0, int64_t h1, bool drain) {
    CudaWaveDev<Real>& d = dev<Real>();
    d.seed = seed;
    run_wavefront(d, wave_, wave_state_, h0, h1, drain, stats_);
    RPT_CUDA_CHECK(cudaDeviceSynchronize(), drain ? std::string("wavefront, end of a batch")
                                                  : "wavefront, histories " + std::to_string(h0) + ".." +
                                                        std::to_string(h1));
  }

  int64_t counter(int32_t index, const char* what) const {
    unsigned long long e = 0;
    RPT_CUDA_CHECK(cudaMemcpy(&e, counters_.get() + index, sizeof(e), cudaMemcpyDeviceToHost), what);
    return int64_t(e);
  }

  int64_t nv_;
  int32_t n_regions_;
  bool single_;
  bool wavefront_;
  int sms_ = 1;
  uint32_t grid_ = 1, block_ = 1, voxel_grid_ = 1;
  DeviceParams params_;
  DeviceBuffer<unsigned long long> batch_, total_, counters_, region_units_;
  DeviceBuffer<float> m2_;
  DeviceBuffer<int32_t> regions_;
  std::vector<int64_t> taken_;  // export mode: the last batch tally on the host
  template <class Real>
  void attach_wave(CudaWaveDev<Real>& d) {
    d.attach(wave_, queues_.get(), deferred_.get(), words_.get(), batch_.get(), counters_.get(), 0);
    d.P = params_.host_copy<Real>();
    d.block = block_;
    d.max_grid = grid_;
  }

  WaveShape wave_;
  WaveState wave_state_;
  WaveStats stats_;
  uint64_t seed_ = 0;
  CudaWaveDev<double> dev_d_;
  CudaWaveDev<float> dev_f_;
  DeviceBuffer<unsigned char> queues_;
  DeviceBuffer<long long> deferred_;
  DeviceBuffer<unsigned long long> words_;
};

template <>
CudaWaveDev<double>& CudaExec::dev<double>() { return dev_d_; }
template <>
CudaWaveDev<float>& CudaExec::dev<float>() { return dev_f_; }

}  // namespace

// Never throws: each failing call is turned into the reason why no device can be used.
DeviceStatus device_status() {
  DeviceStatus s;
  if (cudaRuntimeGetVersion(&s.runtime_version) != cudaSuccess) s.runtime_version = 0;
  if (cudaDriverGetVersion(&s.driver_version) != cudaSuccess) s.driver_version = 0;
  if (s.driver_version == 0) {
    s.reason = "no NVIDIA driver found (libcuda is not loadable); the CUDA backend needs an "
               "NVIDIA GPU with its driver";
    return s;
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error
    s.count = 0;
    s.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(e) + " [" +
               cudaGetErrorName(e) + "] (driver supports CUDA " + version_str(s.driver_version) +
               ", this module was built with CUDA " + version_str(s.runtime_version) + ")";
    return s;
  }
  s.count = n;
  s.reason = n > 0 ? std::to_string(n) + " CUDA device(s), driver CUDA " +
                         version_str(s.driver_version)
                   : "the NVIDIA driver reports no CUDA device";
  return s;
}

DeviceInfo device_info(int device) {
  DeviceInfo d;
  if (device < 0) RPT_CUDA_CHECK(cudaGetDevice(&device), "current device");
  cudaDeviceProp prop;
  RPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), "device " + std::to_string(device));
  int previous = 0;
  RPT_CUDA_CHECK(cudaGetDevice(&previous), "current device");
  RPT_CUDA_CHECK(cudaSetDevice(device), "device " + std::to_string(device));
  cudaError_t mem = cudaMemGetInfo(&d.free_memory, &d.total_memory);
  cudaError_t back = cudaSetDevice(previous);  // leave the caller's current device as it was
  check(mem, "cudaMemGetInfo", "device " + std::to_string(device));
  check(back, "cudaSetDevice", "restoring device " + std::to_string(previous));
  d.device = device;
  d.name = prop.name;
  d.major = prop.major;
  d.minor = prop.minor;
  d.multiprocessors = prop.multiProcessorCount;
  RPT_CUDA_CHECK(cudaDriverGetVersion(&d.driver_version), "driver version");
  RPT_CUDA_CHECK(cudaRuntimeGetVersion(&d.runtime_version), "runtime version");
  return d;
}

host::RunOutput run_cuda(const host::HostRun& hr, const host::RunOptions& opt) {
  host::validate_options(hr, opt);
  const DeviceStatus st = device_status();
  if (st.count < 1) throw CudaError("no CUDA device to run on (" + st.reason + ")", cudaErrorNoDevice);
  CudaExec ex(hr, opt);
  return host::drive(ex, host::max_histories(hr.mean_mev_per_decay), opt);
}

}  // namespace rpt::gpu
