#include "torchae/nn/conv.h"

#include "torchae/core/parallel.h"

#include <torch/autograd.h>
#include <torch/nn/functional/dropout.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <vector>

namespace torchae {

namespace {

std::string int_list(const std::vector<int64_t>& values) { return fmt::format("[{}]", fmt::join(values, ", ")); }

// Feature maps on the CPU are kept channels-last (NHWC): oneDNN's convolutions take them without
// reordering them, forward and backward (README, "Training speed").
torch::Tensor channels_last(const torch::Tensor& x) {
  return x.device().is_cpu() && x.dim() == 4 ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x;
}

torch::Tensor hidden_activation(const torch::Tensor& x, Activation activation, double dropout, bool training) {
  const torch::Tensor h = activate(x, activation);
  return dropout > 0 ? torch::dropout(h, dropout, training) : h;
}

// A transposed convolution is the input gradient of the convolution it mirrors, and that
// convolution's weight gradient is its own; forward and backward are therefore both kernels of
// the mirror convolution (oneDNN's on the CPU).
class MirroredConvTranspose : public torch::autograd::Function<MirroredConvTranspose> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, int64_t stride, int64_t padding, int64_t height,
                               int64_t width) {
    const std::vector<int64_t> shape{x.size(0), weight.size(1), height, width};
    const torch::Tensor y = std::get<0>(at::convolution_backward(
        x, torch::empty(shape, x.options().memory_format(x.suggest_memory_format())), weight, c10::nullopt,
        {stride, stride}, {padding, padding}, {1, 1}, /*transposed=*/false, {0, 0}, /*groups=*/1, {true, false, false}));
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const int64_t stride = ctx->saved_data["stride"].toInt(), padding = ctx->saved_data["padding"].toInt();
    const torch::Tensor grad = grads[0].contiguous(x.suggest_memory_format());
    torch::Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(0)) grad_x = torch::conv2d(grad, weight, {}, stride, padding);
    if (ctx->needs_input_grad(1)) {
      grad_weight = std::get<1>(at::convolution_backward(x, grad, weight, c10::nullopt, {stride, stride},
                                                         {padding, padding}, {1, 1}, false, {0, 0}, 1,
                                                         {false, true, false}));
    }
    return {grad_x, grad_weight, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor conv_transpose2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                               int64_t stride, int64_t padding, int64_t output_padding) {
  // Layers out to a few channels (an image's) ran as fast or faster on LibTorch's own path.
  constexpr int64_t kMirroredFromChannels = 16;
  const bool candidate = x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
                         weight.scalar_type() == torch::kFloat && x.dim() == 4 && weight.dim() == 4 &&
                         (weight.size(1) >= kMirroredFromChannels || x.is_contiguous(torch::MemoryFormat::ChannelsLast)) &&
                         weight.size(2) == weight.size(3) &&
                         output_padding < stride;
  if (!candidate) return torch::conv_transpose2d(x, weight, bias, stride, padding, output_padding);
  const int64_t k = weight.size(2);
  const int64_t height = (x.size(2) - 1) * stride - 2 * padding + k + output_padding;
  const int64_t width = (x.size(3) - 1) * stride - 2 * padding + k + output_padding;
  // The mirror convolution must map the output's size back to the input's exactly.
  if ((height + 2 * padding - k) / stride + 1 != x.size(2) || (width + 2 * padding - k) / stride + 1 != x.size(3)) {
    return torch::conv_transpose2d(x, weight, bias, stride, padding, output_padding);
  }
  // The bias is added outside, where autograd sums its gradient.
  torch::Tensor y =
      MirroredConvTranspose::apply(x.contiguous(x.suggest_memory_format()), weight, stride, padding, height, width);
  return bias.defined() ? y.add_(bias.view({1, -1, 1, 1})) : y;
}

namespace {

// fill_by_averaging on contiguous CPU float images, over the missing pixels alone: a list of
// those not yet reached, per image, rather than two poolings of every pixel a ring (LibTorch's
// avg_pool2d took 28% of an inpainting training step that way).
torch::Tensor fill_missing_pixels(const torch::Tensor& images, const torch::Tensor& missing, int64_t steps) {
  torch::Tensor x = images.contiguous().clone();
  const torch::Tensor holes = missing.ne(0).contiguous();
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3), plane = height * width;
  float* const data = x.data_ptr<float>();
  const bool* const hole = holes.data_ptr<bool>();
  parallel_for(0, x.size(0), 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> known(static_cast<std::size_t>(plane));
    std::vector<int64_t> todo, later, reached;
    std::vector<float> values, sum(static_cast<std::size_t>(channels));
    for (int64_t b = begin; b < end; ++b) {
      float* const image = data + b * channels * plane;
      const bool* const h = hole + b * plane;
      todo.clear();
      for (int64_t p = 0; p < plane; ++p) {
        known[static_cast<std::size_t>(p)] = h[p] ? 0 : 1;
        if (!h[p]) continue;
        todo.push_back(p);
        for (int64_t c = 0; c < channels; ++c) image[c * plane + p] = 0.0F;
      }
      for (int64_t step = 0; step < steps && !todo.empty(); ++step) {
        later.clear();
        reached.clear();
        values.clear();
        for (const int64_t p : todo) {
          const int64_t i = p / width, j = p % width;
          int count = 0;
          std::fill(sum.begin(), sum.end(), 0.0F);
          for (int64_t ni = std::max<int64_t>(i - 1, 0); ni <= std::min(i + 1, height - 1); ++ni) {
            for (int64_t nj = std::max<int64_t>(j - 1, 0); nj <= std::min(j + 1, width - 1); ++nj) {
              const int64_t q = ni * width + nj;
              if (!known[static_cast<std::size_t>(q)]) continue;
              ++count;
              for (int64_t c = 0; c < channels; ++c) sum[static_cast<std::size_t>(c)] += image[c * plane + q];
            }
          }
          if (count == 0) {
            later.push_back(p);
            continue;
          }
          reached.push_back(p);
          for (const float s : sum) values.push_back(s / static_cast<float>(count));
        }
        // The ring is filled from the pixels known before it, then becomes known itself.
        for (std::size_t k = 0; k < reached.size(); ++k) {
          const int64_t p = reached[k];
          known[static_cast<std::size_t>(p)] = 1;
          const float* value = values.data() + k * static_cast<std::size_t>(channels);
          for (int64_t c = 0; c < channels; ++c) image[c * plane + p] = value[c];
        }
        todo.swap(later);
      }
    }
  });
  return x;
}

}  // namespace

