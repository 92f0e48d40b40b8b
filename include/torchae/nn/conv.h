#pragma once

#include "torchae/export/script.h"
#include "torchae/nn/mlp.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace torchae {

/// The architecture of a convolutional backbone, shared by its encoder and its decoder (which
/// mirrors the encoder with transposed convolutions).
struct ConvOptions {
  /// `input_shape` = {channels, height, width} of the training images; `channels` = the output
  /// channels of each encoder convolution, input side first.
  ConvOptions(std::vector<int64_t> input_shape, std::vector<int64_t> channels);

  /// The product of the strides: image sides must be multiples of it.
  int64_t total_stride() const;
  /// The kernel and the stride of layer `i` (lists of one apply to every layer).
  int64_t kernel(std::size_t i) const;
  int64_t stride(std::size_t i) const;
  /// The residual blocks after layer `i` (a list of one applies to every layer).
  int64_t block_count(std::size_t i) const;
  /// {C, h, w} of the last feature map for the training shape.
  std::vector<int64_t> feature_shape() const;
  /// The first rule these options break, as {option, what is wrong}, e.g. {"kernels", "must be
  /// odd ..., got 4"}; none when they are sound. The one rule set behind `check` and behind the
  /// configuration's messages (`read_backbone_options`).
  std::optional<std::pair<std::string, std::string>> problem() const;
  /// Throws (TORCH_CHECK) with `problem()`'s message, if any.
  void check() const;

  /// {C, H, W} of one training image (C is 1 for gray, 3 for colour).
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// Output channels of each encoder convolution; the decoder runs them backwards.
  TORCH_ARG(std::vector<int64_t>, channels);
  /// Kernel size of each convolution (odd), one per layer or one for all.
  TORCH_ARG(std::vector<int64_t>, kernels) = std::vector<int64_t>{3};
  /// Stride of each convolution, one per layer or one for all. Padding is (kernel - 1) / 2, so
  /// a layer of stride s maps a side n to n / s, and its transposed twin maps it back.
  TORCH_ARG(std::vector<int64_t>, strides) = std::vector<int64_t>{2};
  /// Residual blocks after each encoder convolution, one entry per layer or one for all: each
  /// block adds conv(activation(conv(x))) to its input x (3x3 convolutions, stride 1, the layer's
  /// channels; He et al., CVPR 2016), after the layer's activation (after the last layer, before
  /// the output activation). Each block's second convolution starts at zero, so that a block
  /// starts as the identity: the network computes what it computes without the blocks, and a
  /// trained model grows deeper without losing what it learned (`train.init`). The skips pass
  /// on each level's maps after its blocks.
  TORCH_ARG(std::vector<int64_t>, blocks) = std::vector<int64_t>{0};
  /// Non-linearity after every hidden layer.
  TORCH_ARG(Activation, activation) = Activation::relu;
  /// Width of a dense code after the convolutions. 0: no dense layer; the code is the last
  /// feature map and the network is fully convolutional (it runs on any image whose sides are
  /// multiples of `total_stride()`).
  TORCH_ARG(int64_t, code_size) = 0;
  /// Dropout after every hidden activation, in training mode (0: none).
  TORCH_ARG(double, dropout) = 0.0;
  /// The encoder takes one more input channel than the images have: the mask of what is
  /// missing (1 missing, 0 known), so that a hole is not mistaken for dark pixels.
  TORCH_ARG(bool, mask_input) = false;
  /// The encoder takes one more input channel than the images have: the standard deviation of
  /// the noise, pixel by pixel (FFDNet's noise level map: Zhang, Zuo & Zhang, TIP 2018), so
  /// that a denoiser knows how much to remove. Not with `mask_input`.
  TORCH_ARG(bool, noise_map) = false;
  /// With `mask_input`: the missing pixels are first filled this many rings deep by
  /// `fill_by_averaging` (0: they stay 0), so that the network corrects a smooth guess.
  TORCH_ARG(int64_t, prefill) = 0;
  /// Symmetric skip connections (Mao et al., NIPS 2016, "RED-Net"): the decoder adds each
  /// encoder feature map to its mirror layer's output before the activation. The decoder then
  /// sees more than the code; `ConvDecoder::forward` without the features adds nothing.
  TORCH_ARG(bool, skips) = false;
  /// The decoder's output is a correction to the input image, which its owner adds to it (after
  /// the prefill, with `mask_input`): residual learning (Zhang et al., "DnCNN", TIP 2017). The
  /// network only says what to change. Fully convolutional networks (code_size 0) that end in
  /// the image (classes 0) only; `ConvDecoder::forward` itself adds nothing.
  TORCH_ARG(bool, residual) = false;
  /// With `residual`: the decoder's last layer starts at zero (weights and bias), so that the
  /// correction starts at nothing and the network at the identity, as residual networks are often
  /// started; its default initialisation otherwise.
  TORCH_ARG(bool, zero_init) = false;
  /// > 0: the decoder ends in this many class scores per pixel instead of the image: its last
  /// layer, in place of the transposed convolution back to the image, is a 1x1 convolution on
  /// the grid of the first feature map (1 / strides[0] of the image's side). What a colouriser by
  /// classification predicts (`ChromaBins`).
  TORCH_ARG(int64_t, classes) = 0;
};

