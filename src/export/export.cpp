#include "torchae/export/export.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/export/zoo.h"
#include "torchae/nn/conv.h"
#include "torchae/train/run.h"
#include "torchae/version.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

namespace torchae {

namespace fs = std::filesystem;

namespace {

std::string identifier(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  }
  TORCH_CHECK(!out.empty() && !std::isdigit(static_cast<unsigned char>(out[0])),
              "ScriptModel: not a usable tensor name: \"", name, "\"");
  return out;
}

std::string method_name(const std::string& signature) { return signature.substr(0, signature.find('(')); }

}  // namespace

std::string ScriptModel::tensor(const std::string& name, const torch::Tensor& tensor) {
  const std::string id = identifier(scope_ + name);
  for (const auto& [known, value] : tensors_) {
    if (known != id) continue;
    TORCH_CHECK(value.sizes() == tensor.sizes() && torch::equal(value, tensor.detach().to(torch::kCPU)),
                "ScriptModel: the name \"", id, "\" is taken by another tensor");
    return "self." + id;
  }
  tensors_.emplace_back(id, tensor.detach().to(torch::kCPU).clone());
  sources_.push_back(tensor);
  return "self." + id;
}

void ScriptModel::method(const std::string& signature, const std::vector<std::string>& body) {
  const std::string name = method_name(signature);
  TORCH_CHECK(!has_method(name), "ScriptModel: method \"", scope_ + name, "\" is defined twice");
  methods_.push_back(scope_ + name);
  source_ += "def " + scope_ + signature + ":\n";
  for (std::string line : body) {
    for (const auto& callee : scope_methods_) {
      const std::string call = "self." + callee + "(", scoped = "self." + scope_ + callee + "(";
      for (auto at = line.find(call); at != std::string::npos; at = line.find(call, at + scoped.size())) {
        line.replace(at, call.size(), scoped);
      }
    }
    source_ += "    " + line + "\n";
  }
  if (!scope_.empty()) scope_methods_.push_back(name);
}

void ScriptModel::prepend(const std::string& name, const std::vector<std::string>& body) {
  const std::string header = "def " + name + "(";
  std::size_t at = source_.rfind("\n" + header);
  at = source_.compare(0, header.size(), header) == 0 ? 0 : (at == std::string::npos ? at : at + 1);
  TORCH_CHECK(at != std::string::npos, "ScriptModel: no method \"", name, "\" to prepend to");
  const std::size_t line_end = source_.find('\n', at) + 1;
  std::string lines;
  for (const auto& line : body) lines += "    " + line + "\n";
  source_.insert(line_end, lines);
}

std::vector<std::string> restoration_tasks(const Json& model_config) {
  const std::string corruption = model_config.is_object() ? model_config.value("corruption", "") : "";
  if (corruption == "gaussian" || corruption == "salt_pepper") return {"denoise"};
  if (corruption == "masking") return {"denoise", "inpaint"};
  if (corruption == "inpaint") return {"inpaint"};
  if (corruption == "gray") return {"colorize"};
  return {};
}

bool ScriptModel::has_method(const std::string& name) const {
  return std::find(methods_.begin(), methods_.end(), scope_ + name) != methods_.end();
}

void ScriptModel::set_scope(std::string prefix) {
  scope_ = std::move(prefix);
  scope_methods_.clear();
}

void define_autoencoder_methods(ScriptModel& script, const std::vector<std::string>& encoder,
                                const std::vector<std::string>& decoder, const std::vector<std::string>& forward) {
  std::vector<std::string> encode = encoder;
  encode.emplace_back("return h");
  std::vector<std::string> decode = decoder;
  decode.emplace_back("return y");
  script.method("encode(self, x: Tensor) -> Tensor", encode);
  script.method("decode(self, h: Tensor) -> Tensor", decode);
  script.method("forward(self, x: Tensor) -> Tensor", forward);
}

namespace {

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  return (a - b).abs().max().item<double>();
}

}  // namespace

