#pragma once

#include "torchae/models/backbone.h"
#include "torchae/nn/penalties.h"

namespace torchae {

/// How a WAE measures D(Q_z, P_z).
enum class WaePenalty { mmd, gan };

/// Options for `WAE`.
struct WAEOptions {
  explicit WAEOptions(UndercompleteOptions backbone);

  /// The deterministic encoder and the decoder.
  TORCH_ARG(UndercompleteOptions, backbone);
  /// The latent penalty: MMD, or an adversarial latent discriminator (WAE-GAN).
  TORCH_ARG(WaePenalty, penalty) = WaePenalty::mmd;
  /// Weight of the latent penalty D(Q_z, P_z).
  TORCH_ARG(double, lambda) = 10.0;
  /// Kernel of the MMD penalty.
  TORCH_ARG(MmdKernel, kernel) = MmdKernel::inverse_multiquadratic;
  /// Standard deviation of the Gaussian prior P_z = N(0, sigma_p^2 I).
  TORCH_ARG(double, prior_sigma) = 1.0;
  /// WAE-GAN: hidden widths (relu) of the discriminator on z, and its learning rate.
  TORCH_ARG(std::vector<int64_t>, discriminator_hidden) = std::vector<int64_t>{512, 512, 512, 512};
  TORCH_ARG(double, discriminator_lr) = 5e-4;
};

/// The Wasserstein autoencoder (Tolstikhin et al., "Wasserstein Auto-Encoders", ICLR 2018).
/// WAE-MMD (Algorithm 2): a deterministic encoder and a decoder trained on
/// the per-image cost c(x, G(z)) (the backbone's `loss` summed over pixels: with mse, the
/// squared L2 distance of the paper) + lambda * MMD^2(Q_z, P_z), the unbiased U-statistic
/// between the batch's codes and as many prior samples. The kernel is summed over
/// C = 2 * d_z * sigma_p^2 * s for s in {0.1, 0.2, 0.5, 1, 2, 5, 10}.
///
/// WAE-GAN (Algorithm 1): the penalty is lambda * -log D(z) for a discriminator D on the
/// code space (logits from an MLP), trained as the model's adversary to tell prior draws from
/// codes; the generic trainer steps it after the model, with its own optimizer.
///
///   WAE wae(WAEOptions(UndercompleteOptions({1, 28, 28}, 8)));
///   Losses l = wae->loss(x, wae->forward(x));   // terms "recon", "mmd" (or "gan")
class WAEImpl : public BackboneAutoencoder<WAEImpl>, public Generative, public Adversarial {
 public:
  explicit WAEImpl(WAEOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Losses loss(const torch::Tensor& target, const Output& output) override;
  /// Decoded draws from the prior N(0, sigma_p^2 I).
  torch::Tensor sample(int64_t n) override;
  /// Exports `sample(n)` next to the backbone's methods (not the discriminator).
  void script(ScriptModel& script) const override;

  /// WAE-GAN: the discriminator's parameters (none with mmd).
  std::vector<torch::Tensor> adversary_parameters() override;
  /// WAE-GAN: the discriminator's cross-entropy, prior draws labelled 1, the batch's codes
  /// (detached) 0: softplus(-D(z_p)) + softplus(D(z_q)), averaged.
  Losses adversary_loss(const Output& output) override;
  double adversary_lr() const override { return options.discriminator_lr(); }

  WAEOptions options;

 private:
  MLP discriminator_{nullptr};
};

TORCH_MODULE(WAE);

}  // namespace torchae