torch::Tensor fill_by_averaging(torch::Tensor x, const torch::Tensor& missing, int64_t steps) {
  torch::NoGradGuard no_grad;
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.dim() == 4 && missing.dim() == 4 &&
      missing.size(0) == x.size(0) && missing.size(1) == 1 && missing.size(2) == x.size(2) &&
      missing.size(3) == x.size(3) && missing.device().is_cpu()) {
    return fill_missing_pixels(x, missing, steps);
  }
  // Elsewhere (CUDA, double), two poolings a ring.
  torch::Tensor known = 1.0 - missing.to(x.dtype());
  x = x * known;
  for (int64_t i = 0; i < steps; ++i) {
    // Averages over 3x3 (padding counted): their ratio is the mean of the known neighbours.
    const torch::Tensor count = torch::avg_pool2d(known, 3, 1, 1);
    const torch::Tensor sum = torch::avg_pool2d(x, 3, 1, 1);
    const torch::Tensor reached = count > 0;
    x = torch::where(reached & (known == 0), sum / count.clamp_min(1e-12), x);
    known = reached.to(x.dtype());
  }
  return x;
}

std::vector<std::string> script_fill_by_averaging(const std::string& var, const std::string& missing, int64_t steps) {
  return {fmt::format("known = 1.0 - {}.to({}.dtype)", missing, var),
          fmt::format("{0} = {0} * known", var),
          fmt::format("for _ in range({}):", steps),
          "    count = torch.avg_pool2d(known, [3, 3], [1, 1], [1, 1])",
          fmt::format("    total = torch.avg_pool2d({}, [3, 3], [1, 1], [1, 1])", var),
          "    reached = count > 0",
          fmt::format("    {0} = torch.where(reached & (known == 0), total / count.clamp_min(1e-12), {0})", var),
          fmt::format("    known = reached.to({}.dtype)", var)};
}

ConvOptions::ConvOptions(std::vector<int64_t> input_shape, std::vector<int64_t> channels)
    : input_shape_(std::move(input_shape)), channels_(std::move(channels)) {}

