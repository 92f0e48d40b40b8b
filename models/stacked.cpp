#include "torchae/models/stacked.h"

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

// The data spec of a layer's codes, from its resolved code activation (or, for a Boltzmann
// machine, its hidden units: Bernoulli means are sigmoids, Gaussian ones affine): what the layer
// above sees.
DataSpec code_spec(int64_t units, const Json& resolved) {
  DataSpec spec;
  spec.shape = {units};
  const std::string hidden_units = resolved.value("hidden_units", "");
  const std::string activation = hidden_units == "bernoulli" ? "sigmoid"
                                 : hidden_units == "gaussian" ? "identity"
                                                              : resolved.value("code_activation", "identity");
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

// One entry of model.layers: its own keys (units, family, epochs, lr), then the rest as the
// options of its family from `registry`, over the family's defaults as a layer (given options
// win), for input of `spec`. Appends the entry as resolved to `resolved` and the warnings of its
// options to `warnings`, and moves `spec` on to the layer's codes.
StackedLayer read_layer(const Json& item, const std::string& prefix, const Registry& registry, DataSpec& spec,
                        Json& resolved, std::vector<std::string>& warnings) {
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
  layer.family = layer_reader.choice("family", layer.family, registry.stackable());
  layer.epochs = layer_reader.integer("epochs", 0, at_least(0));
  layer.lr = layer_reader.number("lr", 0.0, at_least(0));
  layer_reader.finish();

  const Family& family = registry.find(layer.family);
  const Json defaults = family.layer_defaults(spec);
  for (const auto& [key, value] : defaults.items()) {
    if (!options.contains(key)) options[key] = value;
  }
  options["code_size"] = layer.units;
  OptionReader reader(options, prefix);
  layer.make = family.build(reader, spec, registry);
  warnings.insert(warnings.end(), reader.warnings().begin(), reader.warnings().end());
  Json layer_options = reader.resolved();
  layer_options.erase("code_size");

  Json entry = {{"units", layer.units}, {"family", layer.family}, {"epochs", layer.epochs}, {"lr", layer.lr}};
  entry.update(layer_options);
  resolved.push_back(entry);
  spec = code_spec(layer.units, layer_options);
  return layer;
}

// The stack of a `stacked` model given no layers: a stacked denoising autoencoder (Vincent et al.,
// JMLR 2010), each layer a denoising autoencoder under its family's default corruption, with the
// widths of the default `undercomplete` model (a 512-unit hidden layer, a 32-unit code), so that
// the two defaults are the same network trained two ways: greedily layer by layer, then fine-tuned,
// against end to end from the start.
const Json kDefaultLayers = Json::parse(R"([{"units": 512, "family": "denoising"}, {"units": 32, "family": "denoising"}])");

// Reads model.layers, input side first.
std::vector<StackedLayer> read_layers(OptionReader& r, const DataSpec& data, const Registry& registry) {
  const Json* given = r.raw("layers");
  if (given == nullptr) given = &kDefaultLayers;
  r.require(given->is_array() && !given->empty(), "layers",
            "expected a non-empty list of layers, e.g. [{\"units\": 1000, \"family\": \"denoising\"}]");
  std::vector<StackedLayer> layers;
  Json resolved = Json::array();
  DataSpec spec = data;
  std::vector<std::string> warnings;
  for (std::size_t i = 0; i < given->size(); ++i) {
    layers.push_back(
        read_layer((*given)[i], fmt::format("{}[{}]", r.name("layers"), i), registry, spec, resolved, warnings));
  }
  r.add_warnings(warnings);
  r.resolve("layers", resolved);
  return layers;
}

}  // namespace

StackedOptions::StackedOptions(std::vector<StackedLayer> layers) : layers_(std::move(layers)) {}

StackedImpl::StackedImpl(StackedOptions options_) : options(std::move(options_)) { reset(); }

