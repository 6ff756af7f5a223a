// Chunks sized by time, shared by the CPU and GPU drivers.
//
// A driver runs its histories in chunks (CPU: one OpenMP loop; GPU: one launch) and calls the
// progress callable, which also checks for Ctrl-C (PyErr_CheckSignals), between chunks. A chunk
// of a fixed number of histories may last minutes on a large run (1e8 histories at 3e5 decays/s
// per core), so the next chunk's size is taken from the rate measured on the last one, aiming at
// kChunkSeconds of work: Ctrl-C and progress are then seen a few times per second whatever the
// run's size and the machine's speed. The histories and their random numbers do not depend on the
// chunking (each history's stream is keyed by its index, tallies are exact integers), so the
// results stay bit-identical. Host-only C++.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>

namespace rpt::host {

// Wall time one chunk aims at (s): Ctrl-C latency and progress granularity.
constexpr double kChunkSeconds = 0.2;

class ChunkSizer {
 public:
  // Chunks between `lower` and `upper` histories (lower <= upper, both >= 1); the first has `lower`.
  ChunkSizer(int64_t lower, int64_t upper)
      : lower_(std::max<int64_t>(1, std::min(lower, upper))), upper_(std::max<int64_t>(1, upper)),
        next_(lower_) {}

  int64_t next() const { return next_; }
  int64_t upper() const { return upper_; }

  void start() { t0_ = std::chrono::steady_clock::now(); }

  // After a chunk of `n` histories (started with start()): the size of the next one, from the
  // measured rate, at most 4x the last, within [lower, upper].
  void done(int64_t n) {
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    double want = dt > 1e-6 ? double(n) * (kChunkSeconds / dt) : 4.0 * double(next_);
    want = std::min(want, 4.0 * double(next_));
    if (want > double(upper_)) want = double(upper_);
    next_ = std::max(lower_, std::min(upper_, int64_t(want)));
  }

 private:
  int64_t lower_, upper_, next_;
  std::chrono::steady_clock::time_point t0_{};
};

}  // namespace rpt::host
