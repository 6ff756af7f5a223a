// The host side of the GPU's wavefront (wavefront_body.hpp): the rounds of one chunk of
// histories, written once over a device interface that the CUDA executor (launch.cu) and the
// CPU emulation (bindings/emulation.cpp) implement.
//
// A round: if there are decays left and room in the queues, the decay kernel (decays deferred
// by the last one first, then new ones); then one step of every live electron and photon
// (as many as the output queues are sure to hold; the rest are copied unchanged), and the
// output queues become the input queues. Particles carry over from chunk to chunk of a batch;
// at the batch's end (the executor's end_batch) the rounds go on until every decay has been
// run and both queues are empty, so each batch's tally is complete when it is folded.
//
// Host-only C++ (no CUDA headers).
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/wavefront_body.hpp"
#include "host/driver.hpp"

namespace rpt::gpu {

// Live particles of each type at most (each queue of the two buffers holds this many).
// The decay kernel fills a queue to a quarter of it, so that one step of every live particle
// fits in the output queues (out_e <= n_e + k_e + k_p, out_p <= n_p + 3 k_e).
struct WaveShape {
  uint64_t capacity = 0;
  uint64_t fill() const { return std::max<uint64_t>(capacity / 4, 1); }
  int64_t max_decays() const { return int64_t(fill()); }  // decays per decay launch (and deferred)
};

using host::WaveStats;

// Smallest queue capacity (tests use small queues to exercise deferred decays and held
// particles). A decay that needs more room than fill() in one queue cannot run: the run stops
// with an error that says so.
constexpr uint64_t kMinQueueCapacity = 16;

// Chunk bounds of a wavefront executor (host/driver.hpp sizes chunks by time within them): at
// least four full decay launches, so the queues fill; at most ~100 chunks per run.
inline void wave_chunk_bounds(const WaveShape& shape, int64_t histories, int64_t& lower, int64_t& upper) {
  constexpr int64_t most = host::kMaxChunk;
  lower = std::min<int64_t>(most, 4 * shape.max_decays());
  upper = std::min<int64_t>(most, std::max<int64_t>(lower, (histories + 99) / 100));
}

// Threads per block a launch may ask for: the wavefront kernels and the single-precision history
// kernel are compiled for at most kWaveMaxBlock (their __launch_bounds__), the double history
// kernel for up to 1024. Throws std::invalid_argument for more.
inline void check_block_dim(uint32_t block_dim, bool wavefront, bool single) {
  if ((wavefront || single) && block_dim > kWaveMaxBlock)
    throw std::invalid_argument("block_dim: expected at most " + std::to_string(kWaveMaxBlock) + " for the " +
                                (wavefront ? std::string("wavefront") : std::string("single-precision history")) +
                                " kernels, got " + std::to_string(block_dim));
}

// What a wavefront executor reports in a run's output.
inline void report_wave(bool wavefront, const WaveShape& shape, const WaveStats& st, host::RunOutput& out) {
  out.wavefront = wavefront;
  if (!wavefront) return;
  out.queue_capacity = int64_t(shape.capacity);
  out.wave = st;
}

// Bytes of a wavefront's queues (two buffers of an electron and a photon queue) and of its two
// deferred-decay lists.
inline uint64_t wave_queue_bytes(const WaveShape& shape, bool single) {
  return 4 * shape.capacity * (single ? track_queue_bytes<float>() : track_queue_bytes<double>());
}
inline uint64_t wave_deferred_entries(const WaveShape& shape) { return 2 * uint64_t(shape.max_decays()); }

// The memory of a wavefront (on the device, or on the host in the emulation) as the kernels see
// it, and the swaps of its double buffers: the part of the device interface that does not
// launch anything. `queues` holds wave_queue_bytes(), `deferred` wave_deferred_entries(). It
// lives as long as its executor: which buffers are the inputs carries from chunk to chunk.
template <class Real>
struct WaveBuffers {
  uint64_t seed = 0;
  TrackQueue<Real> q[2][2];  // [buffer][0 electrons, 1 photons]
  long long* def[2] = {nullptr, nullptr};
  unsigned long long *words_d = nullptr, *tally = nullptr, *counters = nullptr;
  int side = 0, dside = 0;

