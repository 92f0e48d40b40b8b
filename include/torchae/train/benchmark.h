#pragma once

#include "torchae/core/runtime.h"
#include "torchae/nn/fused.h"

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torchae {

/// The matrix products of one training step of a stack of Linear layers, on preallocated float
/// CPU tensors in the layouts autograd uses (`at::mm_out`), timed alone at the current thread
/// setting: the floor that no implementation of the step can beat with these kernels. Per layer,
/// its forward product, its weight gradient and, except for the first layer (its input is data,
/// which needs no gradient), its input gradient.
///
///     GemmFloor floor({{784, 512}, {512, 128}, {128, 512}, {512, 784}}, 128);
///     const double seconds = floor.time(100) / 100;  // a step's products: about 4 ms at 150 GFLOP/s
class GemmFloor {
 public:
  GemmFloor(const std::vector<std::pair<int64_t, int64_t>>& layers, int64_t batch);
  int64_t products() const { return products_; }
  double flops_per_step() const { return flops_; }
  /// Seconds that `steps` steps' products take, one run after the other, with OpenBLAS on the
  /// thread count it has, on one thread, and, in a process with two cores or more, paired as the
  /// trainer pairs them (`PairedProducts`: each layer's products in two halves at once, by the
  /// weight's rows, on OpenBLAS's one-thread kernel): the fastest (a floor is the
  /// products' best: small products can run faster on one thread than split over two); OpenBLAS
  /// is left as it was.
  double time(int64_t steps);
  /// The same with, after each step's products, a FusedAdam step over the layers' weights and
  /// biases (their gradients the products' and fixed draws), in halves on two threads as the
  /// trainer makes it (`FusedAdam::step_in_halves`; with two cores or more): the floor of a step
  /// trained with Adam, since no step can skip its optimizer's update either.
  double time_with_adam(int64_t steps);
  /// The seconds `time` has measured so far at each OpenBLAS thread count (one entry, 0, when the
  /// process has no OpenBLAS; one when it runs on one thread already).
  const std::map<int64_t, double>& seconds_by_blas_threads() const { return seconds_by_blas_threads_; }
  /// The seconds `time` has measured so far with the products paired; 0 when not timed.
  double paired_seconds() const { return paired_seconds_; }
  /// The parameters that update covers a step: each layer's weights and biases.
  int64_t parameters() const;

 private:
  void step();
  void paired_step();
  // The fastest of `time`'s settings for `run(paired)`, each one's seconds added to the totals
  // when `count` is set.
  double fastest(const std::function<void(bool)>& run, bool count);
  struct Layer {
    torch::Tensor input, weight, output, grad_output, grad_input, grad_weight, bias, grad_input_part;
  };
  std::vector<Layer> layers_;
  std::unique_ptr<FusedAdam> adam_;  // over the weights and biases
  int64_t products_ = 0;
  double flops_ = 0;
  std::map<int64_t, double> seconds_by_blas_threads_;
  double paired_seconds_ = 0;
  std::unique_ptr<HelperThread> helper_;  // two cores or more
};

/// The Linear layers of `module` in registration order, as (in_features, out_features); empty
/// when it has none. Throws torchae::Error, naming the parameter, when some parameter of the
/// model does not belong to a Linear layer (a convolution, a tied decoder's bias): the floor of
/// such a step is not the products of its Linear layers.
std::vector<std::pair<int64_t, int64_t>> linear_layers_of(const torch::nn::Module& module);

/// Where the time of a step goes, from LibTorch's profiler (its CPU op events, with the
/// `torchae::` scopes Trainer::step records): milliseconds per step in each part. Each op's
/// self time (its duration less its children's) goes to one part: "matrix products" (mm, addmm,
/// bmm, convolutions), "allocation" (empty, zeros, fill, ...), then by the scope it ran in:
/// "data", "optimizer", "loss" (the loss's forward and backward), "element-wise forward",
/// "element-wise backward"; "framework" is the self time of the scopes and of the autograd
/// engine's wrappers (dispatch, graph bookkeeping), "unprofiled" the wall time outside any op.
struct StepProfile {
  int64_t steps = 0;
  double wall_ms_per_step = 0;
  std::vector<std::pair<std::string, double>> ms_per_step;  // part -> ms, in a fixed order
  /// The heaviest ops by self time, at most 12: ("op < the event it ran in", ms per step).
  std::vector<std::pair<std::string, double>> top_ops;
  nlohmann::json to_json() const;
};

/// Runs `step` `steps` times under LibTorch's profiler and breaks its time down.
StepProfile profile_steps(const std::function<void()>& step, int64_t steps);

}  // namespace torchae