torch::jit::Module to_torchscript(Autoencoder& model, const torch::Tensor& probe) {
  model.module().to(torch::kCPU);
  model.module().eval();
  ScriptModel script;
  model.script(script);
  for (const char* required : {"forward", "encode", "decode"}) {
    if (!script.has_method(required)) {
      throw Error(fmt::format("export: the model's TorchScript description has no {} method", required));
    }
  }

  if (const int64_t m = model.size_multiple(); m > 1) {
    // A fully convolutional model would return another size for a side that is not a multiple of
    // its stride: refused with the reason instead.
    for (const char* name : {"forward", "encode", "fill", "denoise"}) {
      if (!script.has_method(name)) continue;
      script.prepend(name, {fmt::format("assert x.size(-1) % {0} == 0 and x.size(-2) % {0} == 0, \"torchae: this fully "
                                        "convolutional model takes heights and widths that are multiples of {0}, got "
                                        "\" + str(x.size(-2)) + \"x\" + str(x.size(-1))",
                                        m)});
    }
  }
  torch::jit::Module module("__torch__.torchae.Autoencoder");
  for (const auto& [name, tensor] : script.tensors()) module.register_parameter(name, tensor, /*is_buffer=*/false);
  // What image sizes the model takes besides its training shape (see Autoencoder::size_multiple).
  module.register_attribute("size_multiple", c10::IntType::get(), model.size_multiple());
  try {
    module.define(script.source());
  } catch (const c10::Error& e) {
    // A family's source that does not compile is a bug in torchae, not in the user's input.
    throw Error(fmt::format("export: the model's TorchScript does not compile: {}", e.what_without_backtrace()));
  }
  module.eval();

  // The exported module must compute what the native one does; anything else is refused.
  torch::NoGradGuard no_grad;
  const torch::Tensor x = probe.to(torch::kCPU, torch::kFloat);
  const torch::Tensor code = model.encode(x);
  std::vector<std::tuple<std::string, torch::Tensor, torch::Tensor>> checks{
      {"forward", model.forward(x).reconstruction, module.forward({x}).toTensor()},
      {"encode", code, module.get_method("encode")({x}).toTensor()},
      {"decode", model.decode(code), module.get_method("decode")({code}).toTensor()},
  };
  if (auto* classifier = dynamic_cast<Classifier*>(&model); classifier && classifier->classes() > 0) {
    if (!script.has_method("classify")) {
      throw Error("export: the model has a classifier head but its TorchScript description has no classify method");
    }
    checks.emplace_back("classify", classifier->classify(x), module.get_method("classify")({x}).toTensor());
  }
  if (auto* hashing = dynamic_cast<Hashing*>(&model); hashing && hashing->hash_bits() > 0) {
    if (!script.has_method("hash")) {
      throw Error("export: the model has a binary code but its TorchScript description has no hash method");
    }
    // Bits must agree exactly: compared as numbers, one flipped bit is a difference of 1.
    checks.emplace_back("hash", hashing->hash(x).to(torch::kFloat), module.get_method("hash")({x}).toTensor().to(torch::kFloat));
  }
  if (auto* masked = dynamic_cast<MaskAware*>(&model); masked && masked->takes_mask()) {
    if (!script.has_method("fill")) {
      throw Error("export: the model takes a mask but its TorchScript description has no fill method");
    }
    // Every third pixel missing: a fixed mask, so that export draws no random numbers.
    const torch::Tensor missing =
        torch::arange(x.size(2) * x.size(3)).remainder(3).eq(0).to(torch::kFloat).view({1, 1, x.size(2), x.size(3)}).expand(
            {x.size(0), 1, x.size(2), x.size(3)}).contiguous();
    checks.emplace_back("fill", masked->fill(x, missing).reconstruction,
                        module.get_method("fill")({x, missing}).toTensor());
  }
  if (auto* noisy = dynamic_cast<NoiseAware*>(&model); noisy && noisy->takes_noise_level()) {
    if (!script.has_method("denoise")) {
      throw Error("export: the model takes a noise level but its TorchScript description has no denoise method");
    }
    // A level that varies over the image and between images: fixed, so that export draws no
    // random numbers.
    const torch::Tensor level = (0.02 + 0.01 * torch::arange(x.size(0) * x.size(2) * x.size(3)).remainder(7))
                                    .to(torch::kFloat)
                                    .view({x.size(0), 1, x.size(2), x.size(3)});
    checks.emplace_back("denoise", noisy->denoise(x, level).reconstruction,
                        module.get_method("denoise")({x, level}).toTensor());
  }
  for (const auto& [name, native, exported] : checks) {
    const double difference = max_difference(native, exported);
    const double largest = native.numel() > 0 ? native.abs().max().item<double>() : 0.0;
    if (!(difference <= kExportTolerance * std::max(1.0, largest))) {
      throw Error(fmt::format("export: the TorchScript {} differs from the model's (max |difference| {:.3g} on values "
                              "up to {:.3g}, shapes [{}] vs [{}]); nothing was written",
                              name, difference, largest, fmt::join(native.sizes(), ", "), fmt::join(exported.sizes(), ", ")));
    }
  }
  return module;
}

