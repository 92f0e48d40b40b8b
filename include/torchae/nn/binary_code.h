#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace torchae {

/// How a code layer becomes binary, for semantic hashing (option `model.binary_code`).
enum class BinaryCode {
  /// A real-valued code.
  none,
  /// Logistic code units with Gaussian noise added to their input in training, so that only
  /// saturated units carry information and the code becomes nearly binary (Salakhutdinov &
  /// Hinton, "Semantic hashing", 2009). The noise is deterministic per example: a function of
  /// the example itself, the same in every epoch, as theirs was fixed per training case.
  noise,
  /// sign(a) in the forward pass, the identity's gradient in the backward pass (the
  /// straight-through estimator: Hinton's lectures 2012; Bengio et al. 2013).
  sign,
};

BinaryCode parse_binary_code(const std::string& name);
std::string to_string(BinaryCode code);
const std::vector<std::string>& binary_code_names();

/// Options of a binary code layer.
struct BinaryCodeOptions {
  /// What makes the code binary; `none` leaves it real-valued.
  TORCH_ARG(BinaryCode, kind) = BinaryCode::none;
  /// `noise`: standard deviation of the noise added to the code units' input in training.
  /// Salakhutdinov & Hinton's was N(0, 16), a deviation of 4.
  TORCH_ARG(double, noise) = 4.0;
  /// `noise`: seed of the fixed random map from an example to its noise.
  TORCH_ARG(uint64_t, seed) = 20090701;
};

/// A binary code layer's activation, applied to the code units' pre-activation `a` [N, units].
/// In eval mode the code is binary: 0/1 (`noise`) or -1/+1 (`sign`), the bit being a > 0. In
/// training, `noise` gives sigmoid(a + noise(key)) with the noise a fixed function of each row of
/// `key` [N, ...] (the example the encoder saw), and `sign` gives the straight-through sign.
///
///   BinaryCodeLayer code(BinaryCodeOptions().kind(BinaryCode::noise));
///   torch::Tensor h = code.forward(preactivation, x, is_training());
///   torch::Tensor bits = binary_code_bits(preactivation);  // uint8 0/1
class BinaryCodeLayer {
 public:
  BinaryCodeLayer() = default;
  explicit BinaryCodeLayer(BinaryCodeOptions options) : options(options) {}

  bool binary() const { return options.kind() != BinaryCode::none; }
  torch::Tensor forward(const torch::Tensor& a, const torch::Tensor& key, bool training);
  /// The real-valued code the bits threshold: sigmoid(a) (`noise`) or a itself (`sign`), what a
  /// float nearest-neighbour search compares.
  torch::Tensor relaxed(const torch::Tensor& a) const;
  /// The noise `forward` adds in training for the examples `key` [N, ...] and `units` code units:
  /// Gaussian, deviation `noise`, a deterministic function of each example.
  torch::Tensor example_noise(const torch::Tensor& key, int64_t units);
  /// For export: the TorchScript statement that turns the pre-activation `var` into the eval-mode
  /// binary code, in place.
  std::string script(const std::string& var) const;

  BinaryCodeOptions options;

 private:
  /// [key features, units] in double precision, drawn once from `options.seed`.
  torch::Tensor projection_;
};

/// The bits of a code whose pre-activation is `a`: uint8, 1 where a > 0.
torch::Tensor binary_code_bits(const torch::Tensor& a);

/// The TorchScript expression of `binary_code_bits` applied to `var`.
std::string script_binary_code_bits(const std::string& var);

}  // namespace torchae
