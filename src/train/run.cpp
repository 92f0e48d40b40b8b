#include "torchae/train/run.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/core/runtime.h"
#include "torchae/eval/ais.h"
#include "torchae/eval/frechet.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/train/staged.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <optional>

namespace torchae {

namespace fs = std::filesystem;

namespace {

// A classifier head of `classes` outputs learns the labels 0 to classes - 1: data with others is
// refused before any training, rather than found after a stack's pretraining.
void check_labels_fit(const Autoencoder& model, const DataSplits& data) {
  const auto* classifier = dynamic_cast<const Classifier*>(&model);
  if (classifier == nullptr || classifier->classes() == 0) return;
  const int64_t classes = classifier->classes();
  for (const Dataset* split : {&data.train, &data.validation, &data.test}) {
    if (!split->labels.defined() || split->labels.numel() == 0) continue;
    const int64_t top = split->labels.max().item<int64_t>();
    if (top >= classes) {
      throw Error(fmt::format("config: model.classes: the data has label {}, but the classifier has {} classes "
                              "(labels 0 to {}); set model.classes to at least {}",
                              top, classes, classes - 1, top + 1));
    }
  }
}

}  // namespace

Json run_config(const BuiltModel& model, const DataOptions& data, const TrainOptions& train) {
  return {{"model", model.resolved}, {"data", data.to_json()}, {"train", train.to_json()}};
}

Run prepare_run(const Json& config, bool with_test) {
  if (!config.is_object()) throw Error(fmt::format("config: expected a JSON object, got {}", config.dump()));
  for (const auto& item : config.items()) {
    // A zoo recipe is a configuration with a description: it trains as it is (train --config).
    if (item.key() == "description" && item.value().is_string()) continue;
    if (item.key() != "model" && item.key() != "data" && item.key() != "train") {
      throw Error(fmt::format("config: {}: unknown section (known: model, data, train; and a recipe's description)",
                              item.key()));
    }
  }
  const Json none = Json::object();
  auto section = [&](const char* name) -> const Json& {
    return config.contains(name) ? config.at(name) : none;
  };
  Run run;
  OptionReader data_reader(section("data"), "data");
  run.data_options = DataOptions::from(data_reader);
  OptionReader train_reader(section("train"), "train");
  run.train_options = TrainOptions::from(train_reader);
  try {
    resolve_device(run.train_options.device);
  } catch (const Error& e) {
    throw Error(fmt::format("config: train.device: {}", e.what()));
  }

  torch::manual_seed(static_cast<uint64_t>(run.train_options.seed));
  run.data = load_data(run.data_options, with_test);
  train_reader.require(run.train_options.patience == 0 || run.data.validation.size() > 0, "patience",
                       fmt::format("early stopping needs a validation split, and data.validation_fraction {} holds "
                                   "out none of the {} training examples",
                                   run.data_options.validation_fraction, run.data.train_size()));
  run.model = build_model(section("model"), run.data.spec);
  check_labels_fit(*run.model.model, run.data);
  train_reader.require(!run.train_options.validate_corrupted || trains_on_corrupted_batches(*run.model.model),
                       "validate_corrupted",
                       fmt::format("model family \"{}\" is not trained on corrupted batches (a denoising model, or a "
                                   "stack with denoising layers, is); leave it false",
                                   run.model.resolved.value("family", "")));
  const std::string& augment = run.train_options.augment;
  const std::vector<int64_t>& shape = run.data.spec.shape;
  train_reader.require(orientable(augment, shape), "augment",
                       fmt::format("\"{}\" needs {}, and the examples are [{}]; leave it \"none\"", augment,
                                   augment == "dihedral" ? "square images" : "images", fmt::join(shape, ", ")));
  train_reader.require(augment == "none" || (!run.data_options.center && !run.data_options.standardize), "augment",
                       "orients the examples after data.center or data.standardize took each pixel's own mean off, "
                       "which would not follow the pixel to its new place; leave one of them off");
  train_reader.require(run.train_options.init.empty() || !dynamic_cast<const Staged*>(run.model.model.get()), "init",
                       "a model trained in stages (a stack's layerwise pretraining) begins by pretraining its layers "
                       "afresh; it cannot start from a trained model");
  if (run.data.stream && dynamic_cast<const Staged*>(run.model.model.get())) {
    data_reader.require(false, "source",
                        "a model trained in stages (a stack's layerwise pretraining) trains its later stages on codes "
                        "of the training set held in memory, and cannot stream it; set data.source \"memory\"");
  }
  run.config = Json{{"model", run.model.resolved},
                    {"data", data_reader.resolved()},
                    {"train", train_reader.resolved()}};
  return run;
}

namespace {

/// The loader's settings (the keys of the data section): they change how fast batches come,
/// never which, and are each process's own (data.workers defaults to its machine's cores).
const char* const kLoaderKeys[] = {"workers", "prefetch", "cache_mb"};

/// What may change when a run is resumed: nothing else would continue it as it began. A
/// colouriser's temperature is how its scores are decoded, not what they are trained on.
const std::vector<std::string> kChangeableOnResume = [] {
  std::vector<std::string> keys{"train.epochs",          "train.device",   "train.threads", "train.blas_threads",
                                "train.paired_products", "train.progress", "model.temperature"};
  for (const char* key : kLoaderKeys) keys.push_back(std::string("data.") + key);
  return keys;
}();

}  // namespace

bool added_with_old_behaviour(const std::string& key, const Json& value) {
  // Lists of one value for all layers (blocks): each entry of a list of old values is old.
  static const std::vector<std::pair<std::string, Json>> added{
      {"binary_code", "none"}, {"mask_input", false}, {"noise_map", false}, {"prefill", 0},
      {"skips", false}, {"chroma_bins", 0.0}, {"residual", false}, {"zero_init", false}, {"blocks", 0}};
  if (key.rfind("model.", 0) != 0) return false;
  // "model.blocks.2" is entry 2 of model.blocks.
  std::string option = key;
  for (std::size_t dot = option.rfind('.');
       dot != std::string::npos && dot + 1 < option.size() &&
       std::all_of(option.begin() + static_cast<std::ptrdiff_t>(dot) + 1, option.end(),
                   [](char c) { return c >= '0' && c <= '9'; });
       dot = option.rfind('.')) {
    option.resize(dot);
  }
  const std::string name = option.substr(option.rfind('.') + 1);
  return std::any_of(added.begin(), added.end(), [&](const auto& a) { return a.first == name && a.second == value; });
}

namespace {

// The resume rule, for config.json itself: a config.json that differs from the configuration the
// checkpoint was trained under (a hand edit) in anything that may not change on resume is refused,
// naming the first key that differs (the family first: a checkpoint of another family differs in
// much else).
// `trained`: the configuration the checkpoint records (`checkpoint_config`).
void check_config_fits_checkpoint(const Json& config, const Json& trained, const fs::path& run_dir) {
  if (trained.is_null()) return;  // no checkpoint yet, or one from before checkpoints recorded it
  // Data and train keys added since the checkpoint was written take their defaults, as its run
  // had them.
  Json trained_resolved = trained;
  auto resolve = [&](const char* section, const auto& read) {
    if (!trained.contains(section) || !trained[section].is_object()) return;
    try {
      OptionReader reader(trained[section], section);
      read(reader);
      trained_resolved[section] = reader.resolved();
    } catch (const Error&) {
      // compared as it is: the difference is named below
    }
  };
  resolve("data", [](OptionReader& reader) { DataOptions::from(reader); });
  resolve("train", [](OptionReader& reader) { TrainOptions::from(reader); });
  std::vector<LeafDifference> differences = leaf_differences(config, trained_resolved);
  std::stable_partition(differences.begin(), differences.end(),
                        [](const LeafDifference& d) { return d.key == "model.family"; });
  for (const auto& [key, is, was] : differences) {
    if (std::find(kChangeableOnResume.begin(), kChangeableOnResume.end(), key) != kChangeableOnResume.end()) continue;
    if (is && !was && added_with_old_behaviour(key, *is)) continue;
    const std::string difference =
        !is    ? fmt::format("{} is missing, but the checkpoint was trained with {}", key, was->dump())
        : !was ? fmt::format("{} is {}, which the checkpoint was trained without", key, is->dump())
               : fmt::format("{} is {}, but the checkpoint was trained with {}", key, is->dump(), was->dump());
    throw Error(fmt::format("{}: {}: config.json and the checkpoint disagree (an edit, or another run's "
                            "checkpoint); only {} can change, with train --resume {} --set",
                            (run_dir / kConfigFile).string(), difference, fmt::join(kChangeableOnResume, ", "),
                            run_dir.string()));
  }
}

void refuse_a_run_there(const fs::path& run_dir) {
  std::error_code ec;
  for (const char* file : {kConfigFile, kCheckpointFile}) {
    if (fs::exists(run_dir / file, ec)) {
      throw Error(fmt::format("{} already holds a run ({}); continue it with --resume {} or choose another --out",
                              run_dir.string(), file, run_dir.string()));
    }
  }
}

}  // namespace

namespace {

// Runs `action` where the run directory is written: in this process, or on rank 0 of a
// data-parallel run with its failure thrown on every rank.
void on_writer(ProcessGroup* group, const std::function<void()>& action) {
  if (group) {
    group->on_writer(action);
  } else {
    action();
  }
}

// Every rank of a data-parallel run must train the same configuration: a --set or a --config
// that differs between ranks is refused on all of them, naming the first key that differs, but
// for the loader's settings (`kLoaderKeys`), which are each rank's own.
void check_same_config(ProcessGroup* group, const Json& config) {
  if (!group) return;
  Json shared = config;
  if (shared.contains("data") && shared["data"].is_object()) {
    for (const char* key : kLoaderKeys) shared["data"].erase(key);
  }
  const std::vector<std::string> texts = group->all_gather_text(json_text(shared));
  for (int r = 1; r < group->size(); ++r) {
    if (texts[r] == texts[0]) continue;
    for (const auto& d : leaf_differences(Json::parse(texts[0]), Json::parse(texts[r]))) {
      throw Error(fmt::format("the ranks were given different configurations: {} is {} on rank 0 and {} on rank {}; "
                              "give every rank the same --config and --set",
                              d.key, LeafDifference::text(d.first), LeafDifference::text(d.second), r));
    }
  }
}

}  // namespace

namespace {

// The model's warnings (`BuiltModel::warnings`), told once by the process that reports.
void tell_warnings(const Run& run) {
  const TrainOptions& o = run.train_options;
  if (!o.reporter || (o.group && !o.group->is_writer())) return;
  for (const auto& warning : run.model.warnings) o.reporter->on_warning(warning);
}

// A run that names a trained model (train.init) starts from it, on rank 0 before the trainer gives
// the other ranks rank 0's weights; a resumed run whose checkpoint exists continues from that instead.
void start_from_init(Run& run) {
  const TrainOptions& o = run.train_options;
  if (o.init.empty()) return;
  on_writer(o.group.get(), [&] {
    for (const auto& warning : init_from_trained(*run.model.model, run.config["model"], o.init)) {
      if (o.reporter) o.reporter->on_warning(warning);
    }
  });
}

}  // namespace

void train_run(const Json& config, const fs::path& run_dir, std::shared_ptr<ProcessGroup> group,
               std::shared_ptr<Reporter> reporter) {
  // Before the data is loaded: the common mistake fails fast.
  on_writer(group.get(), [&] { refuse_a_run_there(run_dir); });
  Run run = prepare_run(config, /*with_test=*/false);
  run.train_options.group = group;
  run.train_options.reporter = std::move(reporter);
  check_same_config(group.get(), run.config);
  tell_warnings(run);
  start_from_init(run);  // before the run directory is made: a source that does not fit leaves no run
  std::optional<RunClaim> claim;
  on_writer(group.get(), [&] {
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) throw Error(fmt::format("cannot create {}: {}", run_dir.string(), ec.message()));
    // Claimed, then checked again: of two trainings started together into one directory, one
    // trains and the other is refused, never both.
    claim.emplace(run_dir);
    refuse_a_run_there(run_dir);
    remove_stale_temporaries(run_dir);
    write_text_atomically(run_dir / kConfigFile, json_text(run.config, 2) + "\n");
  });
  fit_run(run, run_dir, /*resume=*/false);
}