int64_t ConvOptions::kernel(std::size_t i) const { return kernels_.size() == 1 ? kernels_[0] : kernels_.at(i); }

int64_t ConvOptions::stride(std::size_t i) const { return strides_.size() == 1 ? strides_[0] : strides_.at(i); }

int64_t ConvOptions::block_count(std::size_t i) const { return blocks_.size() == 1 ? blocks_[0] : blocks_.at(i); }

int64_t ConvOptions::total_stride() const {
  int64_t total = 1;
  for (std::size_t i = 0; i < channels_.size(); ++i) total *= stride(i);
  return total;
}

std::vector<int64_t> ConvOptions::feature_shape() const {
  const int64_t s = total_stride();
  return {channels_.back(), input_shape_[1] / s, input_shape_[2] / s};
}

std::optional<std::pair<std::string, std::string>> ConvOptions::problem() const {
  using Problem = std::pair<std::string, std::string>;
  if (input_shape_.size() != 3 || input_shape_[0] < 1) {
    return Problem{"backbone", fmt::format("conv needs images {{C, H, W}}, this data has examples of shape {}",
                                           int_list(input_shape_))};
  }
  if (channels_.empty()) return Problem{"channels", "must not be empty"};
  for (int64_t c : channels_) {
    if (c < 1) return Problem{"channels", fmt::format("must be positive, got {}", c)};
  }
  const std::size_t n = channels_.size();
  for (const auto& [key, list] : {std::pair{"kernels", &kernels_}, {"strides", &strides_}, {"blocks", &blocks_}}) {
    if (list->size() != 1 && list->size() != n) {
      return Problem{key, fmt::format("needs one entry, or one per layer of channels ({}), got {}", n, list->size())};
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (kernel(i) < 1 || kernel(i) % 2 == 0) {
      return Problem{"kernels", fmt::format("must be odd (padding (k-1)/2 keeps sides), got {}", kernel(i))};
    }
    if (stride(i) < 1 || stride(i) > kernel(i)) {
      return Problem{"strides", fmt::format("{} is not in [1, its kernel {}]", stride(i), kernel(i))};
    }
    if (block_count(i) < 0) return Problem{"blocks", fmt::format("must be >= 0, got {}", block_count(i))};
  }
  const int64_t s = total_stride();
  if (input_shape_[1] % s != 0 || input_shape_[2] % s != 0) {
    return Problem{"strides", fmt::format("the images are {}x{}, not multiples of the total stride {}",
                                          input_shape_[1], input_shape_[2], s)};
  }
  if (code_size_ < 0) return Problem{"code_size", "must be >= 0"};
  if (prefill_ < 0 || (prefill_ > 0 && !mask_input_)) {
    return Problem{"prefill", "fills the holes the mask marks: needs mask_input, and >= 0"};
  }
  if (noise_map_ && mask_input_) {
    return Problem{"noise_map", "is the encoder's one extra channel, as the mask is: not with mask_input"};
  }
  if (skips_ && code_size_ > 0) {
    return Problem{"skips", "join the encoder's feature maps to the decoder's: a fully convolutional network only "
                            "(code_size 0)"};
  }
  if (dropout_ < 0 || dropout_ >= 1) return Problem{"dropout", "must be in [0, 1)"};
  if (classes_ < 0) return Problem{"classes", "must be >= 0"};
  if (zero_init_ && !residual_) {
    return Problem{"zero_init", "starts a residual network's correction at zero: needs residual"};
  }
  if (residual_ && (code_size_ > 0 || classes_ > 0)) {
    return Problem{"residual", "adds the decoder's output to the input image: a fully convolutional network "
                               "(code_size 0) that outputs the image only"};
  }
  return std::nullopt;
}

void ConvOptions::check() const {
  if (const auto problem = this->problem()) TORCH_CHECK(false, "conv backbone: ", problem->first, ": ", problem->second);
}

ConvEncoderImpl::ConvEncoderImpl(ConvOptions options_, Activation output_activation_)
    : options(std::move(options_)), output_activation(output_activation_) {
  reset();
}

bool is_residual_block_parameter(const std::string& name) {
  // A segment "block<layer>_<index>(a|b)", as `ConvEncoderImpl::reset` names them, after a '.' (a
  // parameter's name) or a '_' (its name in an archive).
  for (std::size_t at = name.find("block"); at != std::string::npos; at = name.find("block", at + 1)) {
    const std::size_t digit = at + 5;
    if (at > 0 && (name[at - 1] == '.' || name[at - 1] == '_') && digit < name.size() &&
        std::isdigit(static_cast<unsigned char>(name[digit]))) {
      return true;
    }
  }
  return false;
}

void ConvEncoderImpl::reset() {
  options.check();
  convs_.clear();
  blocks_.clear();
  int64_t in = input_channels();
  for (std::size_t i = 0; i < options.channels().size(); ++i) {
    const int64_t k = options.kernel(i), c = options.channels()[i];
    convs_.push_back(register_module(
        "conv" + std::to_string(i),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in, c, k).stride(options.stride(i)).padding((k - 1) / 2))));
    auto& blocks = blocks_.emplace_back();
    for (int64_t b = 0; b < options.block_count(i); ++b) {
      for (const char* half : {"a", "b"}) {
        blocks.push_back(register_module(fmt::format("block{}_{}{}", i, b, half),
                                         torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 3).padding(1))));
      }
      // The block's second convolution starts at zero: the block starts as the identity.
      torch::NoGradGuard no_grad;
      blocks.back()->weight.zero_();
      blocks.back()->bias.zero_();
    }
    in = c;
  }
  dense_ = nullptr;
  if (options.code_size() > 0) {
    const auto f = options.feature_shape();
    dense_ = register_module("dense", torch::nn::Linear(f[0] * f[1] * f[2], options.code_size()));
  }
}

