#include "torchae/nn/mlp.h"

#include "torchae/core/config.h"
#include "torchae/nn/fused.h"

#include <torch/autograd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace torchae {

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

namespace {

// d activate(z) / dz from y = activate(z); undefined for the identity (a slope of 1).
torch::Tensor slope(const torch::Tensor& y, Activation activation) {
  switch (activation) {
    case Activation::relu: return (y > 0).to(y.scalar_type());
    case Activation::sigmoid: return y * (1 - y);
    case Activation::tanh: return 1 - y.pow(2);
    case Activation::identity: return {};
  }
  TORCH_CHECK(false, "unreachable activation");
}

// d^2 activate(z) / dz^2 from y and the slope s; undefined where it is zero (relu, identity).
torch::Tensor curvature(const torch::Tensor& y, const torch::Tensor& s, Activation activation) {
  switch (activation) {
    case Activation::sigmoid: return s * (1 - 2 * y);
    case Activation::tanh: return -2 * y * s;
    case Activation::relu:
    case Activation::identity: return {};
  }
  TORCH_CHECK(false, "unreachable activation");
}

// One affine layer and its activation, y = act(x W^T + b), with tangents [probes, batch, in]
// pushed forward beside it, act'(z) (t W^T), as one autograd node. Its backward gives W one
// gradient, g_z^T x accumulated with g_u^T t in place, where the composite's two uses of W
// cost a pass to add theirs (0.16 ms a step on the 784-128 layer) and a dozen more nodes.
// First-order gradients only.
class AffineWithTangents : public torch::autograd::Function<AffineWithTangents> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                                                const torch::Tensor& tangents, const torch::Tensor& weight,
                                                const torch::Tensor& bias, int64_t activation) {
    const auto act = static_cast<Activation>(activation);
    const torch::Tensor t = tangents.reshape({-1, tangents.size(-1)});
    const torch::Tensor y = activate(torch::addmm(bias, x, weight.t()), act);
    const torch::Tensor u = t.mm(weight.t());  // the bias has no tangent
    const torch::Tensor s = slope(y, act);
    torch::Tensor out = u.view({tangents.size(0), x.size(0), -1});
    if (s.defined()) out = out * s;
    ctx->save_for_backward({x, t, weight, y, u});
    ctx->saved_data["activation"] = activation;
    ctx->saved_data["probes"] = tangents.size(0);
    return {y, out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &t = saved[1], &weight = saved[2], &y = saved[3], &u = saved[4];
    const auto act = static_cast<Activation>(ctx->saved_data["activation"].toInt());
    const int64_t probes = ctx->saved_data["probes"].toInt();
    const torch::Tensor s = slope(y, act);
    const torch::Tensor& gy = grads[0];
    const torch::Tensor& gt = grads[1];
    // d/dz: through y, g_y act'(z); through the tangents' slope, sum_p g_t u act''(z).
    torch::Tensor gz = gy.defined() ? (s.defined() ? gy * s : gy) : torch::zeros_like(y);
    torch::Tensor gu;
    if (gt.defined()) {
      gu = s.defined() ? gt * s : gt;
      if (const torch::Tensor c = curvature(y, s, act); c.defined()) {
        gz = gz + (gt * u.view({probes, y.size(0), -1})).sum(0) * c;
      }
      gu = gu.reshape({-1, y.size(1)});
    }
    torch::Tensor gw = gz.t().mm(x);
    if (gu.defined()) gw.addmm_(gu.t(), t);
    const torch::Tensor gb = ctx->needs_input_grad(3) ? gz.sum(0) : torch::Tensor();
    const torch::Tensor gx = ctx->needs_input_grad(0) ? gz.mm(weight) : torch::Tensor();
    const torch::Tensor gtin = ctx->needs_input_grad(1) && gu.defined()
                                   ? gu.mm(weight).view({probes, x.size(0), -1})
                                   : torch::Tensor();
    return {gx, gtin, gw, gb, torch::Tensor()};
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> MLPImpl::forward_with_tangents(torch::Tensor x, torch::Tensor directions) {
  TORCH_CHECK(x.dim() == 2 && directions.dim() == 3 && directions.size(1) == x.size(0) &&
                  directions.size(2) == x.size(1),
              "MLP::forward_with_tangents: expected x [batch, in] and directions [probes, batch, in], got ", x.sizes(),
              " and ", directions.sizes());
  torch::Tensor t = std::move(directions);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const bool last = i + 1 == layers_.size();
    const Activation activation = last ? options.output_activation() : options.activation();
    const torch::Tensor& weight = layers_[i]->weight;
    // Undefined tensors cannot enter a custom autograd function: no bias is a zero one.
    const torch::Tensor bias =
        layers_[i]->bias.defined() ? layers_[i]->bias : torch::zeros({weight.size(0)}, weight.options());
    auto outputs = AffineWithTangents::apply(x, t, weight, bias, static_cast<int64_t>(activation));
    x = outputs[0];
    t = outputs[1];
    if (!last && options.dropout() > 0 && is_training()) {
      const torch::Tensor keep = dropout_multiplier_like(x, options.dropout());
      x = x * keep;
      t = t * keep;
    }
  }
  return {x, t};
}

torch::Tensor MLPImpl::forward_preactivation(torch::Tensor x) {
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    x = linear(x, layers_[i]->weight, layers_[i]->bias);  // torchae's: paired where asked
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
    x = linear(x, layer->weight.t(), biases[k]);
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