  void attach(const WaveShape& shape, unsigned char* queues, long long* deferred, unsigned long long* words,
              unsigned long long* batch_tally, unsigned long long* energy_counters, uint64_t run_seed) {
    const uint64_t cap = shape.capacity, per = track_queue_bytes<Real>();
    for (int b = 0; b < 2; ++b)
      for (int k = 0; k < 2; ++k) q[b][k] = carve_track_queue<Real>(queues + (2 * b + k) * cap * per, cap);
    def[0] = deferred;
    def[1] = deferred + shape.max_decays();
    words_d = words;
    tally = batch_tally;
    counters = energy_counters;
    seed = run_seed;
    side = dside = 0;
  }
  void swap_deferred() { dside ^= 1; }
  void swap_queues() { side ^= 1; }
};

// Device interface:
//   void words(unsigned long long w[kWaveWords], bool to_device);   counters to / from the device
//   void decay(int64_t n_list, int64_t h_start, int64_t n_fresh, uint32_t limit);
//       decays: the deferred list's n_list entries, then h_start.. (n_fresh), into the input
//       queues up to `limit` each; the deferred ones into the other deferred list
//   void swap_deferred();
//   void step(bool photon, int64_t n_in, int64_t n_step);  input queue of that type -> outputs
//   void swap_queues();
// What carries over from one chunk of a batch to the next: the particles in the queues, the
// deferred decays, and the particles a decay adds on average (which sizes the decay launches).
struct WaveState {
  uint64_t n_e = 0, n_p = 0;  // live particles in the input queues
  int64_t n_def = 0;          // decays deferred, waiting in the deferred list
  double per_decay_e = 1.0, per_decay_p = 1.0;
  int64_t decays_done = 0;
  uint64_t added_e = 0, added_p = 0;
};

// Decays h0..h1-1 and rounds of steps; with `drain`, also until every deferred decay has run and
// both queues are empty (the end of a batch: its tally is then complete). Without, it returns
// once every decay of the range has been launched (or deferred): what is left carries over to
// the next chunk of the batch, so the queues stay full across chunks and drain once per batch.
template <class Dev>
void run_wavefront(Dev& dev, const WaveShape& shape, WaveState& ws, int64_t h0, int64_t h1, bool drain,
                   WaveStats& st) {
  const uint64_t cap = shape.capacity, fill = shape.fill();
  const int64_t max_decays = shape.max_decays();
  unsigned long long w[kWaveWords] = {0, 0, 0, 0};
  uint64_t& n_e = ws.n_e;
  uint64_t& n_p = ws.n_p;
  int64_t& n_def = ws.n_def;
  int64_t next = h0;  // first decay of the range not yet tried
  for (;;) {
    if (!drain && next >= h1) return;
    const bool decays_left = next < h1 || n_def > 0;
    if (decays_left) {
      const double room_e = double(fill > n_e ? fill - n_e : 0) / std::max(ws.per_decay_e, 1e-3);
      const double room_p = double(fill > n_p ? fill - n_p : 0) / std::max(ws.per_decay_p, 1e-3);
      const int64_t room = int64_t(std::min(room_e, room_p));
      const bool empty = n_e + n_p == 0;
      if (empty || room >= max_decays / 8) {
        const int64_t want = std::max<int64_t>(std::min<int64_t>(room, max_decays), empty ? 1 : 0);
        const int64_t n_fresh = std::min<int64_t>(h1 - next, std::max<int64_t>(want - n_def, 0));
        w[kWaveIn] = (unsigned long long)n_e | ((unsigned long long)n_p << 32);
        w[kWaveDeferred] = 0;
        dev.words(w, true);
        dev.decay(n_def, next, n_fresh, uint32_t(std::min<uint64_t>(fill, 0xffffffffull)));
        dev.words(w, false);
        ++st.decay_launches;
        const uint64_t e1 = w[kWaveIn] & 0xffffffffull, p1 = w[kWaveIn] >> 32;
        const int64_t tried = n_def + n_fresh, deferred = int64_t(w[kWaveDeferred]);
        if (e1 + p1 == 0 && empty && deferred == tried && tried > 0)
          throw std::runtime_error("wavefront: a decay needs more room than queues of " + std::to_string(cap) +
                                   " particles give; raise queue_capacity");
        ws.added_e += e1 - n_e;
        ws.added_p += p1 - n_p;
        ws.decays_done += tried - deferred;
        if (ws.decays_done > 0) {
          ws.per_decay_e = double(ws.added_e) / double(ws.decays_done);
          ws.per_decay_p = double(ws.added_p) / double(ws.decays_done);
        }
        st.deferred += deferred;
        n_e = e1;
        n_p = p1;
        n_def = deferred;
        next += n_fresh;
        dev.swap_deferred();
      }
    }
    if (n_e + n_p == 0) {
      if (next < h1 || n_def > 0) continue;
      return;
    }
    // the steps the output queues surely hold: n_e + k_e + k_p <= cap, n_p + 3 k_e <= cap
    const uint64_t k_e = std::min<uint64_t>({n_e, (cap - n_p) / kElectronStepMaxPhotons, cap - n_e});
    const uint64_t k_p = std::min<uint64_t>(n_p, cap - n_e - k_e);
    if (k_e + k_p == 0)
      throw std::runtime_error("wavefront: queues of " + std::to_string(cap) +
                               " particles are full; raise queue_capacity");
    w[kWaveOutE] = 0;
    w[kWaveOutP] = 0;
    dev.words(w, true);
    if (n_e > 0) dev.step(false, int64_t(n_e), int64_t(k_e));
    if (n_p > 0) dev.step(true, int64_t(n_p), int64_t(k_p));
    dev.words(w, false);
    ++st.rounds;
    st.electron_steps += int64_t(k_e);
    st.photon_steps += int64_t(k_p);
    st.held += int64_t((n_e - k_e) + (n_p - k_p));
    n_e = w[kWaveOutE];
    n_p = w[kWaveOutP];
    if (n_e > cap || n_p > cap)
      throw std::logic_error("wavefront: an output queue overflowed (" + std::to_string(n_e) + ", " +
                             std::to_string(n_p) + " of " + std::to_string(cap) + ")");
    dev.swap_queues();
  }
}

}  // namespace rpt::gpu
