#include "torchae/nn/mlp.h"

#include "torchae/core/config.h"

#include <torch/nn/functional/linear.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace torchae {

namespace F = torch::nn::functional;

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names{"relu", "sigmoid", "tanh", "identity"};
  return names;
}

Activation parse_activation(const std::string& name) {
  return static_cast<Activation>(index_of_name(activation_names(), name, "activation"));
}

std::string to_string(Activation activation) {
  return activation_names().at(static_cast<std::size_t>(activation));
}

torch::Tensor activate(const torch::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::relu: return torch::relu(x);
    case Activation::sigmoid: return torch::sigmoid(x);
    case Activation::tanh: return torch::tanh(x);
    case Activation::identity: return x;
  }
  TORCH_CHECK(false, "unreachable activation");
}

std::string script_activation(Activation activation, const std::string& x) {
  switch (activation) {
    case Activation::relu: return "torch.relu(" + x + ")";
    case Activation::sigmoid: return "torch.sigmoid(" + x + ")";
    case Activation::tanh: return "torch.tanh(" + x + ")";
    case Activation::identity: return x;
  }
  TORCH_CHECK(false, "unreachable activation");
}

MLPOptions::MLPOptions(std::vector<int64_t> widths) : widths_(std::move(widths)) {}

MLPImpl::MLPImpl(MLPOptions options_) : options(std::move(options_)) { reset(); }

void MLPImpl::reset() {
  const auto& w = options.widths();
  TORCH_CHECK(w.size() >= 2, "MLP needs at least an input and an output width");
  TORCH_CHECK(options.dropout() >= 0 && options.dropout() < 1, "MLP dropout must be in [0, 1)");
  layers_.clear();
  for (std::size_t i = 0; i + 1 < w.size(); ++i) {
    TORCH_CHECK(w[i] > 0 && w[i + 1] > 0, "MLP widths must be positive");
    layers_.push_back(register_module(
        "layer" + std::to_string(i),
        torch::nn::Linear(torch::nn::LinearOptions(w[i], w[i + 1]).bias(options.bias()))));
  }
}

void MLPImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::MLP(widths=" << fmt::format("{}", fmt::join(options.widths(), "-"))
         << ", activation=" << to_string(options.activation())
         << ", output_activation=" << to_string(options.output_activation()) << ")";
}

torch::Tensor MLPImpl::hidden(const torch::Tensor& x, Activation activation) const {
  const torch::Tensor h = activate(x, activation);
  return options.dropout() > 0 ? torch::dropout(h, options.dropout(), is_training()) : h;
}

torch::Tensor MLPImpl::forward_preactivation(torch::Tensor x) {
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    x = layers_[i]->forward(x);
    if (i + 1 < layers_.size()) x = hidden(x, options.activation());
  }
  return x;
}

torch::Tensor MLPImpl::forward(torch::Tensor x) {
  return activate(forward_preactivation(std::move(x)), options.output_activation());
}

torch::Tensor MLPImpl::forward_transposed(torch::Tensor x, const std::vector<torch::Tensor>& biases,
                                          Activation activation) const {
  TORCH_CHECK(biases.size() == layers_.size(), "forward_transposed: one bias per layer");
  const std::size_t n = layers_.size();
  for (std::size_t k = 0; k < n; ++k) {
    const auto& layer = layers_[n - 1 - k];
    x = F::linear(x, layer->weight.t(), biases[k]);
    if (k + 1 < n) x = hidden(x, activation);
  }
  return x;
}

std::vector<std::string> MLPImpl::script(ScriptModel& script, const std::string& name, const std::string& var) const {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto& layer = layers_[i];
    const std::string prefix = name + ".layer" + std::to_string(i);
    std::string affine = "torch.linear(" + var + ", " + script.tensor(prefix + ".weight", layer->weight);
    if (layer->bias.defined()) affine += ", " + script.tensor(prefix + ".bias", layer->bias);
    affine += ")";
    const Activation activation = i + 1 < layers_.size() ? options.activation() : options.output_activation();
    lines.push_back(var + " = " + script_activation(activation, affine));
  }
  return lines;
}

std::vector<std::string> MLPImpl::script_transposed(ScriptModel& script, const std::string& name,
                                                    const std::string& var, const std::vector<std::string>& biases,
                                                    Activation activation) const {
  TORCH_CHECK(biases.size() == layers_.size(), "script_transposed: one bias per layer");
  std::vector<std::string> lines;
  const std::size_t n = layers_.size();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = n - 1 - k;
    const std::string weight = script.tensor(name + ".layer" + std::to_string(i) + ".weight", layers_[i]->weight);
    std::string affine = "torch.linear(" + var + ", " + weight + ".t()";
    if (!biases[k].empty()) affine += ", " + biases[k];
    affine += ")";
    lines.push_back(var + " = " + (k + 1 < n ? script_activation(activation, affine) : affine));
  }
  return lines;
}

}  // namespace torchae