/// The encoder of the convolutional backbone: convolutions (padding (k-1)/2) with
/// `activation`, then, when `code_size` > 0, a dense layer to the code. `output_activation`
/// follows the last layer.
///
///   ConvEncoder encoder(ConvOptions({1, 28, 28}, {32, 64}).strides({2}), Activation::identity);
///   torch::Tensor h = encoder(x);   // [B, 64, 7, 7]
class ConvEncoderImpl : public torch::nn::Cloneable<ConvEncoderImpl> {
 public:
  ConvEncoderImpl(ConvOptions options, Activation output_activation);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// [B, C, H, W] ([B, C + 1, H, W] with `mask_input`) -> the code: [B, code_size], or
  /// [B, C', H/s, W/s] when fully convolutional. `features`, when given, receives the hidden
  /// layers' feature maps (after their activation), input side first: what `skips` passes on.
  torch::Tensor forward(torch::Tensor x, std::vector<torch::Tensor>* features = nullptr);
  /// The same without the output activation.
  torch::Tensor forward_preactivation(torch::Tensor x, std::vector<torch::Tensor>* features = nullptr);
  /// Input channels: the images' and, with `mask_input`, the mask's (`noise_map`: the map's).
  int64_t input_channels() const;
  /// Elements of the code of one training image.
  int64_t code_size() const;
  /// For export: statements applying `forward` to `var` in place (eval mode); with `skips`
  /// they also keep the hidden feature maps in `skip0`, `skip1`, ... for the decoder.
  std::vector<std::string> script(ScriptModel& script, const std::string& name, const std::string& var) const;
  /// The first convolution's weight, [channels[0], C, k, k] (what `viz filters` draws).
  const torch::Tensor& first_weight() const { return convs_.front()->weight; }

  ConvOptions options;
  Activation output_activation;

 private:
  void check_input(const torch::Tensor& x) const;

  /// x + second(activation(first(x))) for each block of `blocks_[i]`.
  torch::Tensor apply_blocks(std::size_t i, torch::Tensor x);

  std::vector<torch::nn::Conv2d> convs_;
  /// Per layer, its blocks' convolutions in pairs: first, second, first, second, ...
  std::vector<std::vector<torch::nn::Conv2d>> blocks_;
  torch::nn::Linear dense_{nullptr};
};

TORCH_MODULE(ConvEncoder);

/// Whether `name`, a model's parameter name ("backbone.encoder.block1_0b.weight") or its name in
/// an exported archive ("backbone_encoder_block1_0b_weight"), is one of the residual blocks of
/// `ConvOptions::blocks`, which start as the identity: a trained model without blocks computes
/// what the same model with them starts as, so `train.init` may grow it.
bool is_residual_block_parameter(const std::string& name);

/// The decoder of the convolutional backbone, the encoder's mirror: a dense layer from the
/// code (when `code_size` > 0) with `activation`, then transposed convolutions back to the
/// input's channels and size (with `classes`, back to the first feature map's size, then a 1x1
/// convolution to the class scores). It returns the last layer's pre-activation: the owner
/// applies its output activation (so that a bce loss can take the logits).
class ConvDecoderImpl : public torch::nn::Cloneable<ConvDecoderImpl> {
 public:
  explicit ConvDecoderImpl(ConvOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// The code -> [B, C, H, W] pre-activation. With `skips`, `features` are the encoder's
  /// (`ConvEncoder::forward`'s) and each is added to its mirror layer's output; without them
  /// (decoding a code alone) nothing is added.
  torch::Tensor forward(torch::Tensor code, const std::vector<torch::Tensor>& features = {});
  /// For export: statements applying `forward` to `var` in place; with `skips` and
  /// `with_skips`, adding the encoder's `skip0`, `skip1`, ... (see `ConvEncoder::script`).
  std::vector<std::string> script(ScriptModel& script, const std::string& name, const std::string& var,
                                  bool with_skips = false) const;

  ConvOptions options;

 private:
  torch::nn::Linear dense_{nullptr};
  std::vector<torch::nn::ConvTranspose2d> deconvs_;
  torch::nn::Conv2d head_{nullptr};
};

TORCH_MODULE(ConvDecoder);

/// Fills the missing pixels of images `x` [B, C, H, W] (`missing` [B, 1, H, W], 1 where
/// missing) from the outside in, `steps` rings deep: each step gives the missing pixels next to
/// known ones the mean of their known 3x3 neighbours (normalized convolution, Knutsson &
/// Westin 1993, peeled like Telea's fast marching); pixels further in stay as they were. What
/// the mask-aware encoder starts from with `ConvOptions::prefill`.
torch::Tensor fill_by_averaging(torch::Tensor x, const torch::Tensor& missing, int64_t steps);
/// The same in TorchScript: statements that fill `var` in place from `missing`.
std::vector<std::string> script_fill_by_averaging(const std::string& var, const std::string& missing, int64_t steps);

/// `torch::conv_transpose2d(x, weight, bias, stride, padding, output_padding)` (square kernel,
/// groups 1, dilation 1). On CPU float tensors that are channels-last (as the conv backbone keeps
/// its feature maps on the CPU) or have at least 16 output channels, it is computed as the input
/// gradient of the mirror convolution, whose kernels LibTorch 1.13 runs on oneDNN, where its own
/// transposed convolution runs a native loop (`slow_conv_transpose2d`). On NCHW maps the mirror
/// was 1.08x to 1.57x faster forward and backward for the inner layers of the conv decoders,
/// while for layers out to 3 channels LibTorch's own was as fast or faster (0.68x to 1.10x),
/// measured side by side by bench/conv_transpose.py; on channels-last maps the native loop
/// reorders them first, and the mirror was 1.67x to 2.82x faster for all of those layers (its
/// `--channels-last`). Everything else takes LibTorch's.
torch::Tensor conv_transpose2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                               int64_t stride, int64_t padding, int64_t output_padding);

/// "channels=[32, 64], kernels=[3], strides=[2]": the layers, for `pretty_print`.
std::string describe_layers(const ConvOptions& options);

}  // namespace torchae