std::string describe_layers(const ConvOptions& options) {
  const auto& blocks = options.blocks();
  const bool any_blocks = std::any_of(blocks.begin(), blocks.end(), [](int64_t b) { return b > 0; });
  return fmt::format("channels={}, kernels={}, strides={}{}{}{}{}", int_list(options.channels()),
                     int_list(options.kernels()), int_list(options.strides()),
                     any_blocks ? ", blocks=" + int_list(blocks) : "",
                     options.mask_input() ? fmt::format(", mask_input=true, prefill={}", options.prefill())
                     : options.noise_map() ? ", noise_map=true"
                                           : "",
                     options.skips() ? ", skips=true" : "", options.residual() ? ", residual=true" : "");
}

void ConvEncoderImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::ConvEncoder(input_shape={}, {}, code_size={})", int_list(options.input_shape()),
                        describe_layers(options), options.code_size());
}

int64_t ConvEncoderImpl::input_channels() const {
  return options.input_shape()[0] + (options.mask_input() || options.noise_map() ? 1 : 0);
}

void ConvEncoderImpl::check_input(const torch::Tensor& x) const {
  const auto& shape = options.input_shape();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == input_channels(), "conv encoder: expected images [B, ", input_channels(),
              ", H, W]",
              options.mask_input()  ? " (the image's channels, then the mask)"
              : options.noise_map() ? " (the image's channels, then the noise level map)"
                                    : "",
              ", got ", x.sizes());
  const int64_t s = options.total_stride();
  TORCH_CHECK(x.size(2) % s == 0 && x.size(3) % s == 0, "conv encoder: image sides ", x.size(2), "x", x.size(3),
              " are not multiples of the total stride ", s, " (pad the image first)");
  TORCH_CHECK(!dense_ || (x.size(2) == shape[1] && x.size(3) == shape[2]),
              "conv encoder: a dense code needs ", shape[1], "x", shape[2], " images, got ", x.size(2), "x",
              x.size(3), " (code_size 0 makes the network fully convolutional)");
}

torch::Tensor ConvEncoderImpl::forward_preactivation(torch::Tensor x, std::vector<torch::Tensor>* features) {
  check_input(x);
  if (features) features->clear();
  x = channels_last(x);
  for (std::size_t i = 0; i < convs_.size(); ++i) {
    x = convs_[i]->forward(x);
    if (i + 1 < convs_.size() || dense_) x = hidden_activation(x, options.activation(), options.dropout(), is_training());
    x = apply_blocks(i, std::move(x));
    if (features && i + 1 < convs_.size()) features->push_back(x);
  }
  return dense_ ? dense_->forward(x.flatten(1)) : x;
}

