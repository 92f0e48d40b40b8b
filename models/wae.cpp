#include "torchae/models/wae.h"

#include "torchae/models/registry.h"

#include <torch/torch.h>

#include <fmt/format.h>

namespace torchae {

WAEOptions::WAEOptions(UndercompleteOptions backbone) : backbone_(std::move(backbone)) {}

WAEImpl::WAEImpl(WAEOptions options_) : options(std::move(options_)) { reset(); }

void WAEImpl::reset() {
  TORCH_CHECK(options.lambda() >= 0, "wae: lambda must be >= 0");
  TORCH_CHECK(options.prior_sigma() > 0, "wae: prior_sigma must be > 0");
  reset_backbone(options.backbone());
  discriminator_ = nullptr;
  if (options.penalty() == WaePenalty::gan) {
    std::vector<int64_t> widths{options.backbone().networks().code_size()};
    widths.insert(widths.end(), options.discriminator_hidden().begin(), options.discriminator_hidden().end());
    widths.push_back(1);
    discriminator_ = register_module("discriminator", MLP(MLPOptions(widths).activation(Activation::relu)));
  }
}

void WAEImpl::pretty_print(std::ostream& stream) const {
  stream << "torchae::WAE(penalty=" << (discriminator_ ? "gan" : "mmd") << ", kernel="
         << (options.kernel() == MmdKernel::inverse_multiquadratic ? "imq" : "rbf") << ", lambda=" << options.lambda()
         << ", prior_sigma=" << options.prior_sigma() << ")";
}

Losses WAEImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor recon =
      reconstruction_loss_elements(backbone_->options.loss(), output, target).flatten(1).sum(1).mean();
  const torch::Tensor& z = output.code;
  if (discriminator_) {
    // The non-saturating form of the encoder's objective, -log D(z) with D = sigmoid(logit).
    const torch::Tensor gan = torch::softplus(-discriminator_->forward(z)).mean();
    return {recon + options.lambda() * gan, {{"recon", recon}, {"gan", gan}}};
  }
  // The U-statistic needs two codes; a last batch of one contributes its reconstruction only.
  torch::Tensor mmd = torch::zeros({}, z.options());
  if (z.size(0) >= 2) {
    const torch::Tensor prior = options.prior_sigma() * torch::randn_like(z);
    const double base = 2.0 * static_cast<double>(z.size(1)) * options.prior_sigma() * options.prior_sigma();
    mmd = mmd_penalty(z, prior, options.kernel(), base);
  }
  return {recon + options.lambda() * mmd, {{"recon", recon}, {"mmd", mmd}}};
}

std::vector<torch::Tensor> WAEImpl::adversary_parameters() {
  return discriminator_ ? discriminator_->parameters() : std::vector<torch::Tensor>{};
}

Losses WAEImpl::adversary_loss(const Output& output) {
  TORCH_CHECK(discriminator_, "wae: adversary_loss needs penalty gan");
  const torch::Tensor codes = output.code.detach();
  const torch::Tensor prior = options.prior_sigma() * torch::randn_like(codes);
  const torch::Tensor loss =
      torch::softplus(-discriminator_->forward(prior)).mean() + torch::softplus(discriminator_->forward(codes)).mean();
  return {loss, {{"discriminator", loss}}};
}

torch::Tensor WAEImpl::sample(int64_t n) {
  const auto device = backbone_->first_layer_weight().device();
  return decode(options.prior_sigma() * torch::randn({n, code_size()}, torch::TensorOptions(device)));
}

void WAEImpl::script(ScriptModel& script) const {
  BackboneAutoencoder<WAEImpl>::script(script);
  script.method("sample(self, n: int) -> Tensor",
                {fmt::format("return self.decode(torch.randn([n, {}]) * {:.17g})", code_size(), options.prior_sigma())});
}

void register_wae(Registry& registry) {
  registry.add({"wae",
                "Wasserstein autoencoder (Tolstikhin et al. 2018): deterministic encoder, per-image "
                "reconstruction cost + lambda * D(Q_z, P_z): penalty mmd (inverse-multiquadratic or rbf "
                "kernel) or gan (a latent discriminator trained adversarially)",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  // The paper's MNIST setting: d_z = 8, lambda = 10, squared L2 cost. Its optimiser
                  // (Adam 1e-3, beta1 0.5, batch 100) is the train section's: see the wae zoo recipe.
                  const UndercompleteOptions defaults =
                      UndercompleteOptions(data.shape, 8).loss(ReconstructionLoss::mse);
                  // WAE-GAN's MNIST setting: lambda = 1, a discriminator of four 512-unit relu
                  // layers trained by Adam at 5e-4.
                  const bool gan = r.choice("penalty", "mmd", {"mmd", "gan"}) == "gan";
                  WAEOptions o(
                      read_undercomplete_options(r, data, defaults, "the WAE's code matches a continuous prior"));
                  r.require(o.backbone().networks().code_size() > 0, "code_size",
                            "a WAE matches a prior on a code vector; a conv backbone needs code_size > 0");
                  o.penalty(gan ? WaePenalty::gan : WaePenalty::mmd);
                  o.lambda(r.number("lambda", gan ? 1.0 : 10.0, at_least(0)));
                  if (gan) {
                    o.discriminator_hidden(r.integers("discriminator_hidden", o.discriminator_hidden(), at_least(1)));
                    o.discriminator_lr(r.number("discriminator_lr", o.discriminator_lr(), greater_than(0)));
                  } else {
                    const std::string kernel = r.choice("kernel", "imq", {"imq", "rbf"});
                    o.kernel(kernel == "imq" ? MmdKernel::inverse_multiquadratic : MmdKernel::rbf);
                  }
                  o.prior_sigma(r.number("prior_sigma", o.prior_sigma(), greater_than(0)));
                  r.finish();
                  return [o] { return WAE(o).ptr(); };
                },
                /*layer_defaults=*/nullptr});  // not a stack's layer
}

}  // namespace torchae