void fit_run(Run& run, const fs::path& run_dir, bool resume) {
  // A run stopped before its first epoch ended has a config but no checkpoint: starting it
  // from epoch 0 with the same config and seed is exactly what it would have done.
  const auto nothing_to_resume = [&] {
    const TrainOptions& o = run.train_options;
    if (o.reporter && o.progress != "none" && (!o.group || o.group->is_writer())) {
      o.reporter->on_note(fmt::format("{}: no checkpoint yet; starting from the beginning", run_dir.string()));
    }
  };
  StagedTrainer trainer(run.model.model, run.train_options, run_dir);
  trainer.record_config(run.config);
  if (resume && !trainer.resume()) nothing_to_resume();
  if (run.data.stream) {
    trainer.fit(*run.data.stream, run.data.validation, {run.data_options.workers, run.data_options.prefetch});
  } else {
    trainer.fit(run.data.train, run.data.validation);
  }
}

namespace {

Json read_run_config(const fs::path& run_dir) {
  std::error_code ec;
  if (!fs::exists(run_dir / kConfigFile, ec)) {
    throw Error(fmt::format("{}: not a run directory (no {})", run_dir.string(), kConfigFile));
  }
  return load_json_file(run_dir / kConfigFile);
}

fs::path checkpoint_of(const fs::path& run_dir) {
  const fs::path path = run_dir / kCheckpointFile;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error(fmt::format("{}: no {} (the run has not completed an epoch); continue it with train --resume {}",
                            run_dir.string(), kCheckpointFile, run_dir.string()));
  }
  return path;
}

}  // namespace