torch::Tensor ConvEncoderImpl::apply_blocks(std::size_t i, torch::Tensor x) {
  auto& blocks = blocks_[i];
  for (std::size_t b = 0; b < blocks.size(); b += 2) {
    x = x + blocks[b + 1]->forward(activate(blocks[b]->forward(x), options.activation()));
  }
  return x;
}

torch::Tensor ConvEncoderImpl::forward(torch::Tensor x, std::vector<torch::Tensor>* features) {
  return activate(forward_preactivation(std::move(x), features), output_activation);
}

int64_t ConvEncoderImpl::code_size() const {
  if (options.code_size() > 0) return options.code_size();
  const auto f = options.feature_shape();
  return f[0] * f[1] * f[2];
}

std::vector<std::string> ConvEncoderImpl::script(ScriptModel& script, const std::string& name,
                                                 const std::string& var) const {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < convs_.size(); ++i) {
    const std::string prefix = name + ".conv" + std::to_string(i);
    const int64_t s = options.stride(i), p = (options.kernel(i) - 1) / 2;
    const std::string conv = fmt::format("torch.conv2d({}, {}, {}, [{}, {}], [{}, {}])", var,
                                         script.tensor(prefix + ".weight", convs_[i]->weight),
                                         script.tensor(prefix + ".bias", convs_[i]->bias), s, s, p, p);
    const bool last = i + 1 == convs_.size() && !dense_;
    const auto& blocks = blocks_[i];
    // The last layer's blocks come before its output activation.
    lines.push_back(var + " = " +
                    (last && !blocks.empty() ? conv
                                             : script_activation(last ? output_activation : options.activation(), conv)));
    for (std::size_t b = 0; b < blocks.size(); b += 2) {
      const std::string first = fmt::format("{}.block{}_{}a", name, i, b / 2);
      const std::string second = fmt::format("{}.block{}_{}b", name, i, b / 2);
      const std::string inner = fmt::format("torch.conv2d({}, {}, {}, [1, 1], [1, 1])", var,
                                            script.tensor(first + ".weight", blocks[b]->weight),
                                            script.tensor(first + ".bias", blocks[b]->bias));
      lines.push_back("block_hidden = " + script_activation(options.activation(), inner));
      lines.push_back(fmt::format("{0} = {0} + torch.conv2d(block_hidden, {1}, {2}, [1, 1], [1, 1])", var,
                                  script.tensor(second + ".weight", blocks[b + 1]->weight),
                                  script.tensor(second + ".bias", blocks[b + 1]->bias)));
    }
    if (last && !blocks.empty()) lines.push_back(var + " = " + script_activation(output_activation, var));
    if (options.skips() && i + 1 < convs_.size()) lines.push_back(fmt::format("skip{} = {}", i, var));
  }
  if (dense_) {
    lines.push_back(fmt::format("{} = {}", var,
                                script_activation(output_activation,
                                                  fmt::format("torch.linear({}.flatten(1), {}, {})", var,
                                                              script.tensor(name + ".dense.weight", dense_->weight),
                                                              script.tensor(name + ".dense.bias", dense_->bias)))));
  }
  return lines;
}

ConvDecoderImpl::ConvDecoderImpl(ConvOptions options_) : options(std::move(options_)) { reset(); }

void ConvDecoderImpl::reset() {
  options.check();
  dense_ = nullptr;
  if (options.code_size() > 0) {
    const auto f = options.feature_shape();
    dense_ = register_module("dense", torch::nn::Linear(options.code_size(), f[0] * f[1] * f[2]));
  }
  deconvs_.clear();
  head_ = nullptr;
  const auto& channels = options.channels();
  // With class scores, the mirror of the first convolution is a 1x1 convolution to them.
  const std::size_t mirrored = options.classes() > 0 ? channels.size() - 1 : channels.size();
  for (std::size_t j = 0; j < mirrored; ++j) {
    // Decoder layer j undoes encoder layer i = n-1-j: same kernel and stride; output_padding
    // s-1 makes a side n/s come back as exactly n.
    const std::size_t i = channels.size() - 1 - j;
    const int64_t k = options.kernel(i), s = options.stride(i);
    const int64_t out = i == 0 ? options.input_shape()[0] : channels[i - 1];
    deconvs_.push_back(register_module(
        "deconv" + std::to_string(j),
        torch::nn::ConvTranspose2d(
            torch::nn::ConvTranspose2dOptions(channels[i], out, k).stride(s).padding((k - 1) / 2).output_padding(s - 1))));
  }
  if (options.classes() > 0) {
    head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels[0], options.classes(), 1)));
  }
  if (options.zero_init()) {
    torch::NoGradGuard no_grad;
    deconvs_.back()->weight.zero_();
    deconvs_.back()->bias.zero_();
  }
}

void ConvDecoderImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::ConvDecoder(code_size={}, {}, {})", options.code_size(), describe_layers(options),
                        options.classes() > 0 ? fmt::format("classes={}", options.classes())
                                              : "output_shape=" + int_list(options.input_shape()));
}

torch::Tensor ConvDecoderImpl::forward(torch::Tensor x, const std::vector<torch::Tensor>& features) {
  const auto& channels = options.channels();
  TORCH_CHECK(features.empty() || (options.skips() && features.size() + 1 == channels.size()),
              "conv decoder: ", features.size(), " encoder feature maps given, the skips take ",
              options.skips() ? channels.size() - 1 : 0);
  if (dense_) {
    TORCH_CHECK(x.dim() == 2 && x.size(1) == options.code_size(), "conv decoder: expected codes [B, ",
                options.code_size(), "], got ", x.sizes());
    const auto f = options.feature_shape();
    x = hidden_activation(dense_->forward(x), options.activation(), options.dropout(), is_training())
            .view({x.size(0), f[0], f[1], f[2]});
  } else {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.channels().back(), "conv decoder: expected feature maps [B, ",
                options.channels().back(), ", h, w], got ", x.sizes());
  }
  x = channels_last(x);
  for (std::size_t j = 0; j < deconvs_.size(); ++j) {
    const std::size_t i = channels.size() - 1 - j;
    const int64_t s = options.stride(i);
    x = conv_transpose2d(x, deconvs_[j]->weight, deconvs_[j]->bias, s, (options.kernel(i) - 1) / 2, s - 1);
    if (j + 1 == deconvs_.size() && !head_) break;
    // Decoder layer j's output mirrors encoder layer n-2-j's: same channels and size.
    if (!features.empty()) x = x + features[channels.size() - 2 - j];
    x = hidden_activation(x, options.activation(), options.dropout(), is_training());
  }
  return head_ ? head_->forward(x) : x;
}

std::vector<std::string> ConvDecoderImpl::script(ScriptModel& script, const std::string& name,
                                                 const std::string& var, bool with_skips) const {
  std::vector<std::string> lines;
  if (dense_) {
    const auto f = options.feature_shape();
    const std::string dense = fmt::format("torch.linear({}, {}, {})", var,
                                          script.tensor(name + ".dense.weight", dense_->weight),
                                          script.tensor(name + ".dense.bias", dense_->bias));
    lines.push_back(fmt::format("{} = {}.view([{}.size(0), {}, {}, {}])", var,
                                script_activation(options.activation(), dense), var, f[0], f[1], f[2]));
  }
  const auto& channels = options.channels();
  for (std::size_t j = 0; j < deconvs_.size(); ++j) {
    const std::size_t i = channels.size() - 1 - j;
    const int64_t k = options.kernel(i), s = options.stride(i), p = (k - 1) / 2;
    const std::string prefix = name + ".deconv" + std::to_string(j);
    const std::string deconv = fmt::format("torch.conv_transpose2d({}, {}, {}, [{}, {}], [{}, {}], [{}, {}])", var,
                                           script.tensor(prefix + ".weight", deconvs_[j]->weight),
                                           script.tensor(prefix + ".bias", deconvs_[j]->bias), s, s, p, p, s - 1,
                                           s - 1);
    if (j + 1 == deconvs_.size() && !head_) {
      lines.push_back(var + " = " + deconv);
    } else if (with_skips && options.skips()) {
      lines.push_back(var + " = " + script_activation(options.activation(), fmt::format("{} + skip{}", deconv, i - 1)));
    } else {
      lines.push_back(var + " = " + script_activation(options.activation(), deconv));
    }
  }
  if (head_) {
    lines.push_back(fmt::format("{} = torch.conv2d({}, {}, {})", var, var, script.tensor(name + ".head.weight", head_->weight),
                                script.tensor(name + ".head.bias", head_->bias)));
  }
  return lines;
}

}  // namespace torchae