void save_torchscript(const torch::jit::Module& module, const Json& card, const fs::path& path) {
  const torch::jit::ExtraFilesMap extra{{kModelCardFile, json_text(card, 2) + "\n"}};
  write_atomically(path, [&](std::ostream& out) { module.save(out, extra); });
}

torch::jit::Module load_torchscript(const fs::path& given) {
  const fs::path archive = resolve_archive(given);
  std::error_code ec;
  if (!fs::is_regular_file(archive, ec)) throw Error(fmt::format("{}: no such file", archive.string()));
  torch::jit::Module module;
  try {
    module = torch::jit::load(archive.string(), torch::kCPU);
  } catch (const std::exception& e) {
    // c10::Error for a broken archive, std::runtime_error from the parser of broken code.
    const std::string what = e.what();
    throw Error(fmt::format("{}: not a TorchScript archive LibTorch can load ({})", archive.string(),
                            what.substr(0, what.find('\n'))));
  }
  module.eval();
  return module;
}

Json read_model_card(const fs::path& given) {
  const fs::path archive = resolve_archive(given);
  std::error_code ec;
  if (!fs::is_regular_file(archive, ec)) throw Error(fmt::format("{}: no such file", archive.string()));
  // The card is read from the archive's zip directory alone: loading the module would compile
  // its TorchScript code, and LibTorch's parser throws what it likes on code it cannot read.
  std::string text;
  try {
    caffe2::serialize::PyTorchStreamReader reader(archive.string());
    const std::string record = std::string("extra/") + kModelCardFile;
    if (reader.hasRecord(record)) {
      const auto [data, size] = reader.getRecord(record);
      text.assign(static_cast<const char*>(data.get()), size);
    }
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw Error(fmt::format("{}: not a TorchScript archive ({})", archive.string(), what.substr(0, what.find('\n'))));
  }
  if (text.empty()) throw Error(fmt::format("{}: has no {} (not exported by torchae?)", archive.string(), kModelCardFile));
  const Json card = parse_json(text, fmt::format("{}: its {}", archive.string(), kModelCardFile));
  if (!card.is_object()) throw Error(fmt::format("{}: its {} is not a JSON object", archive.string(), kModelCardFile));
  return card;
}