void resume_run(const fs::path& run_dir, const std::vector<std::string>& overrides,
                std::shared_ptr<ProcessGroup> group, std::shared_ptr<Reporter> reporter) {
  std::optional<RunClaim> claim;
  on_writer(group.get(), [&] {
    read_run_config(run_dir);  // not a run directory: said before anything else
    claim.emplace(run_dir);
    remove_stale_temporaries(run_dir);
  });
  Json config = read_run_config(run_dir);  // as the last holder of the claim left it
  const std::vector<std::string>& changeable = kChangeableOnResume;
  for (const auto& assignment : overrides) {
    const std::string key = assignment.substr(0, assignment.find('='));
    if (std::find(changeable.begin(), changeable.end(), key) == changeable.end()) {
      // Re-running the command line of the run with --resume repeats its settings: a value
      // the run already has is no change.
      Json asked = config;
      apply_override(asked, assignment);
      const Json* before = find_dotted(config, key);
      const Json* after = find_dotted(asked, key);
      if (before && after && *before == *after) continue;
      throw Error(fmt::format("--set {}: cannot change {} when resuming: the run has {}, this asks for {} (only {} "
                              "can change)",
                              assignment, key, before ? before->dump() : "no such key", after ? after->dump() : "null",
                              fmt::join(changeable, ", ")));
    }
    apply_override(config, assignment);
  }
  Run run = prepare_run(config, /*with_test=*/false);
  run.train_options.group = group;
  run.train_options.reporter = std::move(reporter);
  check_same_config(group.get(), run.config);
  tell_warnings(run);
  check_config_fits_checkpoint(run.config, checkpoint_config(run_dir), run_dir);
  // A run without a checkpoint starts from the beginning, as rank 0 sees it (the checkpoint is
  // rank 0's).
  std::error_code ec;
  bool from_the_beginning = !fs::exists(run_dir / kCheckpointFile, ec);
  if (group) from_the_beginning = group->broadcast_text(from_the_beginning ? "yes" : "no") == "yes";
  if (from_the_beginning) start_from_init(run);
  // Every rank has read config.json before rank 0 writes it again.
  if (group) group->broadcast_text({});
  on_writer(group.get(), [&] { write_text_atomically(run_dir / kConfigFile, json_text(run.config, 2) + "\n"); });
  fit_run(run, run_dir, /*resume=*/true);
}

