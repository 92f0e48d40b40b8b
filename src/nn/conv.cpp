#include "torchae/nn/conv.h"

#include <torch/nn/functional/dropout.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace torchae {

namespace {

std::string int_list(const std::vector<int64_t>& values) { return fmt::format("[{}]", fmt::join(values, ", ")); }

torch::Tensor hidden_activation(const torch::Tensor& x, Activation activation, double dropout, bool training) {
  const torch::Tensor h = activate(x, activation);
  return dropout > 0 ? torch::dropout(h, dropout, training) : h;
}

}  // namespace

ConvOptions::ConvOptions(std::vector<int64_t> input_shape, std::vector<int64_t> channels)
    : input_shape_(std::move(input_shape)), channels_(std::move(channels)) {}

int64_t ConvOptions::kernel(std::size_t i) const { return kernels_.size() == 1 ? kernels_[0] : kernels_.at(i); }

int64_t ConvOptions::stride(std::size_t i) const { return strides_.size() == 1 ? strides_[0] : strides_.at(i); }

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
  for (const auto& [key, list] : {std::pair{"kernels", &kernels_}, {"strides", &strides_}}) {
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
  }
  const int64_t s = total_stride();
  if (input_shape_[1] % s != 0 || input_shape_[2] % s != 0) {
    return Problem{"strides", fmt::format("the images are {}x{}, not multiples of the total stride {}",
                                          input_shape_[1], input_shape_[2], s)};
  }
  if (code_size_ < 0) return Problem{"code_size", "must be >= 0"};
  if (dropout_ < 0 || dropout_ >= 1) return Problem{"dropout", "must be in [0, 1)"};
  return std::nullopt;
}

void ConvOptions::check() const {
  if (const auto problem = this->problem()) TORCH_CHECK(false, "conv backbone: ", problem->first, ": ", problem->second);
}

ConvEncoderImpl::ConvEncoderImpl(ConvOptions options_, Activation output_activation_)
    : options(std::move(options_)), output_activation(output_activation_) {
  reset();
}

void ConvEncoderImpl::reset() {
  options.check();
  convs_.clear();
  int64_t in = options.input_shape()[0];
  for (std::size_t i = 0; i < options.channels().size(); ++i) {
    const int64_t k = options.kernel(i);
    convs_.push_back(register_module(
        "conv" + std::to_string(i),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in, options.channels()[i], k)
                              .stride(options.stride(i))
                              .padding((k - 1) / 2))));
    in = options.channels()[i];
  }
  dense_ = nullptr;
  if (options.code_size() > 0) {
    const auto f = options.feature_shape();
    dense_ = register_module("dense", torch::nn::Linear(f[0] * f[1] * f[2], options.code_size()));
  }
}

std::string describe_layers(const ConvOptions& options) {
  return fmt::format("channels={}, kernels={}, strides={}", int_list(options.channels()), int_list(options.kernels()),
                     int_list(options.strides()));
}

void ConvEncoderImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::ConvEncoder(input_shape={}, {}, code_size={})", int_list(options.input_shape()),
                        describe_layers(options), options.code_size());
}

void ConvEncoderImpl::check_input(const torch::Tensor& x) const {
  const auto& shape = options.input_shape();
  TORCH_CHECK(x.dim() == 4 && x.size(1) == shape[0], "conv encoder: expected images [B, ", shape[0],
              ", H, W], got ", x.sizes());
  const int64_t s = options.total_stride();
  TORCH_CHECK(x.size(2) % s == 0 && x.size(3) % s == 0, "conv encoder: image sides ", x.size(2), "x", x.size(3),
              " are not multiples of the total stride ", s, " (pad the image first)");
  TORCH_CHECK(!dense_ || (x.size(2) == shape[1] && x.size(3) == shape[2]),
              "conv encoder: a dense code needs ", shape[1], "x", shape[2], " images, got ", x.size(2), "x",
              x.size(3), " (code_size 0 makes the network fully convolutional)");
}

torch::Tensor ConvEncoderImpl::forward_preactivation(torch::Tensor x) {
  check_input(x);
  for (std::size_t i = 0; i < convs_.size(); ++i) {
    x = convs_[i]->forward(x);
    if (i + 1 < convs_.size() || dense_) x = hidden_activation(x, options.activation(), options.dropout(), is_training());
  }
  return dense_ ? dense_->forward(x.flatten(1)) : x;
}

torch::Tensor ConvEncoderImpl::forward(torch::Tensor x) {
  return activate(forward_preactivation(std::move(x)), output_activation);
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
    lines.push_back(var + " = " + script_activation(last ? output_activation : options.activation(), conv));
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
  const auto& channels = options.channels();
  for (std::size_t j = 0; j < channels.size(); ++j) {
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
}

void ConvDecoderImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::ConvDecoder(code_size={}, {}, output_shape={})", options.code_size(),
                        describe_layers(options), int_list(options.input_shape()));
}

torch::Tensor ConvDecoderImpl::forward(torch::Tensor x) {
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
  for (std::size_t j = 0; j < deconvs_.size(); ++j) {
    x = deconvs_[j]->forward(x);
    if (j + 1 < deconvs_.size()) x = hidden_activation(x, options.activation(), options.dropout(), is_training());
  }
  return x;
}

std::vector<std::string> ConvDecoderImpl::script(ScriptModel& script, const std::string& name,
                                                 const std::string& var) const {
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
    lines.push_back(var + " = " + (j + 1 < deconvs_.size() ? script_activation(options.activation(), deconv) : deconv));
  }
  return lines;
}

}  // namespace torchae
