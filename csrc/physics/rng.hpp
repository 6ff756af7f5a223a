// Counter-based random numbers: Philox4x32-10.
//
// Reference: J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as
// easy as 1, 2, 3", SC'11 (2011); constants as in Random123 and cuRAND's Philox.
// Every particle owns a stream: key (seed), counter (history index, block number, stream id).
// A decay draws from stream kStreamTag of its history; each particle it emits, and each
// secondary a particle sets in motion, gets a stream id drawn from its parent's stream
// (PhiloxT::child). A particle's random numbers therefore depend only on (seed, history, its
// ancestry), never on the thread, the batch layout, the backend or the order in which the
// particles of a history are transported (depth-first on the CPU, one step per kernel launch
// in the GPU's wavefront: csrc/cuda/wavefront_body.hpp), so every order gives the same bits.
// Stream ids are 32-bit random words: two particles of one history share a stream with
// probability ~ n^2 / 2^33 for n particles (2e-8 for a history of 20 particles); such a pair
// would draw the same numbers from different states, which leaves the results unbiased.
#pragma once
#include "macros.hpp"

namespace rpt {

// The Philox4x32 bijection with 10 rounds: out = philox(ctr, key).
RPT_INLINE void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * uint64_t(c0);
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * uint64_t(c2);
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Uniform in the open interval (0, 1) from 32 random bits, in either precision (safe for log()
// of u and of 1 - u). Double: all 32 bits, (x + 1/2) 2^-32. Float: the top 24 bits k,
// (k + 1/4) 2^-24 with the sum rounded to float (exact below k = 2^22): from 2^-26 (k = 0) to
// 1 - 2^-24 (k = 2^24 - 1, never rounded up to 1); one conversion, one add and an exact
// scaling by a power of two, so the same bits on every backend.
RPT_HOT_INLINE double uniform_open(uint32_t x, double) { return (double(x) + 0.5) * 2.3283064365386963e-10; }
RPT_HOT_INLINE float uniform_open(uint32_t x, float) {
  return (float(x >> 8) + 0.25f) * 5.9604644775390625e-8f;  // 2^-24
}

// `Real` is the type uniform() returns (the precision of the history that draws it); the
// stream of 32-bit words is the same for both.
template <class Real>
struct PhiloxT {
  using real_type = Real;
  static constexpr uint32_t kStreamTag = 0x52505444u;  // "RPTD": the decay's stream id

  uint32_t key0, key1;   // from the user seed
  uint32_t ctr0, ctr1;   // history index (64 bit)
  uint32_t block;        // block number within the stream
  uint32_t stream;       // stream id (4th counter word)
  uint32_t out[4];
  int used;              // outputs of `out` already consumed

  PhiloxT() = default;
  RPT_INLINE PhiloxT(uint64_t seed, uint64_t history, uint32_t stream_id = kStreamTag)
      : key0(uint32_t(seed)), key1(uint32_t(seed >> 32)), ctr0(uint32_t(history)),
        ctr1(uint32_t(history >> 32)), block(0), stream(stream_id), out{0, 0, 0, 0}, used(4) {}

  RPT_INLINE uint64_t history() const { return uint64_t(ctr0) | (uint64_t(ctr1) << 32); }

  // A stream saved as (seed, history, stream, block, used) continues where it stopped: the
  // block last drawn is computed again when some of its words are left (used < 4).
  RPT_INLINE static PhiloxT resume(uint64_t seed, uint64_t history, uint32_t stream_id,
                                   uint32_t block_no, int used_words) {
    PhiloxT r(seed, history, stream_id);
    if (used_words < 4 && block_no > 0) {
      r.block = block_no - 1;
      r.refill();
      r.used = used_words;
    } else {
      r.block = block_no;
    }
    return r;
  }

  // The stream of a new particle: same key and history, a stream id drawn from this stream
  // (never the decay's).
  RPT_INLINE PhiloxT child() {
    uint32_t id = next_u32();
    if (id == kStreamTag) id ^= 1u;
    PhiloxT c(*this);  // key and history
    c.block = 0;
    c.stream = id;
    c.used = 4;  // nothing drawn yet
    return c;
  }

  RPT_INLINE void refill() {
    uint32_t ctr[4] = {ctr0, ctr1, block, stream};
    uint32_t key[2] = {key0, key1};
    philox4x32_10(ctr, key, out);
    ++block;
    used = 0;
  }

  // On a GPU the word is selected, not indexed, so out[] stays in registers instead of going
  // to local memory; on the CPU an indexed load (the same word either way).
  RPT_HOT_INLINE uint32_t next_u32() {
    if (used == 4) refill();
#if defined(RPT_DEVICE_CODE)
    const int i = used++;
    return i == 0 ? out[0] : (i == 1 ? out[1] : (i == 2 ? out[2] : out[3]));
#else
    return out[used++];
#endif
  }

  // Uniform in the open interval (0, 1): safe for log().
  RPT_HOT_INLINE Real uniform() { return uniform_open(next_u32(), Real()); }

  // Uniform integer in [0, n) for n < 2^32 (multiply-high; bias < n / 2^32).
  RPT_INLINE uint32_t below(uint32_t n) { return uint32_t((uint64_t(next_u32()) * n) >> 32); }
};

using Philox4x32 = PhiloxT<double>;

}  // namespace rpt
