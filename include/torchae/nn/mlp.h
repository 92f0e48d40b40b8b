#pragma once

#include "torchae/export/script.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace torchae {

/// Element-wise non-linearities a backbone may use.
enum class Activation { relu, sigmoid, tanh, identity };

Activation parse_activation(const std::string& name);
std::string to_string(Activation activation);
/// The names `parse_activation` accepts, for option checking.
const std::vector<std::string>& activation_names();
torch::Tensor activate(const torch::Tensor& x, Activation activation);
/// `activate` as a TorchScript expression applied to the expression `x` (for export).
std::string script_activation(Activation activation, const std::string& x);

/// Options for `MLP`.
struct MLPOptions {
  /// `widths` = {in, hidden..., out}: one affine layer between each neighbouring pair.
  /* implicit */ MLPOptions(std::vector<int64_t> widths);

  /// Layer widths, input first.
  TORCH_ARG(std::vector<int64_t>, widths);
  /// Non-linearity after every layer but the last.
  TORCH_ARG(Activation, activation) = Activation::relu;
  /// Non-linearity after the last layer.
  TORCH_ARG(Activation, output_activation) = Activation::identity;
  /// Whether the affine layers have biases.
  TORCH_ARG(bool, bias) = true;
  /// Dropout probability after every hidden activation, in training mode (0: none).
  TORCH_ARG(double, dropout) = 0.0;
};

/// A multi-layer perceptron, the MLP backbone of every family.
///
///   MLP encoder(MLPOptions({784, 512, 32}).activation(Activation::relu));
///   torch::Tensor h = encoder(x.flatten(1));
class MLPImpl : public torch::nn::Cloneable<MLPImpl> {
 public:
  explicit MLPImpl(MLPOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// [batch, widths.front()] -> [batch, widths.back()], output activation applied.
  torch::Tensor forward(torch::Tensor x);
  /// Like `forward` but without the output activation (the last layer's pre-activation).
  torch::Tensor forward_preactivation(torch::Tensor x);
  /// `forward(x)` and, pushed forward beside it, its Jacobian-vector products J(x) v for each
  /// direction v in `directions` ([probes, batch, widths.front()]): [probes, batch,
  /// widths.back()]. Forward-mode differentiation written out for these layers (one product
  /// t W^T a layer for all probes at once, then the activation's slope, which the output gives),
  /// both results differentiable: LibTorch's own forward mode spends a second product a layer
  /// on the weight's zero tangent. In training mode each dropout mask is shared by x and the
  /// directions (this call draws its own masks, not `forward`'s).
  std::pair<torch::Tensor, torch::Tensor> forward_with_tangents(torch::Tensor x, torch::Tensor directions);
  /// Runs the transposed network: layers in reverse order with W^T and the given biases
  /// (one per layer, in the order applied; undefined for none). This is the tied decoder
  /// W_d = W_e^T of an encoder. `activation` (and dropout) follows every layer but the last.
  torch::Tensor forward_transposed(torch::Tensor x, const std::vector<torch::Tensor>& biases,
                                   Activation activation) const;

  /// For export: TorchScript statements applying `forward` (eval mode: no dropout) to the
  /// variable `var` in place, its tensors registered in `script` under `name`.
  std::vector<std::string> script(ScriptModel& script, const std::string& name, const std::string& var) const;
  /// The same for `forward_transposed`; `biases` are the expressions of its biases.
  std::vector<std::string> script_transposed(ScriptModel& script, const std::string& name, const std::string& var,
                                             const std::vector<std::string>& biases, Activation activation) const;

  const std::vector<torch::nn::Linear>& layers() const { return layers_; }

  MLPOptions options;

 private:
  /// A hidden layer's activation, then dropout.
  torch::Tensor hidden(const torch::Tensor& x, Activation activation) const;

  std::vector<torch::nn::Linear> layers_;
};

TORCH_MODULE(MLP);

}  // namespace torchae
