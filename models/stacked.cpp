#include "torchae/models/stacked.h"

#include "families.h"
#include "torchae/core/error.h"
#include "torchae/models/registry.h"
#include "torchae/nn/mlp.h"

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <limits>

namespace torchae {

namespace {

constexpr double kUnbounded = std::numeric_limits<double>::infinity();

// Builds one layer's shallow autoencoder from its options; `prefix` names it in messages.
BuiltModel build_layer(const StackedLayer& layer, const DataSpec& spec, const std::string& prefix) {
  Json section = layer.options;
  section["code_size"] = layer.units;
  OptionReader reader(section, prefix);
  BuiltModel built{Registry::builtin().find(layer.family).build(reader, spec), reader.resolved()};
  built.resolved.erase("code_size");
  return built;
}

// The data spec of a layer's codes, from its code activation: what the layer above sees.
DataSpec code_spec(const StackedLayer& layer) {
  DataSpec spec;
  spec.shape = {layer.units};
  const std::string activation = layer.options.value("code_activation", "identity");
  if (activation == "sigmoid") {
    spec.min = 0.0, spec.max = 1.0;
  } else if (activation == "tanh") {
    spec.min = -1.0, spec.max = 1.0;
  } else if (activation == "relu") {
    spec.min = 0.0, spec.max = kUnbounded;
  } else {
    spec.min = -kUnbounded, spec.max = kUnbounded;
  }
  spec.peak = std::isfinite(spec.max - spec.min) ? spec.max - spec.min : 1.0;
  return spec;
}

// Reads model.layers: each entry's own keys (units, family, epochs, lr), then the rest as the
// options of its family, with the defaults of a classic stack: one affine layer each way,
// sigmoid codes (ksparse keeps its linear ones), and a sigmoid output with cross-entropy when
// the layer's input lies in [0, 1], a linear one with squared error otherwise.
std::vector<StackedLayer> read_layers(OptionReader& r, const DataSpec& data) {
  const Json* given = r.raw("layers");
  r.require(given && given->is_array() && !given->empty(), "layers",
            "expected a non-empty list of layers, e.g. [{\"units\": 1000, \"family\": \"denoising\"}]");
  std::vector<StackedLayer> layers;
  Json resolved = Json::array();
  DataSpec spec = data;
  for (std::size_t i = 0; i < given->size(); ++i) {
    const std::string prefix = fmt::format("{}[{}]", r.name("layers"), i);
    const Json& item = (*given)[i];
    if (!item.is_object()) throw Error(fmt::format("config: {}: expected an object, got {}", prefix, item.dump()));
    Json own = Json::object(), options = Json::object();
    for (const auto& [key, value] : item.items()) {
      (key == "units" || key == "family" || key == "epochs" || key == "lr" ? own : options)[key] = value;
    }
    OptionReader layer_reader(own, prefix);
    layer_reader.require(layer_reader.given("units"), "units", "required: the width of the layer's code");
    if (options.contains("backbone") && options["backbone"] != "mlp") {
      throw Error(fmt::format("config: {}.backbone: a stack's layers are MLP layers", prefix));
    }
    if (options.contains("code_size")) {
      throw Error(fmt::format("config: {}.code_size: a layer's code width is its units", prefix));
    }
    StackedLayer layer;
    layer.units = layer_reader.integer("units", 1, at_least(1));
    layer.family = layer_reader.choice("family", layer.family, stackable_families());
    layer.epochs = layer_reader.integer("epochs", 0, at_least(0));
    layer.lr = layer_reader.number("lr", 0.0, at_least(0));
    layer_reader.finish();

    const bool unit_range = spec.min >= 0.0 && spec.max <= 1.0;
    const Json defaults = {{"hidden", Json::array()},
                           {"output_activation", unit_range ? "sigmoid" : "identity"},
                           {"loss", unit_range ? "bce" : "mse"}};
    for (const auto& [key, value] : defaults.items()) {
      if (!options.contains(key)) options[key] = value;
    }
    if (layer.family != "ksparse" && !options.contains("code_activation")) options["code_activation"] = "sigmoid";
    layer.options = options;
    layer.options = build_layer(layer, spec, prefix).resolved;

    Json entry = {{"units", layer.units}, {"family", layer.family}, {"epochs", layer.epochs}, {"lr", layer.lr}};
    entry.update(layer.options);
    resolved.push_back(entry);
    spec = code_spec(layer);
    layers.push_back(std::move(layer));
  }
  r.resolve("layers", resolved);
  return layers;
}

}  // namespace

const std::vector<std::string>& stackable_families() {
  static const std::vector<std::string> names{"undercomplete", "dropout", "sparse", "ksparse", "denoising",
                                              "contractive"};
  return names;
}

StackedOptions::StackedOptions(DataSpec data, std::vector<StackedLayer> layers)
    : data_(std::move(data)), layers_(std::move(layers)) {}

StackedImpl::StackedImpl(StackedOptions options_) : options(std::move(options_)) { reset(); }

DataSpec StackedImpl::layer_spec(std::size_t l) const {
  return l == 0 ? options.data() : code_spec(options.layers().at(l - 1));
}

void StackedImpl::reset() {
  TORCH_CHECK(!options.layers().empty(), "stacked: no layers");
  TORCH_CHECK(options.classify_dropout() >= 0 && options.classify_dropout() < 1,
              "stacked: classify_dropout must be in [0, 1)");
  layers_.clear();
  for (std::size_t l = 0; l < options.layers().size(); ++l) {
    const StackedLayer& layer = options.layers()[l];
    auto model = build_layer(layer, layer_spec(l), fmt::format("model.layers[{}]", l)).model;
    register_module("layer" + std::to_string(l + 1), model->module().shared_from_this());
    layers_.push_back(std::move(model));
  }
  loss_ = parse_reconstruction_loss(options.layers().front().options.value("loss", "bce"));
  head_ = nullptr;
  if (options.classify()) {
    TORCH_CHECK(options.classes() >= 2, "stacked: a classifier needs at least 2 classes");
    head_ = register_module("head", torch::nn::Linear(code_size(), options.classes()));
  }
}

void StackedImpl::pretty_print(std::ostream& stream) const {
  std::vector<std::string> layers;
  for (const auto& layer : options.layers()) layers.push_back(fmt::format("{} {}", layer.units, layer.family));
  stream << fmt::format("torchae::Stacked(layers=[{}], classes={})", fmt::join(layers, ", "), classes());
}

torch::Tensor StackedImpl::encode(const torch::Tensor& input) {
  torch::Tensor h = input;
  for (const auto& layer : layers_) h = layer->encode(h);
  return h;
}

torch::Tensor StackedImpl::decode(const torch::Tensor& code) { return reconstruct(code).reconstruction; }

Output StackedImpl::reconstruct(const torch::Tensor& code) {
  torch::Tensor h = code;
  for (std::size_t l = layers_.size() - 1; l > 0; --l) h = layers_[l]->decode(h);
  Output out = layers_.front()->reconstruct(h);
  out.code = code;
  return out;
}

torch::Tensor StackedImpl::encode_for_head(const torch::Tensor& input) {
  const double p = is_training() ? options.classify_dropout() : 0.0;
  torch::Tensor h = input;
  for (const auto& layer : layers_) {
    h = layer->encode(h);
    if (p > 0) h = torch::dropout(h, p, /*train=*/true);
  }
  return h;
}

torch::Tensor StackedImpl::classify(const torch::Tensor& input) {
  TORCH_CHECK(head_, "stacked: this model has no classifier head (model.classify is false)");
  return head_->forward(encode_for_head(input));
}

Output StackedImpl::forward(const torch::Tensor& input) {
  if (phase_ == StackedPhase::classify) {
    TORCH_CHECK(head_, "stacked: this model has no classifier head (model.classify is false)");
    Output out;
    out.code = encode_for_head(input);
    out.scores = head_->forward(out.code);
    return out;
  }
  return reconstruct(encode(input));
}

Losses StackedImpl::loss(const torch::Tensor& target, const torch::Tensor& /*input*/, const Output& output) {
  torch::Tensor recon = reconstruction_loss(loss_, output, target);
  return {recon, {{"recon", recon}}};
}

Losses StackedImpl::supervised_loss(const Output& output, const torch::Tensor& labels) {
  torch::Tensor ce = torch::nn::functional::cross_entropy(output.scores, labels);
  torch::Tensor accuracy = output.scores.detach().argmax(1).eq(labels).to(torch::kFloat).mean();
  return {ce, {{"ce", ce}, {"accuracy", accuracy}}};
}

void StackedImpl::script(ScriptModel& script) const {
  std::vector<std::string> encoder{"h = x"}, decoder{"y = h"};
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::string scope = fmt::format("layer{}_", l + 1);
    script.set_scope(scope);
    layers_[l]->script(script);
    encoder.push_back(fmt::format("h = self.{}encode(h)", scope));
    decoder.insert(decoder.begin() + 1, fmt::format("y = self.{}decode(y)", scope));
  }
  script.set_scope("");
  define_autoencoder_methods(script, encoder, decoder);
  if (head_) {
    script.method("classify(self, x: Tensor) -> Tensor",
                  {fmt::format("return torch.linear(self.encode(x), {}, {})", script.tensor("head.weight", head_->weight),
                               script.tensor("head.bias", head_->bias))});
  }
}

