#include "kernels.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace torchae::kernels {

// Each loop is compiled for AVX-512, AVX2 and plain x86-64, the one to run chosen when the
// program loads (GCC's function multi-versioning): the CPU differs from one machine to the
// next, and a build for the one it was built on would not run on the others.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TORCHAE_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// The Hamming loops: the POPCNT instruction where the CPU has it (x86-64's baseline lacks it, and
// without it __builtin_popcountll is a call into libgcc's bit-twiddling).
#define TORCHAE_POPCNT_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define TORCHAE_CPU_CLONES
#define TORCHAE_POPCNT_CLONES
#endif

namespace {

#if defined(__x86_64__) || defined(__i386__)
// Subnormal floats flushed to zero, as results (FTZ) and as operands (DAZ), on this thread while
// the object lives; the thread's previous mode is restored after.
class FlushSubnormals {
 public:
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

 private:
  static constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;
  unsigned saved_;
};
#else
struct FlushSubnormals {};  // elsewhere the moments keep their subnormal values, as LibTorch's
#endif

}  // namespace

TORCHAE_CPU_CLONES
void adam(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
          float* __restrict exp_avg_sq, int64_t begin, int64_t end, float beta1, float one_minus_beta1, float beta2,
          float one_minus_beta2, float eps, float weight_decay, float step_size, float inverse_sqrt_bias_correction2) {
  // A parameter whose gradient stays zero (a unit that no longer fires, an input pixel that is
  // always black) has its first moment shrink by beta1 a step, into subnormal floats within a
  // few hundred steps, where it stays (0.9 times the smallest one rounds back to it); arithmetic
  // on them is slow, and with 20% of the moments subnormal this loop took 2.4 times as long.
  // Flushed to zero they change the parameter by nothing a float can hold: m below 1.2e-38
  // over a denominator of at least eps moves it by at most step_size * 1.2e-38 / eps (about
  // lr * 1e-30 with the default eps), and a subnormal v under the square root is below 1.1e-19,
  // nothing beside eps.
  const FlushSubnormals flush;
  // One division an element, not LibTorch's two (sqrt(v) / c, then m / denominator): a vector
  // division costs as much as the rest of the loop, and the result moves by an ulp or so.
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i] + weight_decay * param[i];
    const float m = exp_avg[i] * beta1 + one_minus_beta1 * g;
    const float v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] -= step_size * m / (std::sqrt(v) * inverse_sqrt_bias_correction2 + eps);
  }
}

// log(1 + exp(-|x|)) = -log(max(p, 1 - p)) with p = sigmoid(x), and q = max(p, 1 - p) lies in
// [1/2, 1], where log q = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) with s = (q - 1)/(q + 1) in
// [-1/3, 0]: eight terms reach float precision ((1/9)^8 / 17 < 2^-24), with no range reduction
// and no call into libm, so the loop vectorises. Its error is that of q itself, at most half an
// ulp of 1 (3e-8) absolute, as in any computation from a float probability.
TORCHAE_CPU_CLONES
double bce_from_logits_sum(const float* __restrict logits, const float* __restrict probabilities,
                           const float* __restrict target, int64_t begin, int64_t end) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t i = begin; i < end; ++i) {
    const float x = logits[i];
    const float p = probabilities[i];
    // max and not a branch: GCC's AVX2 clone vectorises only a select it can see as one.
    const float q = std::max(p, 1.0f - p);
    const float s = (q - 1.0f) / (q + 1.0f);
    const float s2 = s * s;
    const float series =
        1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11 +
        s2 * (1.0f / 13 + s2 * (1.0f / 15 + s2 * (1.0f / 17))))))));
    const float log_q = 2.0f * s * series;
    total += static_cast<double>(std::max(x, 0.0f) - x * target[i] - log_q);
  }
  return total;
}

TORCHAE_CPU_CLONES
void bce_from_logits_grad(const float* __restrict probabilities, const float* __restrict target, float* __restrict grad,
                          int64_t begin, int64_t end, float scale) {
  for (int64_t i = begin; i < end; ++i) grad[i] = (probabilities[i] - target[i]) * scale;
}

