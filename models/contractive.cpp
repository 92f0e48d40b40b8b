#include "torchae/models/contractive.h"

#include "torchae/models/registry.h"
#include "torchae/nn/fused.h"

#include <torch/torch.h>

namespace torchae {

ContractiveOptions::ContractiveOptions(UndercompleteOptions backbone) : backbone_(std::move(backbone)) {}

ContractiveImpl::ContractiveImpl(ContractiveOptions options_) : options(std::move(options_)) { reset(); }

namespace {

bool one_sigmoid_layer(const UndercompleteOptions& o) {
  return !o.networks().conv() && o.networks().hidden().empty() && o.code_activation() == Activation::sigmoid;
}

}  // namespace

void ContractiveImpl::reset() {
  TORCH_CHECK(options.method() != JacobianMethod::analytic || one_sigmoid_layer(options.backbone()),
              "contractive: the analytic penalty is for one affine layer followed by a sigmoid; use exact or "
              "hutchinson for other encoders");
  TORCH_CHECK(options.probes() >= 1, "contractive: probes must be >= 1");
  reset_backbone(options.backbone());
}

void ContractiveImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::Contractive(lambda=" << options.lambda() << ", method=" << to_string(options.method())
         << ", probes=" << options.probes() << ")";
}

Output ContractiveImpl::forward(const torch::Tensor& input) {
  if (options.method() == JacobianMethod::analytic && torch::GradMode::is_enabled() &&
      backbone_->pushes_tangents()) {
    // The sigmoid layer and its closed-form penalty in one node (one product for both weight
    // gradients); the decoder as always.
    const auto& layer = backbone_->encoder()->layers()[0];
    auto [code, penalty] =
        sigmoid_layer_with_jacobian_penalty(backbone_->encoder_input(input), layer->weight, layer->bias);
    Output out = backbone_->reconstruct(code, input.sizes());
    out.jacobian_norm = std::move(penalty);
    return out;
  }
  const bool differentiate = options.method() != JacobianMethod::analytic && torch::GradMode::is_enabled();
  if (!differentiate) return backbone_->forward(input);
  if (options.method() == JacobianMethod::hutchinson && backbone_->pushes_tangents()) {
    // Forward mode: the probes ride beside the input through the encoder, one product a layer
    // and its gradients, and the input needs none; on one layer that is two products where J^T u
    // by double backward takes four.
    const torch::Tensor x = input.flatten(1);
    return backbone_->forward_with_tangents(input, rademacher_like(x.unsqueeze(0).expand({options.probes(), -1, -1})));
  }
  // The penalty differentiates the code w.r.t. the input, so the input becomes a leaf that
  // requires grad; the double-backward methods then run through autograd (create_graph).
  const torch::Tensor leaf = input.detach().requires_grad_(true);
  Output out = backbone_->forward(leaf);
  out.input = leaf;
  return out;
}

Losses ContractiveImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor recon = reconstruction_cost(output, target);
  torch::Tensor jacobian;
  if (output.jacobian_norm.defined()) {
    jacobian = output.jacobian_norm;
  } else if (options.method() == JacobianMethod::analytic) {
    jacobian = sigmoid_jacobian_penalty(output.code, backbone_->encoder()->layers()[0]->weight);
  } else if (output.code_tangents.defined()) {
    jacobian = hutchinson_penalty(output.code_tangents);
  } else if (output.input.defined()) {
    jacobian = jacobian_penalty(output.code, output.input, options.method(), options.probes());
  } else {
    return {recon, {{"recon", recon}}};
  }
  const torch::Tensor penalty = options.lambda() * jacobian;
  return {recon + penalty, {{"recon", recon}, {"contractive", penalty}}};
}

void register_contractive(Registry& registry) {
  registry.add({"contractive",
                "undercomplete backbone + lambda ||J_f(x)||_F^2: exact (double backward) or hutchinson "
                "for any encoder, analytic for one sigmoid layer (Rifai et al. 2011)",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  // Rifai et al.'s CAE: one sigmoid layer of code units.
                  const UndercompleteOptions defaults =
                      UndercompleteOptions(BackboneOptions(data.shape, 128).hidden({})).code_activation(Activation::sigmoid);
                  ContractiveOptions o(
                      read_undercomplete_options(r, data, defaults, "the contractive penalty is of a real-valued code"));
                  o.lambda(r.number("lambda", o.lambda(), at_least(0)));
                  const bool analytic_fits = one_sigmoid_layer(o.backbone());
                  o.method(parse_jacobian_method(
                      r.choice("method", analytic_fits ? "analytic" : "exact", jacobian_method_names())));
                  r.require(o.method() != JacobianMethod::analytic || analytic_fits, "method",
                            "analytic is the closed form for one affine layer + sigmoid (hidden [] and "
                            "code_activation sigmoid); use exact or hutchinson for this encoder");
                  o.probes(r.integer("probes", o.probes(), at_least(1)));
                  r.finish();
                  return [o] { return Contractive(o).ptr(); };
                },
                stack_layer_defaults});
}

}  // namespace torchae
