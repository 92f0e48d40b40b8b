#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"
#include "torchae/nn/backbone.h"
#include "torchae/nn/binary_code.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace torchae {

/// Options for `Undercomplete`.
struct UndercompleteOptions {
  explicit UndercompleteOptions(BackboneOptions networks);
  /// An MLP backbone of the default widths for examples of `input_shape`.
  UndercompleteOptions(std::vector<int64_t> input_shape, int64_t code_size);

  /// The conv backbone's architecture from these options.
  ConvOptions conv() const;

  /// The encoder and decoder networks: MLPs or convolutions, their widths and activation. The
  /// code is narrower than the input: that is what makes it undercomplete. A conv backbone with
  /// code_size 0 has no dense layer: the code is the last feature map.
  TORCH_ARG(BackboneOptions, networks);
  /// Non-linearity applied to the code (identity: a linear bottleneck).
  TORCH_ARG(Activation, code_activation) = Activation::identity;
  /// Non-linearity of the decoder's output.
  TORCH_ARG(Activation, output_activation) = Activation::sigmoid;
  /// Tie the decoder to the encoder, W_d = W_e^T layer by layer (the decoder keeps its biases).
  TORCH_ARG(bool, tied) = false;
  /// No non-linearity anywhere. Under MSE on centred data the code then spans the PCA
  /// subspace (Baldi & Hornik 1989), which the test suite checks.
  TORCH_ARG(bool, linear) = false;
  /// Reconstruction cost.
  TORCH_ARG(ReconstructionLoss, loss) = ReconstructionLoss::bce;
  /// Dropout on the input, in training mode (0: none).
  TORCH_ARG(double, input_dropout) = 0.0;
  /// Dropout after every hidden layer, the code included, in training mode (0: none).
  TORCH_ARG(double, dropout) = 0.0;
  /// A binary code, for semantic hashing (`BinaryCodeLayer`): with `noise` the code units are
  /// logistic (code_activation sigmoid), with `sign` the sign is their activation.
  TORCH_ARG(BinaryCodeOptions, binary_code) = {};
};