namespace {

constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ULL;

inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

TORCHAE_CPU_CLONES
void uniform(float* __restrict out, int64_t begin, int64_t end, uint64_t seed) {
  for (int64_t i = begin; i < end; ++i) {
    const uint64_t bits = splitmix64(seed + static_cast<uint64_t>(i + 1) * kGoldenGamma);
    out[i] = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
  }
}

TORCHAE_CPU_CLONES
void rademacher(float* __restrict out, int64_t begin, int64_t end, uint64_t seed) {
  for (int64_t i = begin; i < end;) {
    const int64_t word = i >> 6;
    const uint64_t bits = splitmix64(seed + static_cast<uint64_t>(word + 1) * kGoldenGamma);
    const int64_t stop = std::min(end, (word + 1) << 6);
#pragma omp simd
    for (int64_t j = i; j < stop; ++j) out[j] = ((bits >> (j & 63)) & 1) != 0 ? -1.0f : 1.0f;
    i = stop;
  }
}

TORCHAE_CPU_CLONES
void summed_kernel(const float* __restrict d, const float* __restrict grad, float* __restrict out, int64_t begin,
                   int64_t end, const double* cs, int n, bool inverse_multiquadratic) {
  for (int64_t i = begin; i < end; ++i) out[i] = 0.0f;
  for (int k = 0; k < n; ++k) {
    const float c = static_cast<float>(cs[k]);
    const float inv_c = 1.0f / c;
    if (inverse_multiquadratic && grad == nullptr) {
      for (int64_t i = begin; i < end; ++i) out[i] += c / (c + d[i]);
    } else if (inverse_multiquadratic) {
      for (int64_t i = begin; i < end; ++i) {
        const float q = c / (c + d[i]);
        out[i] -= q * q * inv_c;
      }
    } else if (grad == nullptr) {
      for (int64_t i = begin; i < end; ++i) out[i] += std::exp(-d[i] * inv_c);
    } else {
      for (int64_t i = begin; i < end; ++i) out[i] -= std::exp(-d[i] * inv_c) * inv_c;
    }
  }
  if (grad != nullptr) {
    for (int64_t i = begin; i < end; ++i) out[i] *= grad[i];
  }
}

void choose_exactly(bool* mask, int32_t* scratch, int64_t d, int64_t m, int64_t begin, int64_t end, uint64_t seed) {
  for (int64_t row = begin; row < end; ++row) {
    for (int64_t j = 0; j < d; ++j) scratch[j] = static_cast<int32_t>(j);
    // Each row's numbers come from its own SplitMix64 sequence (the row's key, hashed).
    uint64_t state = splitmix64(seed ^ (static_cast<uint64_t>(row + 1) * 0xd1b54a32d192ed03ULL));
    bool* out = mask + row * d;
    for (int64_t i = 0; i < m; ++i) {
      state += kGoldenGamma;
      // Lemire's multiply-shift maps 32 random bits onto [0, d - i); its bias, below
      // d / 2^32, is far under anything a mask could show.
      const uint64_t r = splitmix64(state) >> 32;
      const int64_t j = i + static_cast<int64_t>((r * static_cast<uint64_t>(d - i)) >> 32);
      const int32_t chosen = scratch[j];
      scratch[j] = scratch[i];
      scratch[i] = chosen;
      out[chosen] = true;
    }
  }
}

namespace {

// The distance of `query` to code j, its `Words` words known when compiled (0: `words` of them).
template <int Words>
inline int64_t hamming(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t j) {
  const int64_t w = Words > 0 ? Words : words;
  const uint64_t* code = codes + j * w;
  int64_t d = 0;
  for (int64_t k = 0; k < w; ++k) d += __builtin_popcountll(query[k] ^ code[k]);
  return d;
}

template <int Words>
inline void hamming_distances_of(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t begin,
                                 int64_t end, int16_t* out) {
  for (int64_t j = begin; j < end; ++j) out[j] = static_cast<int16_t>(hamming<Words>(query, codes, words, j));
}

template <int Words>
inline void hamming_histogram_of(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t n,
                                 const int64_t* labels, int64_t label, int64_t* counts, int64_t* relevant) {
  for (int64_t j = 0; j < n; ++j) {
    const int64_t d = hamming<Words>(query, codes, words, j);
    ++counts[d];
    relevant[d] += labels[j] == label;
  }
}

}  // namespace

TORCHAE_POPCNT_CLONES
void hamming_distances(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t begin, int64_t end,
                       int16_t* out) {
  switch (words) {
    case 1: return hamming_distances_of<1>(query, codes, words, begin, end, out);
    case 2: return hamming_distances_of<2>(query, codes, words, begin, end, out);
    case 4: return hamming_distances_of<4>(query, codes, words, begin, end, out);
    default: return hamming_distances_of<0>(query, codes, words, begin, end, out);
  }
}

TORCHAE_POPCNT_CLONES
void hamming_histogram(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t n, const int64_t* labels,
                       int64_t label, int64_t* counts, int64_t* relevant) {
  switch (words) {
    case 1: return hamming_histogram_of<1>(query, codes, words, n, labels, label, counts, relevant);
    case 2: return hamming_histogram_of<2>(query, codes, words, n, labels, label, counts, relevant);
    case 4: return hamming_histogram_of<4>(query, codes, words, n, labels, label, counts, relevant);
    default: return hamming_histogram_of<0>(query, codes, words, n, labels, label, counts, relevant);
  }
}

}  // namespace torchae::kernels