std::vector<std::string> init_from_trained(Autoencoder& model, const Json& model_config, const fs::path& source) {
  const std::string name = source.string();
  std::vector<std::string> warnings;
  Json trained;  // the source's model section
  std::error_code ec;
  if (fs::is_directory(source, ec)) {
    const fs::path checkpoint = source / kCheckpointFile;
    if (!fs::exists(checkpoint, ec)) {
      throw Error(fmt::format("train.init: {}: no {} (the run has not completed an epoch)", name, kCheckpointFile));
    }
    try {
      const Json config =
          load_model_weights(model, checkpoint, torch::kCPU, "the model this run's configuration builds");
      if (config.is_object()) trained = config.value("model", Json());
    } catch (const Error& e) {
      throw Error(fmt::format("train.init: {}", e.what()));
    }
  } else {
    Json card;
    torch::jit::Module archive;
    try {
      card = read_model_card(source);
      archive = load_torchscript(source);
    } catch (const Error& e) {
      throw Error(fmt::format("train.init: {}", e.what()));
    }
    if (const Json* section = find_dotted(card, "config.model")) trained = *section;
    ScriptModel script;
    try {
      model.script(script);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      throw Error(fmt::format("train.init: {}: this run's model cannot be matched to an archive's tensors ({}); start "
                              "it from a run directory",
                              name, what.substr(0, what.find('\n'))));
    }
    std::vector<std::pair<std::string, torch::Tensor>> own;
    for (const auto& p : model.module().named_parameters()) own.emplace_back(p.key(), p.value());
    for (const auto& b : model.module().named_buffers()) own.emplace_back(b.key(), b.value());
    std::set<const c10::TensorImpl*> written;
    std::set<std::string> taken;  // the archive's tensors given to the model
    std::vector<std::string> grown;  // the model's residual blocks the archive lacks
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < script.tensors().size(); ++i) {
      const std::string& id = script.tensors()[i].first;
      const auto mine = std::find_if(own.begin(), own.end(),
                                     [&](const auto& entry) { return entry.second.is_same(script.sources()[i]); });
      if (mine == own.end()) continue;  // computed from the model's tensors, not one of them
      if (!archive.hasattr(id) || !archive.attr(id).isTensor()) {
        // A residual block starts as the identity: an archive's model without blocks is what this
        // one starts as (checked below).
        if (is_residual_block_parameter(mine->first)) {
          grown.push_back(mine->first);
          continue;
        }
        throw Error(fmt::format("train.init: {}: the archive holds no {} (this run's {}): it is not a model of this "
                                "kind",
                                name, id, mine->first));
      }
      const torch::Tensor stored = archive.attr(id).toTensor();
      if (stored.sizes() != mine->second.sizes() || stored.scalar_type() != mine->second.scalar_type()) {
        throw Error(fmt::format("train.init: {}: {} is {} there, {} in this run's model ({})", name, id,
                                shape_of(stored), shape_of(mine->second), mine->first));
      }
      mine->second.copy_(stored);
      written.insert(mine->second.unsafeGetTensorImpl());
      taken.insert(id);
    }
    // Blocks are grown on a model without them, and an archive's blocks all have their place:
    // otherwise the model would not start as the archive's.
    bool archive_has_blocks = false;
    std::vector<std::string> unplaced;
    for (const auto& attribute : archive.named_attributes(/*recurse=*/false)) {
      if (!attribute.value.isTensor() || !is_residual_block_parameter(attribute.name)) continue;
      archive_has_blocks = true;
      if (taken.count(attribute.name) == 0) unplaced.push_back(attribute.name);
    }
    // In name order: the order of a model's tensors in an archive differs from one compiler to the
    // next (the order in which a call's arguments are evaluated).
    std::sort(unplaced.begin(), unplaced.end());
    std::sort(grown.begin(), grown.end());
    if (!unplaced.empty()) {
      throw Error(fmt::format("train.init: {}: its residual blocks {} have no place in this run's model (model.blocks)",
                              name, fmt::join(unplaced, ", ")));
    }
    if (!grown.empty() && archive_has_blocks) {
      throw Error(fmt::format("train.init: {}: the archive holds residual blocks, and not this run's {}: blocks are "
                              "grown on a model without them (model.blocks)",
                              name, fmt::join(grown, ", ")));
    }
    if (written.empty()) {
      throw Error(fmt::format("train.init: {}: the archive holds none of this run's model's tensors", name));
    }
    std::vector<std::string> kept;
    for (const auto& p : model.module().named_parameters()) {
      if (written.count(p.value().unsafeGetTensorImpl()) == 0 && !is_residual_block_parameter(p.key())) {
        kept.push_back(p.key());
      }
    }
    if (!grown.empty()) {
      warnings.push_back(fmt::format("train.init: {} holds no {}: residual blocks this run adds, which start as "
                                     "the identity",
                                     name, fmt::join(grown, ", ")));
    }
    if (!kept.empty()) {
      warnings.push_back(fmt::format("train.init: {} holds no {} (not exported: used only in training); they keep "
                                     "their initialisation",
                                     name, fmt::join(kept, ", ")));
    }
  }
  std::vector<std::string> differences;
  if (trained.is_object()) {
    for (const auto& d : leaf_differences(trained, model_config)) {
      // An option added since the source was trained, at what it was trained with.
      if (!d.first && d.second && added_with_old_behaviour("model." + d.key, *d.second)) continue;
      differences.push_back(fmt::format("model.{} {} there, {} here", d.key, LeafDifference::text(d.first),
                                        LeafDifference::text(d.second)));
    }
  }
  if (!differences.empty()) {
    warnings.push_back(fmt::format("train.init: {} was trained as another model: {}", name, fmt::join(differences, "; ")));
  }
  return warnings;
}

