#pragma once

#include "torchae/data/corruption.h"
#include "torchae/models/backbone.h"

namespace torchae {

/// Options for `Denoising`.
struct DenoisingOptions {
  explicit DenoisingOptions(UndercompleteOptions backbone);

  /// The encoder and decoder.
  TORCH_ARG(UndercompleteOptions, backbone);
  /// How the input is corrupted in training mode (default: masking 25%).
  TORCH_ARG(CorruptionOptions, corruption) = CorruptionOptions{CorruptionKind::masking, 0.25};
  /// Loss weight on the corrupted components (Vincent et al. 2010, "emphasis").
  TORCH_ARG(double, alpha) = 1.0;
  /// Loss weight on the others.
  TORCH_ARG(double, beta) = 1.0;
};

/// The denoising autoencoder (Vincent et al., JMLR 2010): in training mode the input is
/// corrupted and the clean input is the target; in eval mode the input is used as given.
class DenoisingImpl : public BackboneAutoencoder<DenoisingImpl> {
 public:
  explicit DenoisingImpl(DenoisingOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Output forward(const torch::Tensor& input) override;
  /// With emphasis, (alpha * sum over corrupted + beta * sum over the rest) / number of
  /// components of the per-component cost; plain reconstruction cost otherwise.
  Losses loss(const torch::Tensor& target, const Output& output) override;

  DenoisingOptions options;
};

TORCH_MODULE(Denoising);

}  // namespace torchae
