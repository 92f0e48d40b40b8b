#include "torchae/models/undercomplete.h"

#include "torchae/data/corruption.h"
#include "torchae/models/registry.h"
#include "torchae/nn/fused.h"

#include <torch/nn/init.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <numeric>

namespace torchae {

UndercompleteOptions::UndercompleteOptions(BackboneOptions networks) : networks_(std::move(networks)) {}

UndercompleteOptions::UndercompleteOptions(std::vector<int64_t> input_shape, int64_t code_size)
    : UndercompleteOptions(BackboneOptions(std::move(input_shape), code_size)) {}

UndercompleteImpl::UndercompleteImpl(UndercompleteOptions options_) : options(std::move(options_)) {
  reset();
}

ConvOptions UndercompleteOptions::conv() const { return networks().conv_options(networks().code_size(), dropout()); }

void UndercompleteImpl::reset() {
  const BackboneOptions& net = options.networks();
  TORCH_CHECK(!net.input_shape().empty() && net.input_size() > 0, "undercomplete: empty input shape");
  TORCH_CHECK(net.code_size() > 0 || (conv() && net.code_size() == 0),
              "undercomplete: code_size must be positive (0 only for a fully convolutional backbone)");
  if (options.linear()) {
    TORCH_CHECK(net.activation() == Activation::identity &&
                    options.code_activation() == Activation::identity &&
                    options.output_activation() == Activation::identity,
                "undercomplete: a linear autoencoder has identity activations everywhere");
  }
  TORCH_CHECK(options.loss() != ReconstructionLoss::bce || options.output_activation() == Activation::sigmoid,
              "undercomplete: loss bce is computed from logits and needs output_activation sigmoid");
  // The hidden dropout rate is checked by the networks; the input's is this module's own.
  TORCH_CHECK(options.input_dropout() >= 0 && options.input_dropout() < 1,
              "undercomplete: input_dropout must be in [0, 1)");
  binary_code_ = BinaryCodeLayer(options.binary_code());
  TORCH_CHECK(!binary_code_.binary() || (!options.linear() && net.code_size() > 0),
              "undercomplete: a binary code needs a dense code and a non-linear model");
  // A binary code applies its own activation to the encoder's pre-activation.
  const Activation code_activation = binary_code_.binary() ? Activation::identity : options.code_activation();
  encoder_ = nullptr;
  decoder_ = nullptr;
  conv_encoder_ = nullptr;
  conv_decoder_ = nullptr;
  decoder_bias_.clear();
  TORCH_CHECK(conv() || (!net.mask_input() && !net.noise_map() && !net.skips() && !net.residual()),
              "undercomplete: mask_input, noise_map, skips and residual are conv options");
  TORCH_CHECK(!net.residual() || options.output_activation() == Activation::identity,
              "undercomplete: a residual network adds its output to the input image: output_activation identity");
  if (conv()) {
    TORCH_CHECK(!options.tied() && !options.linear(), "undercomplete: tied and linear are MLP options");
    conv_encoder_ = register_module("encoder", ConvEncoder(options.conv(), code_activation));
    conv_decoder_ = register_module("decoder", ConvDecoder(options.conv()));
    return;
  }

  encoder_ = register_module("encoder", MLP(MLPOptions(net.encoder_widths(net.code_size()))
                                                .activation(net.activation())
                                                .output_activation(code_activation)
                                                .dropout(options.dropout())));
  if (options.tied()) {
    const auto& layers = encoder_->layers();
    for (std::size_t k = 0; k < layers.size(); ++k) {
      // The k-th decoder layer is the transpose of encoder layer (n-1-k): its bias has the
      // width of that layer's input. Zero-initialised, as the decoder reuses trained weights.
      const int64_t width = layers[layers.size() - 1 - k]->options.in_features();
      decoder_bias_.push_back(register_parameter("decoder_bias" + std::to_string(k), torch::zeros({width})));
    }
  } else {
    decoder_ = register_module("decoder", MLP(MLPOptions(net.decoder_widths(net.code_size()))
                                                  .activation(net.activation())
                                                  .dropout(options.dropout())));
  }
}

int64_t UndercompleteImpl::code_size() const {
  return conv() ? conv_encoder_->code_size() : options.networks().code_size();
}

int64_t UndercompleteImpl::size_multiple() const {
  return conv() && options.networks().code_size() == 0 ? conv_encoder_->options.total_stride() : 0;
}

bool UndercompleteImpl::bottlenecked() const {
  return !(conv() && (options.networks().skips() || options.networks().residual()));
}

torch::Tensor UndercompleteImpl::first_layer_weight() const {
  return conv() ? conv_encoder_->first_weight() : encoder_->layers().front()->weight;
}

void UndercompleteImpl::pretty_print(std::ostream& stream) const {
  const BackboneOptions& net = options.networks();
  stream << fmt::format(
      "torchae::Undercomplete(input_shape=[{}], {}, code_size={}, activation={}, "
      "code_activation={}, output_activation={}, tied={}, linear={}, loss={})",
      fmt::join(net.input_shape(), ", "), describe_backbone(net), net.code_size(),
      to_string(net.activation()), to_string(options.code_activation()),
      to_string(options.output_activation()), options.tied(), options.linear(), to_string(options.loss()));
  if (binary_code_.binary()) {
    stream << fmt::format("[binary_code={}", to_string(options.binary_code().kind()));
    if (options.binary_code().kind() == BinaryCode::noise) stream << fmt::format(", code_noise={}", options.binary_code().noise());
    stream << "]";
  }
}

torch::Tensor UndercompleteImpl::encoder_input(const torch::Tensor& input, const torch::Tensor& side) const {
  torch::Tensor x = conv() ? input : input.flatten(1);
  if (options.input_dropout() > 0) x = torch::dropout(x, options.input_dropout(), is_training());
  const bool noise_map = takes_noise_level();
  if (!takes_mask() && !noise_map) return x;
  TORCH_CHECK(x.dim() == 4, "undercomplete: expected images [B, C, H, W], got ", x.sizes());
  if (!side.defined()) {
    // Nothing missing, or the level each image's noise appears to have.
    const torch::Tensor channel =
        noise_map ? noise_level_map(estimate_noise_sigma(input), x) : torch::zeros_like(x.narrow(1, 0, 1));
    return torch::cat({x, channel.to(x.dtype())}, 1);
  }
  TORCH_CHECK(side.dim() == 4 && side.size(0) == x.size(0) && side.size(1) == 1 && side.size(2) == x.size(2) &&
                  side.size(3) == x.size(3),
              "undercomplete: the ", noise_map ? "noise level map" : "mask of what is missing",
              " must be [B, 1, H, W] for images ", x.sizes(), ", got ", side.sizes());
  const int64_t prefill = options.networks().prefill();
  return torch::cat({prefill > 0 ? fill_by_averaging(x, side, prefill) : x, side.to(x.dtype())}, 1);
}

// A fully convolutional code is a feature map, flattened like any code; unflattening it needs
// the size of the image it came from.
torch::Tensor UndercompleteImpl::encoder_output(const torch::Tensor& x, std::vector<torch::Tensor>* features) {
  return conv() ? conv_encoder_->forward(x, features).flatten(1) : encoder_->forward(x);
}

// A binary code's noise is a function of what the encoder saw, so that it is the same for an
// example in every epoch.
torch::Tensor UndercompleteImpl::code_of(const torch::Tensor& x, std::vector<torch::Tensor>* features) {
  const torch::Tensor h = encoder_output(x, features);
  return binary_code_.binary() ? binary_code_.forward(h, x, is_training()) : h;
}

torch::Tensor UndercompleteImpl::encode(const torch::Tensor& input) { return code_of(encoder_input(input)); }

bool UndercompleteImpl::takes_mask() const { return conv() && options.networks().mask_input(); }

bool UndercompleteImpl::takes_noise_level() const { return conv() && options.networks().noise_map(); }

Output UndercompleteImpl::forward_from(const torch::Tensor& x, at::IntArrayRef input_shape) {
  std::vector<torch::Tensor> features;
  const bool skips = conv() && options.networks().skips();
  const torch::Tensor code = code_of(x, skips ? &features : nullptr);
  Output out = reconstruct(code, input_shape, features);
  if (conv() && options.networks().residual()) {
    // The decoder said what to change in the image it was given (prefilled, with a mask input);
    // the output activation is the identity (reset checks it).
    out.logits = out.logits + x.narrow(1, 0, input_shape[1]);
    out.reconstruction = out.logits;
  }
  return out;
}

bool UndercompleteImpl::pushes_tangents() const { return !conv() && !binary_code_.binary(); }

Output UndercompleteImpl::forward_with_tangents(const torch::Tensor& input, const torch::Tensor& directions) {
  TORCH_CHECK(pushes_tangents(), "undercomplete: forward_with_tangents needs an MLP encoder and a real-valued code");
  torch::Tensor x = input.flatten(1), v = directions;
  if (options.input_dropout() > 0 && is_training()) {
    const torch::Tensor keep = dropout_multiplier_like(x, options.input_dropout());
    x = x * keep;
    v = v * keep;
  }
  auto [code, tangents] = encoder_->forward_with_tangents(x, v);
  Output out = reconstruct(code, input.sizes());
  out.code_tangents = std::move(tangents);
  return out;
}

Output UndercompleteImpl::fill(const torch::Tensor& input, const torch::Tensor& missing) {
  TORCH_CHECK(takes_mask(), "undercomplete: this model does not take a mask (model.mask_input)");
  return forward_from(encoder_input(input, missing), input.sizes());
}

Output UndercompleteImpl::denoise(const torch::Tensor& input, const torch::Tensor& level) {
  TORCH_CHECK(takes_noise_level(), "undercomplete: this model does not take a noise level (model.noise_map)");
  TORCH_CHECK(level.defined(), "undercomplete: denoise needs the noise level map");
  return forward_from(encoder_input(input, level), input.sizes());
}

int64_t UndercompleteImpl::hash_bits() const { return binary_code_.binary() ? code_size() : 0; }

torch::Tensor UndercompleteImpl::hash(const torch::Tensor& input) {
  TORCH_CHECK(binary_code_.binary(), "undercomplete: hash needs a binary code (model.binary_code)");
  return binary_code_bits(encode_preactivation(input));
}

torch::Tensor UndercompleteImpl::relaxed_code(const torch::Tensor& input) {
  TORCH_CHECK(binary_code_.binary(), "undercomplete: relaxed_code needs a binary code (model.binary_code)");
  return binary_code_.relaxed(encode_preactivation(input));
}

torch::Tensor UndercompleteImpl::encode_preactivation(const torch::Tensor& input) {
  return conv() ? conv_encoder_->forward_preactivation(encoder_input(input)).flatten(1)
                : encoder_->forward_preactivation(encoder_input(input));
}

torch::Tensor UndercompleteImpl::feature_map(const torch::Tensor& code, at::IntArrayRef input_shape) const {
  if (options.networks().code_size() > 0 || code.dim() == 4) return code;
  const int64_t s = conv_encoder_->options.total_stride(), c = options.networks().channels().back();
  const int64_t h = input_shape[input_shape.size() - 2] / s, w = input_shape[input_shape.size() - 1] / s;
  TORCH_CHECK(code.dim() == 2 && code.size(1) == c * h * w, "undercomplete: a code of ", code.sizes(),
              " is not the feature map [", c, ", ", h, ", ", w, "] of ", input_shape[input_shape.size() - 2], "x",
              input_shape[input_shape.size() - 1], " images");
  return code.view({code.size(0), c, h, w});
}

torch::Tensor UndercompleteImpl::decode_logits(const torch::Tensor& code, at::IntArrayRef input_shape,
                                              const std::vector<torch::Tensor>& features) {
  if (conv()) return conv_decoder_->forward(feature_map(code, input_shape), features);
  return options.tied() ? encoder_->forward_transposed(code, decoder_bias_, options.networks().activation())
                        : decoder_->forward_preactivation(code);
}

std::vector<int64_t> UndercompleteImpl::batch_shape(int64_t n) const {
  std::vector<int64_t> shape{n};
  const auto& input_shape = options.networks().input_shape();
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  return shape;
}

torch::Tensor UndercompleteImpl::decode(const torch::Tensor& code) {
  // A flat code is taken for one of the training size; a feature map [B, C, h, w] for its own.
  const auto shape = batch_shape(code.size(0));
  const torch::Tensor y = activate(decode_logits(code, shape), options.output_activation());
  return conv() ? y : y.view(shape);
}

Output UndercompleteImpl::reconstruct(const torch::Tensor& code, at::IntArrayRef input_shape,
                                      const std::vector<torch::Tensor>& features) {
  Output out;
  out.code = code;
  // The code is a hidden layer too: dropout applies to it on its way to the decoder.
  const torch::Tensor h = options.dropout() > 0 ? torch::dropout(code, options.dropout(), is_training()) : code;
  out.logits = conv() ? decode_logits(h, input_shape, features) : decode_logits(h, input_shape).view(input_shape);
  out.reconstruction = activate(out.logits, options.output_activation());
  return out;
}

Output UndercompleteImpl::reconstruct(const torch::Tensor& code) { return reconstruct(code, batch_shape(code.size(0))); }

Output UndercompleteImpl::forward(const torch::Tensor& input) { return forward_from(encoder_input(input), input.sizes()); }

torch::Tensor UndercompleteImpl::reconstruction_cost(const Output& output, const torch::Tensor& target) {
  return reconstruction_loss(options.loss(), output, target);
}

Losses UndercompleteImpl::loss(const torch::Tensor& target, const Output& output) {
  torch::Tensor recon = reconstruction_cost(output, target);
  return {recon, {{"recon", recon}}};
}

std::vector<std::string> UndercompleteImpl::script_encoder(ScriptModel& script, const std::string& prefix,
                                                          bool preactivation, bool with_mask) const {
  std::vector<std::string> lines;
  if (!conv()) {
    lines.emplace_back("h = x.flatten(1)");
  } else if (takes_noise_level()) {
    if (with_mask) {
      lines.emplace_back("h = torch.cat([x, level.to(x.dtype)], 1)");
    } else {
      lines = script_estimate_noise_sigma("x", "sigma");
      lines.emplace_back("h = torch.cat([x, sigma.view([-1, 1, 1, 1]).expand([x.size(0), 1, x.size(2), x.size(3)])], "
                         "1)");
    }
  } else if (!takes_mask()) {
    lines.emplace_back("h = x");
  } else if (!with_mask) {
    lines.emplace_back("h = torch.cat([x, torch.zeros_like(x[:, :1])], 1)");
  } else {
    if (options.networks().prefill() > 0) lines = script_fill_by_averaging("x", "missing", options.networks().prefill());
    lines.emplace_back("h = torch.cat([x, missing.to(x.dtype)], 1)");
  }
  const auto encoder = conv() ? conv_encoder_->script(script, prefix + "encoder", "h")
                              : encoder_->script(script, prefix + "encoder", "h");
  lines.insert(lines.end(), encoder.begin(), encoder.end());
  if (conv()) lines.emplace_back("h = h.flatten(1)");
  if (binary_code_.binary() && !preactivation) lines.push_back(binary_code_.script("h"));
  return lines;
}

std::vector<std::string> UndercompleteImpl::script_decoder(ScriptModel& script, const std::string& prefix,
                                                          bool after_encoder) const {
  std::vector<std::string> lines;
  if (conv()) {
    if (options.networks().code_size() == 0) {
      const auto f = conv_encoder_->options.feature_shape();
      lines.push_back("if h.dim() == 2:");
      lines.push_back(fmt::format("    h = h.view([h.size(0), {}, {}, {}])", f[0], f[1], f[2]));
    }
    const auto decoder = conv_decoder_->script(script, prefix + "decoder", "h", after_encoder);
    lines.insert(lines.end(), decoder.begin(), decoder.end());
    if (after_encoder && options.networks().residual()) lines.emplace_back("h = h + x");
    lines.push_back("y = " + script_activation(options.output_activation(), "h"));
    return lines;
  }
  if (options.tied()) {
    std::vector<std::string> biases;
    for (std::size_t k = 0; k < decoder_bias_.size(); ++k) {
      biases.push_back(script.tensor(prefix + "decoder_bias" + std::to_string(k), decoder_bias_[k]));
    }
    lines = encoder_->script_transposed(script, prefix + "encoder", "h", biases, options.networks().activation());
  } else {
    lines = decoder_->script(script, prefix + "decoder", "h");
  }
  lines.push_back(fmt::format("y = {}.view([h.size(0), {}])", script_activation(options.output_activation(), "h"),
                              fmt::join(options.networks().input_shape(), ", ")));
  return lines;
}

void UndercompleteImpl::define_script(ScriptModel& script, const std::string& prefix) const {
  const auto encoder = script_encoder(script, prefix);
  const auto decoder = script_decoder(script, prefix);
  if (binary_code_.binary()) {
    auto hash = script_encoder(script, prefix, /*preactivation=*/true);
    hash.push_back("return " + script_binary_code_bits("h"));
    script.method("hash(self, x: Tensor) -> Tensor", hash);
  }
  if (!conv() || options.networks().code_size() > 0) {
    define_autoencoder_methods(script, encoder, decoder);
    return;
  }
  // Fully convolutional: forward keeps the feature map, so that it runs on any image size, and
  // passes the encoder's feature maps to the decoder when it has skips (decode has only h).
  auto whole = [&](std::vector<std::string> lines) {
    lines.pop_back();  // the flatten
    const auto decoder = script_decoder(script, prefix, /*after_encoder=*/true);
    lines.insert(lines.end(), decoder.begin(), decoder.end());
    lines.emplace_back("return y");
    return lines;
  };
  define_autoencoder_methods(script, encoder, decoder, whole(encoder));
  if (takes_mask()) {
    script.method("fill(self, x: Tensor, missing: Tensor) -> Tensor",
                  whole(script_encoder(script, prefix, /*preactivation=*/false, /*with_mask=*/true)));
  }
  if (takes_noise_level()) {
    script.method("denoise(self, x: Tensor, level: Tensor) -> Tensor",
                  whole(script_encoder(script, prefix, /*preactivation=*/false, /*with_mask=*/true)));
  }
}

void UndercompleteImpl::script(ScriptModel& script) const { define_script(script, ""); }

torch::Tensor UndercompleteImpl::decoder_matrix() const {
  if (conv()) return {};
  if (options.tied()) {
    const auto& layers = encoder_->layers();
    return layers.size() == 1 ? layers[0]->weight.t() : torch::Tensor();
  }
  const auto& layers = decoder_->layers();
  return layers.size() == 1 ? layers[0]->weight : torch::Tensor();
}

UndercompleteOptions read_undercomplete_options(OptionReader& r, const DataSpec& data,
                                                const UndercompleteOptions& defaults, const std::string& no_binary_code) {
  UndercompleteOptions o = defaults;
  BackboneOptions net = read_backbone_options(r, data, o.networks(), {/*feature_map_code=*/true, {"tied", "linear"}});
  if (net.conv()) {
    o.tied(false).linear(false);
  } else {
    o.linear(r.boolean("linear", o.linear()));
    o.tied(r.boolean("tied", o.tied()));
  }
  // A binary code: logistic units under noise, or the sign; either needs a dense, non-linear code.
  BinaryCodeOptions binary = o.binary_code();
  binary.kind(parse_binary_code(r.choice("binary_code", to_string(binary.kind()), binary_code_names())));
  const bool is_binary = binary.kind() != BinaryCode::none;
  if (is_binary) {
    r.require(no_binary_code.empty(), "binary_code", no_binary_code);
    r.require(!o.linear(), "binary_code", "a linear autoencoder's code is real-valued (model.linear is true)");
    r.require(!net.conv() || net.code_size() > 0, "binary_code", "needs a dense code (model.code_size > 0)");
  }
  if (binary.kind() == BinaryCode::noise) {
    binary.noise(r.number("code_noise", binary.noise(), greater_than(0)));
  } else {
    r.require(!r.given("code_noise"), "code_noise", "is the noise of binary_code \"noise\"");
  }
  o.binary_code(binary);
  // A linear autoencoder defaults to identity activations and MSE; giving it a non-linearity
  // or BCE is a contradiction and refused.
  const std::string none = "identity";
  const auto& names = activation_names();
  const std::string act = r.choice("activation", o.linear() ? none : to_string(net.activation()), names);
  const std::string code_act_default = binary.kind() == BinaryCode::noise  ? "sigmoid"
                                       : binary.kind() == BinaryCode::sign ? none
                                       : o.linear()                        ? none
                                                                           : to_string(o.code_activation());
  const std::string code_act = r.choice("code_activation", code_act_default, names);
  r.require(binary.kind() != BinaryCode::noise || code_act == "sigmoid", "code_activation",
            "must be sigmoid with binary_code noise (logistic code units)");
  r.require(binary.kind() != BinaryCode::sign || code_act == none, "code_activation",
            "must be identity with binary_code sign (the sign is the code's activation)");
  const std::string out_act =
      r.choice("output_activation", o.linear() ? none : to_string(o.output_activation()), names);
  const std::string loss = r.choice("loss", o.linear() ? "mse" : to_string(o.loss()), {"mse", "bce"});
  for (const auto& [key, value] :
       {std::pair{"activation", act}, {"code_activation", code_act}, {"output_activation", out_act}}) {
    r.require(!o.linear() || value == none, key,
              fmt::format("must be identity when model.linear is true, got \"{}\"", value));
  }
  o.networks(net.activation(parse_activation(act)));
  o.code_activation(parse_activation(code_act));
  o.output_activation(parse_activation(out_act));
  o.loss(parse_reconstruction_loss(loss));
  r.require(o.loss() != ReconstructionLoss::bce || o.output_activation() == Activation::sigmoid, "loss",
            "bce is computed from logits and needs output_activation sigmoid");
  r.require(o.loss() != ReconstructionLoss::bce || (data.min >= 0.0 && data.max <= 1.0), "loss",
            fmt::format("bce needs data in [0, 1], this data spans [{:.3g}, {:.3g}] (data.center?)", data.min,
                        data.max));
  o.input_dropout(r.number("input_dropout", o.input_dropout(), Bound{0, 1, false, true}));
  o.dropout(r.number("dropout", o.dropout(), Bound{0, 1, false, true}));
  return o;
}

Json stack_layer_defaults(const DataSpec& input) {
  const bool unit_range = input.min >= 0.0 && input.max <= 1.0;
  return {{"hidden", Json::array()},
          {"code_activation", "sigmoid"},
          {"output_activation", unit_range ? "sigmoid" : "identity"},
          {"loss", unit_range ? "bce" : "mse"}};
}

void register_undercomplete(Registry& registry) {
  registry.add({"undercomplete",
                "encoder f and decoder g around a narrow code; MLP widths, activations, tied "
                "weights (W_d = W_e^T), linear (PCA-equivalent) mode; loss mse or bce",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  // Defaults: 784-512-32-512-784 on Fashion-MNIST. After the main job's 10 epochs it
                  // reaches a test MSE of 0.0088 against 0.0151 for PCA with 32 components.
                  const auto o = read_undercomplete_options(r, data, UndercompleteOptions(data.shape, 32));
                  r.finish();
                  return [o] { return Undercomplete(o).ptr(); };
                },
                stack_layer_defaults});
  registry.add({"dropout",
                "an undercomplete autoencoder with dropout on the input and on every hidden layer "
                "(Srivastava et al. 2014); off in eval mode",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  // Srivastava et al.'s usual rates: 0.2 on the input, 0.5 on hidden units.
                  const auto o = read_undercomplete_options(
                      r, data, UndercompleteOptions(data.shape, 32).input_dropout(0.2).dropout(0.5));
                  r.finish();
                  return [o] { return Undercomplete(o).ptr(); };
                },
                stack_layer_defaults});
}

}  // namespace torchae
