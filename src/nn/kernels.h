#pragma once

// Element-wise loops of the training step, each one pass over its buffers. They live in a
// translation unit of their own, without LibTorch's headers, so that it can be compiled with
// -fno-math-errno (without it GCC cannot vectorise a loop that calls sqrt) and for several
// instruction sets at once.

#include <cstdint>

namespace torchae::kernels {

/// One Adam step on elements [begin, end): LibTorch's Adam::step, element by element, to
/// rounding (one division where LibTorch has two), with subnormal floats flushed to zero on
/// x86 (the moments of a parameter without gradient decay into them).
void adam(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t begin, int64_t end,
          float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps, float weight_decay,
          float step_size, float inverse_sqrt_bias_correction2);

/// The sum over elements [begin, end) of the binary cross-entropy of `target` under the logits
/// `logits`, max(x, 0) - x t + log(1 + exp(-|x|)), given `probabilities` = sigmoid(logits).
double bce_from_logits_sum(const float* logits, const float* probabilities, const float* target, int64_t begin,
                           int64_t end);

/// Its gradient with respect to the logits, times `scale`: (p - t) scale, into `grad`.
void bce_from_logits_grad(const float* probabilities, const float* target, float* grad, int64_t begin, int64_t end,
                          float scale);

/// Uniform floats in [0, 1) with 24 random bits each, element i from SplitMix64 (Steele, Lea &
/// Flood 2014) of seed + (i + 1) * golden gamma: a counter-based generator, so any range of
/// elements can be filled on any thread and the result is the same.
void uniform(float* out, int64_t begin, int64_t end, uint64_t seed);

/// Rademacher signs, -1.0f or 1.0f: element i is bit i % 64 of SplitMix64 of seed + (i / 64 +
/// 1) * golden gamma (-1 where it is set), one hash for 64 signs; counter-based, as `uniform`.
void rademacher(float* out, int64_t begin, int64_t end, uint64_t seed);

/// The MMD's kernel summed over its scales, on squared distances d, elements [begin, end):
/// sum_s C_s / (C_s + d) (inverse multiquadratic) or sum_s exp(-d / C_s) (Gaussian), into
/// `out`; with `grad`, instead its derivative with respect to d times grad, element by element
/// (the backward pass). `cs`: the n values C_s.
void summed_kernel(const float* d, const float* grad, float* out, int64_t begin, int64_t end, const double* cs,
                   int n, bool inverse_multiquadratic);

/// For rows [begin, end) of a [rows, d] mask (zeroed by the caller), exactly m entries of each
/// row set, a uniformly random m-subset: the first m steps of a Fisher-Yates shuffle of 0..d-1
/// (Knuth's Algorithm P), drawing from SplitMix64 keyed by the row. `scratch`: d ints.
void choose_exactly(bool* mask, int32_t* scratch, int64_t d, int64_t m, int64_t begin, int64_t end, uint64_t seed);

/// The Hamming distances of one packed code `query` (`words` 64-bit words) to codes [begin, end)
/// of `codes` ([N, words], row by row), into out[begin, end): the popcount of their XOR, by the
/// POPCNT instruction where the CPU has it.
void hamming_distances(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t begin, int64_t end,
                       int16_t* out);

/// For one query against all n codes: counts[d] += the codes at distance d, relevant[d] += those
/// of them whose label is `label` (`counts` and `relevant` have a bucket for every distance the
/// codes can be apart).
void hamming_histogram(const uint64_t* query, const uint64_t* codes, int64_t words, int64_t n, const int64_t* labels,
                       int64_t label, int64_t* counts, int64_t* relevant);

}  // namespace torchae::kernels