/// The undercomplete autoencoder: x -> h = f(x) -> g(h), trained to reconstruct x through a
/// code narrower than x. Its networks are MLPs or, with `BackboneOptions::kind(BackboneKind::conv)`,
/// convolutions; a conv backbone without a dense code (code_size 0) is fully convolutional.
///
///   Undercomplete ae(UndercompleteOptions(BackboneOptions({1, 28, 28}, 32).hidden({256})).tied(true));
///   Undercomplete restorer(UndercompleteOptions(BackboneOptions({3, 64, 64}, 0).kind(BackboneKind::conv)));
///   Output out = ae->forward(x);
///   Losses l = ae->loss(x, out);
class UndercompleteImpl : public torch::nn::Cloneable<UndercompleteImpl>,
                          public Autoencoder,
                          public Hashing,
                          public MaskAware,
                          public NoiseAware {
 public:
  explicit UndercompleteImpl(UndercompleteOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Output forward(const torch::Tensor& input) override;
  torch::Tensor encode(const torch::Tensor& input) override;
  torch::Tensor encode_preactivation(const torch::Tensor& input) override;
  torch::Tensor decode(const torch::Tensor& code) override;
  Losses loss(const torch::Tensor& target, const Output& output) override;
  torch::Tensor reconstruction_cost(const Output& output, const torch::Tensor& target) override;
  /// The code's elements for one example of `input_shape`.
  int64_t code_size() const override;
  /// A fully convolutional backbone's total stride; 0 otherwise.
  int64_t size_multiple() const override;
  /// False for a conv backbone with skips or a residual path, which pass the input around the code.
  bool bottlenecked() const override;
  torch::nn::Module& module() override { return *this; }
  void script(ScriptModel& script) const override;

  /// The code's width when it is binary (`options.binary_code`), else 0.
  int64_t hash_bits() const override;
  torch::Tensor hash(const torch::Tensor& input) override;
  torch::Tensor relaxed_code(const torch::Tensor& input) override;

  /// Whether the conv encoder takes the mask (`BackboneOptions::mask_input`).
  bool takes_mask() const override;
  /// The output for `input` with `missing` [B, 1, H, W] as the mask channel; through the skips
  /// too, when the backbone has them (`forward` is `fill` with nothing missing).
  Output fill(const torch::Tensor& input, const torch::Tensor& missing) override;
  /// Whether the conv encoder takes a noise level map (`BackboneOptions::noise_map`).
  bool takes_noise_level() const override;
  /// The output for `input` with `level` [B, 1, H, W] as the noise level channel; `forward`
  /// gives it the level `estimate_noise_sigma` finds in each image.
  Output denoise(const torch::Tensor& input, const torch::Tensor& level) override;

  /// For export: TorchScript statements computing the code `h` from the input `x` (and, with a
  /// mask input, the mask `missing` when `with_mask`, else nothing missing; with a noise map,
  /// the map `level` when `with_mask`, else the level estimated from x), with the tensors
  /// registered under `prefix` (the module's name in its owner, "" at the top); a binary code's
  /// pre-activation when `preactivation`.
  std::vector<std::string> script_encoder(ScriptModel& script, const std::string& prefix,
                                          bool preactivation = false, bool with_mask = false) const;
  /// For export: statements computing the output `y`, shaped like the input, from the code `h`
  /// and, when `after_encoder` (the statements follow `script_encoder`'s), from the encoder's
  /// feature maps (skips) and its input image `x` (residual) too.
  std::vector<std::string> script_decoder(ScriptModel& script, const std::string& prefix,
                                          bool after_encoder = false) const;
  /// For export: defines encode, decode, forward (and, with a binary code, hash) with the tensors under `prefix` (what
  /// `script` does at the top, and what families built on this backbone call).
  void define_script(ScriptModel& script, const std::string& prefix) const;

  /// Whether `forward_with_tangents` can push directions through the encoder: an MLP encoder
  /// with a real-valued code.
  bool pushes_tangents() const;
  /// `forward`, with `code_tangents` J_f(x) v for each direction v in `directions` ([probes,
  /// batch, input size], x flattened), pushed forward through the encoder beside the input
  /// (`MLP::forward_with_tangents`; input dropout, in training, masks x and the directions
  /// alike). Needs `pushes_tangents()`.
  Output forward_with_tangents(const torch::Tensor& input, const torch::Tensor& directions);
  /// Decodes `code` into an Output (reconstruction, logits, code) shaped like `input_shape`;
  /// `features` are the conv encoder's, for the skips.
  Output reconstruct(const torch::Tensor& code, at::IntArrayRef input_shape,
                     const std::vector<torch::Tensor>& features = {});
  /// The same, shaped like one batch of this model's input.
  Output reconstruct(const torch::Tensor& code) override;
  /// The MLP encoder (null with the conv backbone).
  const MLP& encoder() const { return encoder_; }
  /// The first layer's weight, what `viz filters` draws: [code or hidden width, input size]
  /// for an MLP, [channels, C, k, k] for convolutions.
  torch::Tensor first_layer_weight() const;

  /// The decoder's last affine map as a [input_size, code_size] matrix when the decoder is a
  /// single layer (its column space is what a linear autoencoder learns); undefined otherwise.
  torch::Tensor decoder_matrix() const;

  /// The input as the encoder takes it: flattened, with input dropout in training mode; with a
  /// mask input, `side` (the mask of what is missing; nothing missing when undefined) as one
  /// more channel; with a noise map, `side` (the noise level map; when undefined, each image's
  /// `estimate_noise_sigma` everywhere) as one more channel.
  torch::Tensor encoder_input(const torch::Tensor& input, const torch::Tensor& side = {}) const;

  UndercompleteOptions options;

 private:
  /// The shape of `n` examples: {n, input_shape...}.
  std::vector<int64_t> batch_shape(int64_t n) const;
  /// Decoder output before the output activation: flat [batch, input_size] for an MLP, an
  /// image for convolutions, whose size comes from `input_shape` (a batch's) for a flat code.
  torch::Tensor decode_logits(const torch::Tensor& code, at::IntArrayRef input_shape,
                              const std::vector<torch::Tensor>& features = {});
  /// A fully convolutional code as the decoder takes it, [B, C, h, w], for images of
  /// `input_shape` (a batch's); other codes as they are.
  torch::Tensor feature_map(const torch::Tensor& code, at::IntArrayRef input_shape) const;

  bool conv() const { return options.networks().conv(); }
  /// The encoder's output for its input `x` (as `encoder_input` made it), before a binary code;
  /// `features` receives the conv encoder's hidden feature maps.
  torch::Tensor encoder_output(const torch::Tensor& x, std::vector<torch::Tensor>* features = nullptr);
  /// The code of `x` (as `encoder_input` made it): the encoder's output, made binary when the
  /// code is.
  torch::Tensor code_of(const torch::Tensor& x, std::vector<torch::Tensor>* features = nullptr);
  /// The Output for `x` (as `encoder_input` made it), through the skips when there are.
  Output forward_from(const torch::Tensor& x, at::IntArrayRef input_shape);

  BinaryCodeLayer binary_code_;
  MLP encoder_{nullptr};
  MLP decoder_{nullptr};                     // untied only
  ConvEncoder conv_encoder_{nullptr};        // conv backbone only, as are:
  ConvDecoder conv_decoder_{nullptr};
  std::vector<torch::Tensor> decoder_bias_;  // tied only
};

TORCH_MODULE(Undercomplete);

/// Reads the options every family on the undercomplete backbone shares (the networks', see
/// `read_backbone_options`, then binary_code, code_noise, activation, code_activation,
/// output_activation, loss, tied, linear, input_dropout, dropout) from `reader`, taking the
/// family's `defaults` for keys not given, and checks that they fit together and fit `data`. A
/// family whose code cannot be binary gives the reason as `no_binary_code`: binary_code is then
/// refused with it.
UndercompleteOptions read_undercomplete_options(OptionReader& reader, const DataSpec& data,
                                                const UndercompleteOptions& defaults,
                                                const std::string& no_binary_code = {});

/// What a family on the undercomplete backbone takes by default as a stack's layer
/// (`Family::layer_defaults`) whose input is `input`: one affine map each way, a sigmoid code,
/// and a sigmoid output with bce when the input lies in [0, 1], a linear output with mse
/// otherwise.
Json stack_layer_defaults(const DataSpec& input);

}  // namespace torchae
