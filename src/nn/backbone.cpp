#include "torchae/nn/backbone.h"

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <numeric>

namespace torchae {

BackboneKind parse_backbone(const std::string& name) {
  return static_cast<BackboneKind>(index_of_name({"mlp", "conv"}, name, "backbone"));
}

std::string to_string(BackboneKind kind) { return kind == BackboneKind::mlp ? "mlp" : "conv"; }

BackboneOptions::BackboneOptions(std::vector<int64_t> input_shape, int64_t code_size)
    : input_shape_(std::move(input_shape)), code_size_(code_size) {}

int64_t BackboneOptions::input_size() const {
  return std::accumulate(input_shape_.begin(), input_shape_.end(), int64_t{1}, std::multiplies<>());
}

ConvOptions BackboneOptions::conv_options(int64_t dense, double dropout) const {
  return ConvOptions(input_shape_, channels_)
      .kernels(kernels_)
      .strides(strides_)
      .blocks(blocks_)
      .activation(activation_)
      .code_size(dense)
      .dropout(dropout)
      .mask_input(mask_input_)
      .noise_map(noise_map_)
      .prefill(prefill_)
      .skips(skips_)
      .residual(residual_)
      .zero_init(zero_init_)
      .classes(classes_);
}

std::vector<int64_t> BackboneOptions::encoder_widths(int64_t out) const {
  std::vector<int64_t> widths{input_size()};
  widths.insert(widths.end(), hidden_.begin(), hidden_.end());
  widths.push_back(out);
  return widths;
}

std::vector<int64_t> BackboneOptions::decoder_widths(int64_t in) const {
  std::vector<int64_t> widths{in};
  widths.insert(widths.end(), hidden_.rbegin(), hidden_.rend());
  widths.push_back(input_size());
  return widths;
}

BackboneOptions read_backbone_options(OptionReader& r, const DataSpec& data, const BackboneOptions& defaults,
                                      const BackboneRules& rules) {
  BackboneOptions o = defaults;
  o.input_shape(data.shape);
  o.kind(parse_backbone(r.choice("backbone", to_string(o.kind()), {"mlp", "conv"})));
  const bool conv = o.conv();
  o.code_size(r.integer("code_size", o.code_size(), at_least(conv && rules.feature_map_code ? 0 : 1)));
  std::vector<std::string> mlp_only{"hidden"};
  mlp_only.insert(mlp_only.end(), rules.mlp_only.begin(), rules.mlp_only.end());
  for (const std::string& key : conv ? mlp_only : std::vector<std::string>{"channels", "kernels", "strides", "blocks"}) {
    r.require(!r.given(key), key,
              conv ? "is an MLP option; the conv backbone takes model.channels, kernels, strides and blocks"
                   : "is a conv option; set model.backbone to \"conv\" to use it");
  }
  if (!conv) {
    o.hidden(r.integers("hidden", o.hidden(), at_least(1)));
    return o;
  }
  o.channels(r.integers("channels", o.channels(), at_least(1)));
  o.kernels(r.integers("kernels", o.kernels(), at_least(1)));
  o.strides(r.integers("strides", o.strides(), at_least(1)));
  o.blocks(r.integers("blocks", o.blocks(), at_least(0)));
  if (const auto problem = o.conv_options(0).problem()) r.require(false, problem->first, problem->second);
  return o;
}

std::string describe_backbone(const BackboneOptions& options) {
  if (!options.conv()) return fmt::format("hidden=[{}]", fmt::join(options.hidden(), ", "));
  return "backbone=conv, " + describe_layers(options.conv_options(0));
}

}  // namespace torchae