Run load_run(const fs::path& run_dir, bool with_test, const std::string& device) {
  Json config = read_run_config(run_dir);
  const bool has_train = config.contains("train") && config["train"].is_object();
  const Json trained_on = has_train ? config["train"].value("device", Json(TrainOptions().device)) : Json();
  if (!device.empty()) {
    try {
      resolve_device(device);
    } catch (const Error& e) {
      throw Error(fmt::format("--device: {}", e.what()));
    }
    config["train"]["device"] = device;
  }
  Run run = prepare_run(config, with_test);
  // Whatever device this works on, the run's configuration says where it was trained.
  if (!device.empty() && trained_on.is_string()) run.config["train"]["device"] = trained_on;
  // A staged model takes the shape of the stage its checkpoint was written in (a stack's RBM
  // layers have decoders of their own from fine-tuning on).
  if (auto* staged = dynamic_cast<Staged*>(run.model.model.get())) {
    const int64_t stage = checkpoint_stage(run_dir);
    if (stage >= 0 && stage < static_cast<int64_t>(staged->stages().size())) {
      staged->enter_stage(static_cast<std::size_t>(stage));
      staged->leave_stage();
    }
  }
  // Tensor by tensor first: of a checkpoint from another run, that names what does not fit.
  const Json trained = load_model_weights(*run.model.model, checkpoint_of(run_dir), torch::kCPU);
  check_config_fits_checkpoint(run.config, trained, run_dir);
  return run;
}

