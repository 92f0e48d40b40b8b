#pragma once

#include "torchae/models/backbone.h"
#include "torchae/nn/penalties.h"

namespace torchae {

/// Options for `Contractive`.
struct ContractiveOptions {
  explicit ContractiveOptions(UndercompleteOptions backbone);

  /// The encoder and decoder (by default the paper's: one sigmoid layer).
  TORCH_ARG(UndercompleteOptions, backbone);
  /// Weight of ||J_f(x)||_F^2.
  TORCH_ARG(double, lambda) = 0.1;
  /// exact (double backward, any encoder), hutchinson (any encoder), analytic (one affine layer + sigmoid).
  TORCH_ARG(JacobianMethod, method) = JacobianMethod::analytic;
  /// Random probes of the Hutchinson estimate.
  TORCH_ARG(int64_t, probes) = 1;
};

/// The contractive autoencoder (Rifai et al., ICML 2011): reconstruction plus lambda times the
/// squared Frobenius norm of the encoder's Jacobian at the input. With the double-backward
/// methods the penalty needs gradients, so in eval mode (validation) only the reconstruction
/// term is reported.
class ContractiveImpl : public BackboneAutoencoder<ContractiveImpl> {
 public:
  explicit ContractiveImpl(ContractiveOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Output forward(const torch::Tensor& input) override;
  Losses loss(const torch::Tensor& target, const Output& output) override;

  ContractiveOptions options;
};

TORCH_MODULE(Contractive);

}  // namespace torchae
