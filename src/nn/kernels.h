#pragma once

// Element-wise loops of the training step, each one pass over its buffers. They live in a
// translation unit of their own, without LibTorch's headers, so that it can be compiled with
// -fno-math-errno (without it GCC cannot vectorise a loop that calls sqrt) and for several
// instruction sets at once.

#include <cstdint>

namespace torchae::kernels {

/// One Adam step on elements [begin, end): LibTorch's Adam::step, element by element.
void adam(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t begin, int64_t end,
          float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float eps, float weight_decay,
          float step_size, float sqrt_bias_correction2);

/// The sum over elements [begin, end) of the binary cross-entropy of `target` under the logits
/// `logits`, max(x, 0) - x t + log(1 + exp(-|x|)), given `probabilities` = sigmoid(logits).
double bce_from_logits_sum(const float* logits, const float* probabilities, const float* target, int64_t begin,
                           int64_t end);

/// Its gradient with respect to the logits, times `scale`: (p - t) scale, into `grad`.
void bce_from_logits_grad(const float* probabilities, const float* target, float* grad, int64_t begin, int64_t end,
                          float scale);

}  // namespace torchae::kernels