Json evaluate_run(const fs::path& run_dir, const EvalOptions& options) {
  Run run;
  try {
    run = load_run(run_dir, /*with_test=*/true, options.device);
  } catch (const Error& e) {
    const std::string message = e.what();
    if (options.device.empty() && message.rfind("config: train.device:", 0) == 0) {
      throw Error(message + "; evaluate it here with --device auto");
    }
    throw;
  }
  return evaluate_run(run, run_dir, options);
}

Json checkpoint_json(const fs::path& run_dir) {
  const CheckpointPosition at = checkpoint_position(run_dir);
  return Json{{"stage", at.stage}, {"epoch", at.epoch}};
}

namespace {

// The metrics that are means over the test examples: a data-parallel evaluation reduces them.
const char* const kPerExampleMeans[] = {"test_mse",         "test_sse_per_image",     "test_psnr_db",
                                        "test_loss",        "pca_test_mse",           "pca_test_sse_per_image",
                                        "pca_test_psnr_db", "test_elbo",              "test_log_likelihood_is",
                                        "test_accuracy",    "test_log_likelihood_ais", "test_pseudo_log_likelihood"};

// Each rank's means over its `count` test examples become the means over all of them.
void reduce_means(ProcessGroup& group, Json& metrics, int64_t count, int64_t total) {
  std::vector<std::string> keys;
  for (const char* key : kPerExampleMeans) {
    if (metrics.contains(key)) keys.emplace_back(key);
  }
  torch::Tensor sums = torch::empty({static_cast<int64_t>(keys.size())}, torch::kFloat64);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    sums[static_cast<int64_t>(i)] = metrics[keys[i]].get<double>() * static_cast<double>(count);
  }
  group.all_reduce_sum(sums);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    metrics[keys[i]] = sums[static_cast<int64_t>(i)].item<double>() / static_cast<double>(total);
  }
  metrics["n_test"] = total;
}

}  // namespace