std::vector<int64_t> card_image_shape(const Json& card, const fs::path& archive) {
  const Json* shape = find_dotted(card, "input.shape");
  if (!shape || !shape->is_array() || shape->size() != 3 ||
      !std::all_of(shape->begin(), shape->end(),
                   [](const Json& d) { return d.is_number_integer() && d.get<int64_t>() > 0; })) {
    throw Error(fmt::format("{}: the model card gives no image input shape {{C, H, W}}", archive.string()));
  }
  return shape->get<std::vector<int64_t>>();
}

namespace {

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// What metrics.jsonl says of the training: epochs done (over every stage of a stacked run),
// final losses, seconds spent.
Json training_summary(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  Json last = Json::object();
  double seconds = 0.0;
  int64_t epochs = 0;
  std::string line;
  while (std::getline(in, line)) {
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    seconds += j.value("seconds", 0.0);
    ++epochs;
    last = std::move(j);
  }
  return Json{{"epochs", epochs},
              {"train_loss", last.value("train_loss", Json())},
              {"val_loss", last.value("val_loss", Json())},
              {"seconds", seconds}};
}

}  // namespace

Json export_run(const fs::path& run_dir, const fs::path& out, const Json& card_extra) {
  check_output_path(out, "--out");
  std::error_code ec;
  Run run = load_run(run_dir, /*with_test=*/true, "auto");  // wherever it was trained
  // eval.json speaks for the checkpoint it was computed from; after more training it is stale.
  Json metrics = fs::exists(run_dir / kEvalFile, ec) ? load_json_file(run_dir / kEvalFile) : Json();
  if (!metrics.is_object() || metrics.value("checkpoint", Json()) != checkpoint_json(run_dir)) {
    metrics = evaluate_run(run, run_dir);
  }
  const std::string family = run.config["model"].value("family", "");
  const int64_t n_probe = std::min<int64_t>(64, run.data.test.size());
  torch::jit::Module module;
  try {
    module = to_torchscript(*run.model.model, run.data.test.inputs.narrow(0, 0, n_probe));
  } catch (const Error& e) {
    throw Error(fmt::format("family \"{}\": {}", family, e.what()));
  }
  if (run.data.mean.defined()) module.register_buffer("input_mean", run.data.mean.to(torch::kCPU).contiguous());
  if (run.data.deviation.defined()) {
    module.register_buffer("input_deviation", run.data.deviation.to(torch::kCPU).contiguous());
  }

  const DataSpec& spec = run.data.spec;
  Json card = {
      {"format", "torchae-model-card/1"},
      {"family", family},
      {"methods", {"forward", "encode", "decode"}},
      {"code_size", run.model.model->code_size()},
      {"input",
       {{"shape", spec.shape},
        {"range", {spec.min, spec.max}},
        {"centered", run.data_options.center || run.data_options.standardize},
        {"standardized", run.data_options.standardize},
        {"note", run.data_options.standardize ? "inputs are images in [0, 1] minus the buffer input_mean (the training "
                                                "mean), divided by the buffer input_deviation"
                 : run.data_options.center ? "inputs are images in [0, 1] minus the buffer input_mean (the training mean)"
                                           : "inputs are images with values in the range, batched as [N, shape...]"}}},
      {"data",
       {{"dataset", run.data_options.dataset},
        {"path", run.data_options.path},
        {"limit", run.data_options.limit},
        {"validation_fraction", run.data_options.validation_fraction}}},
      {"training", training_summary(run_dir)},
      {"metrics", metrics},
      {"config", run.config},
      {"torchae_version", TORCHAE_VERSION},
      {"libtorch_version", TORCH_VERSION},
      {"created", utc_now()},
      {"run", run_dir.string()},
  };
  if (module.find_method("sample")) card["methods"].push_back("sample");
  if (const auto* sampler = dynamic_cast<const GibbsSampler*>(run.model.model.get())) {
    card["sample_gibbs_steps"] = sampler->sample_steps();
    card["sample_note"] = fmt::format("sample(n) runs {} steps of block Gibbs sampling from random states and returns "
                                      "the visible units' means given the last hidden state",
                                      sampler->sample_steps());
  }
  if (module.find_method("classify")) card["methods"].push_back("classify");
  if (module.find_method("fill")) {
    card["methods"].push_back("fill");
    card["fill_note"] = "fill(x, missing) takes images x [B, C, H, W] and missing [B, 1, H, W] (1 where a pixel is "
                        "missing, 0 where known) and returns the model's output [B, C, H, W]; forward(x) is fill with "
                        "nothing missing. torchae restore --task inpaint keeps the known pixels of x";
  }
  if (module.find_method("denoise")) {
    card["methods"].push_back("denoise");
    card["denoise_note"] = "denoise(x, level) takes images x [B, C, H, W] and the standard deviation of their noise, "
                           "level [B, 1, H, W] (in x's units, pixel by pixel), and returns the denoised images "
                           "[B, C, H, W]; forward(x) is denoise with each image's level estimated from x (by principal "
                           "components of its 5x5 patches: Chen, Zhu & Heng 2015)";
  }
  if (const auto* hashing = dynamic_cast<const Hashing*>(run.model.model.get()); hashing && hashing->hash_bits() > 0) {
    card["methods"].push_back("hash");
    card["hash_bits"] = hashing->hash_bits();
    card["hash_note"] = "hash(x) returns the binary code of x as uint8 0/1, [N, hash_bits]: bit j is 1 where code unit "
                        "j's input is positive (torchae index packs it 64 bits to a word, bit j at bit j % 64)";
  }
  // What the model restores (torchae restore checks --task and the input against it).
  const Json model_config = run.config.value("model", Json::object());
  card["trained_for"] = {
      {"tasks", restoration_tasks(model_config)},
      {"corruption", model_config.value("corruption", "none")},
      {"level", model_config.value("level", 0.0)},
      {"channels", spec.shape.empty() ? int64_t{0} : spec.shape.front()},
      {"input_size", module.attr("size_multiple").toInt() > 0
                         ? Json(fmt::format("any multiple of {}", module.attr("size_multiple").toInt()))
                         : Json(std::vector<int64_t>(spec.shape.begin() + (spec.shape.size() == 3 ? 1 : 0), spec.shape.end()))},
      {"dataset", run.data_options.dataset}};
  card.update(card_extra);
  save_torchscript(module, card, out);
  return card;
}

}  // namespace torchae
