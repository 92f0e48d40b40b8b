#pragma once

#include "torchae/core/runtime.h"

#include <ATen/record_function.h>
#include <torch/optim/adam.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <mutex>
#include <optional>

namespace torchae {

/// LibTorch's Adam (Kingma & Ba 2015, the same options, state and checkpoint format), with the
/// update of a contiguous float CPU parameter done in one pass over its four buffers (parameter,
/// gradient, both moments) instead of LibTorch's seven element-wise operations, each of which
/// reads and writes whole tensors: on the benchmark's 0.93 M parameters that is 26 MB of memory
/// traffic a step instead of about 90. On x86 that pass flushes subnormal floats to zero: the
/// moments of a parameter whose gradient stays zero decay into them (and stay, at the smallest
/// one), which is slow to compute with, and as zeros they move no parameter differently (checked
/// bit for bit over 4,000 steps of the reference model). Other parameters (CUDA, double, sparse,
/// amsgrad) take LibTorch's own operations. A drop-in for `torch::optim::Adam`, checkpoints
/// included:
///
///     torchae::FusedAdam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;

  torch::Tensor step(LossClosure closure = nullptr) override;
  /// What `step` does to one parameter `p` of a group with `options`, from `grad`: for a caller
  /// that updates each parameter as soon as its gradient is final rather than all at the end
  /// (the trainer's Adam behind backward). Calls for distinct parameters may run on two threads
  /// at once.
  void update(torch::Tensor& p, torch::Tensor grad, const torch::optim::AdamOptions& options);

  /// The element-wise pass of one parameter's update, for a caller that makes it in pieces (the
  /// trainer splits the whole step's update between two threads): `run(begin, end)` updates
  /// elements [begin, end) of the parameter. Pieces that cover them all and begin at multiples of
  /// 64 elements make `update`'s result bit for bit (each element is computed by the instructions
  /// one pass would use). Its pointers are the parameter's, its gradient's and its moments': the
  /// gradient tensor given to `prepare` must outlive it.
  struct Pass {
    float* param;
    const float* grad;
    float* exp_avg;
    float* exp_avg_sq;
    int64_t size;
    double beta1, beta2, eps, weight_decay, step_size, sqrt_bias_correction2;
    void run(int64_t begin, int64_t end) const;
  };
  /// `update` up to its element-wise pass: counts the parameter's step and returns the pass, or,
  /// for a parameter the pass cannot take (CUDA, double, amsgrad, ...), makes the whole update
  /// with LibTorch's operations and returns nothing.
  std::optional<Pass> prepare(torch::Tensor& p, torch::Tensor grad, const torch::optim::AdamOptions& options);
  /// `step` on two threads: each parameter's pass split at a multiple of 64 elements near its
  /// middle, the first halves made here and the second on `helper`, at once: the parameters of
  /// `step`, bit for bit. A step of under 128 K elements in all is made here alone (waking the
  /// helper would cost more than it saves). The halves are a paired layer's (`PairedProducts`):
  /// each thread updates the rows of a weight it made the gradient of.
  void step_in_halves(HelperThread& helper);

 private:
  /// Guards the state's table, which `update` grows on a parameter's first step, against two
  /// threads updating two parameters at once (each parameter's own state is its caller's).
  std::mutex state_mutex_;
};

/// The mean binary cross-entropy of `target` under `logits`, as
/// `torch::nn::functional::binary_cross_entropy_with_logits` gives it, from the `probabilities`
/// (sigmoid(logits)) the model has computed anyway: one pass forward, one backward, where
/// LibTorch's composite takes about ten over the batch. Gradients reach `logits` only (the
/// probabilities carry no gradient of their own through it; a target that requires a gradient, a
/// CUDA or non-float tensor, or any shape mismatch takes LibTorch's function instead), and only
/// to first order.
torch::Tensor binary_cross_entropy_from_logits(const torch::Tensor& logits, const torch::Tensor& probabilities,
                                               const torch::Tensor& target);

/// Uniform floats in [0, 1) shaped like `like`, from one 64-bit draw of LibTorch's default CPU
/// generator spread over the elements by a counter-based generator (SplitMix64 of the element's
/// index): vectorised and parallel, about 20 times as fast here as `torch::rand_like`, whose
/// Mersenne twister runs one number at a time. Seeding (`torch::manual_seed`) and the
/// generator's saved state make it as reproducible as `rand_like`. Float CPU tensors; anything
/// else gets `torch::rand_like`.
torch::Tensor uniform_like(const torch::Tensor& like);

/// A Bernoulli sample of the probabilities `p` (1 where a uniform draw falls below p, else 0),
/// in p's type, by `uniform_like`.
torch::Tensor sample_bernoulli(const torch::Tensor& p);

/// Rademacher signs, -1 or +1 with equal probability, shaped like `like`, in its type: float
/// CPU tensors from one 64-bit draw of LibTorch's default CPU generator, each bit of the
/// counter-based generator's output one sign (64 signs a hash); others by `uniform_like`.
torch::Tensor rademacher_like(const torch::Tensor& like);