Json evaluate_run(Run& run, const fs::path& run_dir, const EvalOptions& options) {
  ProcessGroup* group = options.group.get();
  run.train_options.group = options.group;
  // A bad --corrupt is refused before anything is computed.
  const std::optional<CorruptionOptions> corruption =
      options.corrupt.empty() ? std::nullopt : std::optional(parse_corruption_spec(options.corrupt, run.data.spec));
  const torch::Device device = training_device(run.train_options);
  set_threads(run.train_options.threads);
  run.model.model->module().to(device);
  // A data-parallel evaluation takes this rank's shard of the test split (all of it on every rank
  // when there are fewer test examples than ranks).
  const int64_t total = run.data.test.size();
  const bool sharded = group && total >= group->size();
  const auto part = sharded ? shard_of(total, group->rank(), group->size()) : std::pair<int64_t, int64_t>{0, total};
  DataSplits data = run.data;
  if (sharded) data.test = run.data.test.select(torch::arange(part.first, part.first + part.second));
  // Fitted once, the baseline serves the corrupted figures too.
  const PcaBaseline baseline = PcaBaseline::fit(*run.model.model, run.data);
  Json metrics = evaluate_reconstruction(*run.model.model, data, device, &baseline);
  if (dynamic_cast<Likelihood*>(run.model.model.get())) {
    metrics.update(evaluate_likelihood(*run.model.model, run.data.test, options.iw_samples, device, part));
  }
  if (dynamic_cast<Annealable*>(run.model.model.get())) {
    metrics.update(evaluate_partition(*run.model.model, run.data.train_sample(10000), run.data.test,
                                      options.ais_temperatures, options.ais_runs, device, part));
  }
  if (auto* classifier = dynamic_cast<Classifier*>(run.model.model.get()); classifier && classifier->classes() > 0) {
    run.model.model->module().eval();
    metrics["test_accuracy"] = classification_accuracy(
        [&](const torch::Tensor& x) { return classifier->classify(x.to(device)); }, data.test);
  }
  if (sharded) reduce_means(*group, metrics, part.second, total);
  if (group && !group->is_writer()) return metrics;
  if (options.probe) metrics.update(evaluate_probe(*run.model.model, run.data, device));
  if (options.retrieval) metrics["retrieval"] = evaluate_retrieval(*run.model.model, run.data, device);
  if (corruption) {
    metrics["corrupted"] = evaluate_corrupted(*run.model.model, run.data, *corruption, device, false, &baseline);
  } else if (auto* denoiser = dynamic_cast<Corrupting*>(run.model.model.get());
             denoiser && denoiser->corruption().kind != CorruptionKind::none) {
    // A denoiser's figures on clean inputs say little (the photo denoiser, started as the
    // identity, scores 59 dB on clean test patches): beside them, those on what it restores.
    metrics["corrupted"] = evaluate_corrupted(*run.model.model, run.data, denoiser->corruption(), device, true, &baseline);
  }
  // Sample quality, where the feature network means something: generative models of the
  // Fashion-MNIST images themselves.
  if (auto* generative = dynamic_cast<Generative*>(run.model.model.get());
      generative && run.data_options.dataset == "fashion-mnist" && !run.data_options.center &&
      !run.data_options.standardize) {
    FashionNet net = load_fashion_net(shipped_fashion_net_path());
    run.model.model->module().eval();
    metrics.update(evaluate_sample_quality(*generative, run.data, net, options.fd_samples));
  }
  metrics["family"] = run.config["model"]["family"];
  metrics["run"] = run_dir.string();
  metrics["checkpoint"] = checkpoint_json(run_dir);
  write_text_atomically(run_dir / kEvalFile, json_text(metrics, 2) + "\n");
  return metrics;
}

}  // namespace torchae
