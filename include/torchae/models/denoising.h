#pragma once

#include "torchae/data/corruption.h"
#include "torchae/models/backbone.h"
#include "torchae/nn/chroma.h"

#include <optional>

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
  /// > 0 (with the `gray` corruption and the conv backbone): colourisation by classification
  /// (Zhang, Isola & Efros, ECCV 2016) over the `ChromaBins` of this side, instead of regressing
  /// the colour by squared error. The decoder ends in one score per cell on the first feature
  /// map's grid; the loss is their cross-entropy against the soft-encoded chroma, rebalanced.
  TORCH_ARG(double, chroma_bins) = 0.0;
  /// The rebalancing mix lambda (`ChromaBins::class_weights`): 1 weighs every cell alike, 0
  /// weighs each by the inverse of its frequency; the paper's 0.5.
  TORCH_ARG(double, rebalance) = 0.5;
  /// The annealed mean's temperature (`ChromaBins::annealed_mean`); the paper's 0.38.
  TORCH_ARG(double, temperature) = 0.38;
};

/// The denoising autoencoder (Vincent et al., JMLR 2010): in training mode the input is
/// corrupted and the clean input is the target; in eval mode the input is used as given.
///
/// With `chroma_bins`, a colouriser by classification: the network always sees the input's
/// luma (in three channels, train and eval alike), `Output::scores` are its class scores over
/// the chroma cells, and the reconstruction is the input's luma with their annealed mean,
/// upsampled bilinearly to the image. The cells' frequencies, which the rebalancing needs, are
/// counted by `loss` in training mode, from the soft targets it computes anyway (a buffer, so a
/// checkpoint resumes them exactly).
class DenoisingImpl : public BackboneAutoencoder<DenoisingImpl>, public Corrupting {
 public:
  explicit DenoisingImpl(DenoisingOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Output forward(const torch::Tensor& input) override;
  const CorruptionOptions& corruption() const override { return options.corruption(); }
  /// A colouriser's: `forward` of the gray input (it sees the luma alone in any mode).
  Output forward_corrupted(const Corrupted& corrupted) override;
  /// With emphasis, (alpha * sum over corrupted + beta * sum over the rest) / number of
  /// components of the per-component cost; plain reconstruction cost otherwise. A colouriser's:
  /// the rebalanced cross-entropy ("ce"), with the squared error of its colours ("mse", logged).
  Losses loss(const torch::Tensor& target, const Output& output) override;

  torch::Tensor encode(const torch::Tensor& input) override;
  torch::Tensor encode_preactivation(const torch::Tensor& input) override;
  /// A colouriser's code holds no luma: it is decoded on a uniform mid-gray (0.5).
  torch::Tensor decode(const torch::Tensor& code) override;
  Output reconstruct(const torch::Tensor& code) override;
  void script(ScriptModel& script) const override;

  /// Whether the model colourises by classification (`chroma_bins` > 0).
  bool colourises() const { return bins_.has_value(); }

  DenoisingOptions options;

 private:
  /// The colours of class scores `scores` [B, Q, h, w] on luma `y` [B, 1, H, W].
  torch::Tensor colours(const torch::Tensor& scores, const torch::Tensor& y) const;

  std::optional<ChromaBins> bins_;
  /// The cells' centres as a 1x1 kernel, and how often each was the nearest to a training pixel.
  torch::Tensor chroma_kernel_, chroma_counts_;
};

TORCH_MODULE(Denoising);

}  // namespace torchae