/// Inverted dropout's multiplier for `like`: 1 / (1 - p) where an element is kept (probability
/// 1 - p), 0 where dropped, by `uniform_like`: one mask to apply to several tensors alike.
torch::Tensor dropout_multiplier_like(const torch::Tensor& like, double p);

/// A [rows, d] boolean mask with exactly `m` true entries in each row, a uniformly random
/// m-subset of the row's d (a partial Fisher-Yates shuffle per row, its random numbers from
/// one 64-bit draw of LibTorch's default CPU generator), on the CPU.
torch::Tensor choose_exactly(int64_t rows, int64_t d, int64_t m);

/// One Adam step on `size` floats, in place, on LibTorch's intra-op threads (`parallel_for`;
/// exposed for the benchmark and tests; `FusedAdam` makes its passes on the calling thread):
/// LibTorch's Adam, element by element, to rounding (one division an element where LibTorch has
/// two, the update moving by an ulp or so; subnormal moments stored as zero on x86). `step_size`
/// is lr / (1 - beta1^t), `sqrt_bias_correction2` is sqrt(1 - beta2^t).
void fused_adam_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t size,
                       double beta1, double beta2, double eps, double weight_decay, double step_size,
                       double sqrt_bias_correction2);

/// While one lives on a thread, `linear` on that thread makes each of its matrix products in two
/// halves at once, one on `helper`, each on OpenBLAS's one-thread kernel; so does backward,
/// run on the thread, for the layers `linear` made. On two cores that is faster than OpenBLAS
/// running each product on both threads (see the README's Speed). Nests; the innermost helper is
/// the one used.
class PairedProducts {
 public:
  explicit PairedProducts(HelperThread& helper);
  PairedProducts(const PairedProducts&) = delete;
  PairedProducts& operator=(const PairedProducts&) = delete;
  ~PairedProducts();
  /// The helper of the innermost live `PairedProducts` of this thread; null when none.
  static HelperThread* current();

 private:
  HelperThread* previous_;
};

/// OpenBLAS on one thread while it lives (when it had more), as it was after.
class BlasOnOneThread {
 public:
  BlasOnOneThread() : before_(blas_threads()) {
    if (before_ > 1) set_blas_threads(1);
  }
  BlasOnOneThread(const BlasOnOneThread&) = delete;
  BlasOnOneThread& operator=(const BlasOnOneThread&) = delete;
  ~BlasOnOneThread() {
    if (before_ > 1) set_blas_threads(before_);
  }

 private:
  int64_t before_;
};

/// `product(begin, end)` for both halves of [0, rows) at once, OpenBLAS on one thread: the first
/// half here, the second on `helper`, under no-grad there (a product's operands may require a
/// gradient, and grad mode is a thread's own). For LibTorch's profiler, which sees this thread
/// only, the whole is the scope "torchae::paired" (`bench --profile` counts it as products).
template <typename Product>
void in_halves(HelperThread& helper, int64_t rows, const Product& product) {
  RECORD_USER_SCOPE("torchae::paired");
  const int64_t half = rows / 2;
  BlasOnOneThread one_thread;
  helper.both(
      [&] {
        torch::NoGradGuard no_grad;
        product(half, rows);
      },
      [&] { product(int64_t{0}, half); });
}

/// A layer's paired products into given tensors, as `linear` makes them (and `GemmFloor` times
/// them): y = x W^T (+ bias, when defined) by halves of W's rows; backward, each half's rows of
/// the weight's gradient and, when `grad_input_parts` is given, its part of the input's gradient
/// into grad_input_parts[0] (this thread's) and [1] (the helper's), left for the caller to add.
void paired_forward(HelperThread& helper, torch::Tensor& y, const torch::Tensor& x, const torch::Tensor& weight,
                    const torch::Tensor& bias);
void paired_backward(HelperThread& helper, torch::Tensor& grad_weight, torch::Tensor* grad_input_parts,
                     const torch::Tensor& grad_output, const torch::Tensor& x, const torch::Tensor& weight);

/// x W^T + b, as `torch::nn::functional::linear`, in halves on two threads while a
/// `PairedProducts` lives on this thread and x is a [batch, in] float CPU matrix (with a bias).
/// Each thread keeps to one half of the weight's rows: forward, their columns of the output;
/// backward, their rows of the weight's gradient and their part of the input's (a sum over the
/// rows, the two parts added here). So what one core wrote is not read by the other, which on
/// this machine's two cores made the difference between 8,700 and 14,200 samples/s for the
/// reference model at batch 32 (with Adam's update split the same way by the trainer). Results
/// match the one-product layer to rounding, not bit for bit. A backward that builds a graph
/// (`create_graph`, a double backward) takes LibTorch's differentiable operations instead, on
/// this thread.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace torchae
