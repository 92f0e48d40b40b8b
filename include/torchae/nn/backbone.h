#pragma once

#include "torchae/nn/conv.h"
#include "torchae/nn/mlp.h"

#include <torch/arg.h>

#include <string>
#include <vector>

namespace torchae {

class OptionReader;
struct DataSpec;

/// The networks of a family's encoder and decoder (option `model.backbone`).
enum class BackboneKind {
  /// Multi-layer perceptrons on the flattened input.
  mlp,
  /// Convolutions on images {C, H, W} (`ConvEncoder`, `ConvDecoder`).
  conv,
};

BackboneKind parse_backbone(const std::string& name);
std::string to_string(BackboneKind kind);

/// The encoder and decoder networks a family is built on, MLPs or convolutions: the one set
/// of options that `undercomplete` (and every family on it) and `vae` share, read by
/// `read_backbone_options`.
///
///   BackboneOptions mlp = BackboneOptions({1, 28, 28}, 32).hidden({256});
///   BackboneOptions conv = BackboneOptions({3, 48, 48}, 0).kind(BackboneKind::conv).channels({32, 64});
struct BackboneOptions {
  BackboneOptions(std::vector<int64_t> input_shape, int64_t code_size);

  bool conv() const { return kind_ == BackboneKind::conv; }
  /// Elements of one example.
  int64_t input_size() const;
  /// The conv networks' architecture, with a dense layer of `dense` units after the
  /// convolutions (0: none, the code is the last feature map) and `dropout` after every hidden
  /// activation.
  ConvOptions conv_options(int64_t dense, double dropout = 0.0) const;
  /// The encoder MLP's widths, {input size, hidden..., `out`}.
  std::vector<int64_t> encoder_widths(int64_t out) const;
  /// The decoder MLP's widths, the encoder's mirrored: {`in`, hidden reversed..., input size}.
  std::vector<int64_t> decoder_widths(int64_t in) const;

  /// Shape of one example, e.g. {1, 28, 28}; the MLP sees it flattened.
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// Width of the code. With the conv backbone, 0 means no dense layer: the code is the last
  /// feature map (only for families that allow it).
  TORCH_ARG(int64_t, code_size);
  /// MLPs or convolutions.
  TORCH_ARG(BackboneKind, kind) = BackboneKind::mlp;
  /// MLP: hidden widths of the encoder, input side first; the decoder mirrors them.
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{512};
  /// Conv: output channels of the encoder's convolutions, input side first.
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>({32, 64});
  /// Conv: kernel sizes (odd), one for all layers or one per layer.
  TORCH_ARG(std::vector<int64_t>, kernels) = std::vector<int64_t>{3};
  /// Conv: strides, one for all layers or one per layer.
  TORCH_ARG(std::vector<int64_t>, strides) = std::vector<int64_t>{2};
  /// Conv: residual blocks after each encoder layer, one for all layers or one per layer
  /// (`ConvOptions::blocks`).
  TORCH_ARG(std::vector<int64_t>, blocks) = std::vector<int64_t>{0};
  /// Non-linearity of the hidden layers.
  TORCH_ARG(Activation, activation) = Activation::relu;
  /// Conv: the encoder also takes the mask of what is missing (`ConvOptions::mask_input`).
  TORCH_ARG(bool, mask_input) = false;
  /// Conv: the encoder also takes the noise's standard deviation as a map (`ConvOptions::noise_map`).
  TORCH_ARG(bool, noise_map) = false;
  /// Conv, with `mask_input`: rings of the holes filled by averaging first (`ConvOptions::prefill`).
  TORCH_ARG(int64_t, prefill) = 0;
  /// Conv: symmetric skip connections from encoder to decoder (`ConvOptions::skips`).
  TORCH_ARG(bool, skips) = false;
  /// Conv: the decoder's output is a correction added to the input image (`ConvOptions::residual`).
  TORCH_ARG(bool, residual) = false;
  /// Conv, residual: the last layer starts at zero (`ConvOptions::zero_init`).
  TORCH_ARG(bool, zero_init) = false;
  /// Conv: the decoder ends in class scores (`ConvOptions::classes`).
  TORCH_ARG(int64_t, classes) = 0;
};

/// What a family allows of its backbone, for `read_backbone_options`.
struct BackboneRules {
  /// A conv backbone may have code_size 0 (a fully convolutional network).
  bool feature_map_code = false;
  /// The family's own options that only an MLP takes (refused with conv, as `hidden` is).
  std::vector<std::string> mlp_only;
};

/// Reads the backbone options every family shares: `backbone`, `code_size`, and `hidden` (mlp)
/// or `channels`, `kernels`, `strides` and `blocks` (conv), each from `defaults` when not given, and
/// checks that they fit together and fit `data`. A conv option with an MLP or an MLP option
/// with conv is refused by name. `activation` is the family's to read: its default can depend
/// on other options (a linear autoencoder's is identity).
BackboneOptions read_backbone_options(OptionReader& reader, const DataSpec& data, const BackboneOptions& defaults,
                                      const BackboneRules& rules = {});

/// "hidden=[512]" or "backbone=conv, channels=[32, 64], kernels=[3], strides=[2]", for
/// `pretty_print`.
std::string describe_backbone(const BackboneOptions& options);

}  // namespace torchae