void StackedImpl::reset() {
  TORCH_CHECK(!options.layers().empty(), "stacked: no layers");
  TORCH_CHECK(options.classify_dropout() >= 0 && options.classify_dropout() < 1,
              "stacked: classify_dropout must be in [0, 1)");
  layers_.clear();
  for (std::size_t l = 0; l < options.layers().size(); ++l) {
    const StackedLayer& layer = options.layers()[l];
    TORCH_CHECK(layer.make, "stacked: layer ", l + 1, " has no maker");
    auto model = layer.make();
    TORCH_CHECK(model->code_size() == layer.units, "stacked: layer ", l + 1, " makes a code of ", model->code_size(),
                " units, not ", layer.units);
    register_module("layer" + std::to_string(l + 1), model->module().shared_from_this());
    layers_.push_back(std::move(model));
  }
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

torch::Tensor StackedImpl::encode_below_top(const torch::Tensor& input) {
  torch::Tensor h = input;
  for (std::size_t l = 0; l + 1 < layers_.size(); ++l) h = layers_[l]->encode(h);
  return h;
}

Hashing* StackedImpl::top_hashing() const {
  auto* top = dynamic_cast<Hashing*>(layers_.back().get());
  return top && top->hash_bits() > 0 ? top : nullptr;
}

int64_t StackedImpl::hash_bits() const { return top_hashing() ? top_hashing()->hash_bits() : 0; }

torch::Tensor StackedImpl::hash(const torch::Tensor& input) {
  Hashing* top = top_hashing();
  TORCH_CHECK(top, "stacked: hash needs a top layer with a binary code (its binary_code)");
  return top->hash(encode_below_top(input));
}

torch::Tensor StackedImpl::relaxed_code(const torch::Tensor& input) {
  Hashing* top = top_hashing();
  TORCH_CHECK(top, "stacked: relaxed_code needs a top layer with a binary code (its binary_code)");
  return top->relaxed_code(encode_below_top(input));
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

torch::Tensor StackedImpl::reconstruction_cost(const Output& output, const torch::Tensor& target) {
  return layers_.front()->reconstruction_cost(output, target);
}

Losses StackedImpl::loss(const torch::Tensor& target, const Output& output) {
  torch::Tensor recon = reconstruction_cost(output, target);
  return {recon, {{"recon", recon}}};
}

std::vector<Stage> StackedImpl::stages() {
  std::vector<Stage> stages;
  if (options.pretrain()) {
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const StackedLayer& layer = options.layers()[l];
      stages.push_back({"pretrain", static_cast<int64_t>(l + 1), layers_[l],
                        {layers_.begin(), layers_.begin() + static_cast<std::ptrdiff_t>(l)}, layer.epochs, layer.lr});
    }
  }
  // The stack itself, sharing ownership with the module's holder.
  const std::shared_ptr<Autoencoder> self(shared_from_this(), this);
  if (options.finetune()) stages.push_back({"finetune", 0, self, {}, options.finetune_epochs(), options.finetune_lr()});
  if (options.classify()) stages.push_back({"classify", 0, self, {}, options.classify_epochs(), options.classify_lr()});
  return stages;
}

void StackedImpl::enter_stage(std::size_t index) {
  const std::string phase = stages().at(index).phase;
  phase_ = phase == "classify" ? StackedPhase::classify : StackedPhase::reconstruct;
  // From fine-tuning on the layers are one deep autoencoder: an RBM layer gets its own decoder.
  if (phase != "pretrain") {
    for (const auto& layer : layers_) layer->unroll();
  }
}

Losses StackedImpl::supervised_loss(const Output& output, const torch::Tensor& labels) {
  return classification_losses(output.scores, labels);
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
  if (top_hashing()) {
    std::vector<std::string> hash(encoder.begin(), encoder.end() - 1);
    hash.push_back(fmt::format("return self.layer{}_hash(h)", layers_.size()));
    script.method("hash(self, x: Tensor) -> Tensor", hash);
  }
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
       "family (layers: [{units, family, epochs, lr, family options...}], default 512 then 32 denoising), then "
       "fine-tuned end to end "
       "(finetune) and optionally through a softmax head on labels (classify); epochs/lr 0 take train's",
       [](OptionReader& r, const DataSpec& data, const Registry& registry) -> ModelMaker {
         StackedOptions o(read_layers(r, data, registry));
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
         return [o] { return Stacked(o).ptr(); };
       },
       /*layer_defaults=*/nullptr});  // not a stack's layer
}

}  // namespace torchae
