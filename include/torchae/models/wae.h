#pragma once

#include "torchae/models/backbone.h"
#include "torchae/nn/penalties.h"

namespace torchae {

/// Options for `WAE`.
struct WAEOptions {
  explicit WAEOptions(UndercompleteOptions backbone);

  /// The deterministic encoder and the decoder.
  TORCH_ARG(UndercompleteOptions, backbone);
  /// Weight of the latent penalty D(Q_z, P_z).
  TORCH_ARG(double, lambda) = 10.0;
  /// Kernel of the MMD penalty.
  TORCH_ARG(MmdKernel, kernel) = MmdKernel::inverse_multiquadratic;
  /// Standard deviation of the Gaussian prior P_z = N(0, sigma_p^2 I).
  TORCH_ARG(double, prior_sigma) = 1.0;
};

/// The Wasserstein autoencoder with the MMD penalty (Tolstikhin et al., "Wasserstein
/// Auto-Encoders", ICLR 2018, Algorithm 2): a deterministic encoder and a decoder trained on
/// the per-image cost c(x, G(z)) (the backbone's `loss` summed over pixels: with mse, the
/// squared L2 distance of the paper) + lambda * MMD^2(Q_z, P_z), the unbiased U-statistic
/// between the batch's codes and as many prior samples. The kernel is summed over
/// C = 2 * d_z * sigma_p^2 * s for s in {0.1, 0.2, 0.5, 1, 2, 5, 10}.
///
///   WAE wae(WAEOptions(UndercompleteOptions({1, 28, 28}, 8)));
///   Losses l = wae->loss(x, x, wae->forward(x));   // terms "recon", "mmd"
class WAEImpl : public BackboneAutoencoder<WAEImpl>, public Generative {
 public:
  explicit WAEImpl(WAEOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Losses loss(const torch::Tensor& target, const torch::Tensor& input, const Output& output) override;
  /// Decoded draws from the prior N(0, sigma_p^2 I).
  torch::Tensor sample(int64_t n) override;
  /// Exports `sample(n)` next to the backbone's methods.
  void script(ScriptModel& script) const override;

  WAEOptions options;
};

TORCH_MODULE(WAE);

}  // namespace torchae