void register_stacked(Registry& registry) {
  registry.add(
      {"stacked",
       "a deep autoencoder pretrained greedily, layer by layer, each layer a shallow autoencoder of its own "
       "family (layers: [{units, family, epochs, lr, family options...}]), then fine-tuned end to end "
       "(finetune) and optionally through a softmax head on labels (classify); epochs/lr 0 take train's",
       [](OptionReader& r, const DataSpec& data) -> std::shared_ptr<Autoencoder> {
         StackedOptions o(data, read_layers(r, data));
         o.pretrain(r.boolean("pretrain", o.pretrain()));
         o.finetune(r.boolean("finetune", o.finetune()));
         o.classify(r.boolean("classify", o.classify()));
         r.require(o.pretrain() || o.finetune() || o.classify(), "pretrain",
                   "every phase is off (pretrain, finetune, classify): nothing would be trained");
         o.finetune_epochs(r.integer("finetune_epochs", o.finetune_epochs(), at_least(0)));
         o.finetune_lr(r.number("finetune_lr", o.finetune_lr(), at_least(0)));
         o.classify_epochs(r.integer("classify_epochs", o.classify_epochs(), at_least(0)));
         o.classify_lr(r.number("classify_lr", o.classify_lr(), at_least(0)));
         o.classes(r.integer("classes", o.classes(), at_least(2)));
         o.classify_dropout(r.number("classify_dropout", o.classify_dropout(), Bound{0, 1, false, true}));
         r.finish();
         return Stacked(o).ptr();
       }});
}

}  // namespace torchae
