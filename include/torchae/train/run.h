#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/eval/ais.h"
#include "torchae/eval/frechet.h"
#include "torchae/eval/metrics.h"
#include "torchae/eval/retrieval.h"
#include "torchae/models/registry.h"
#include "torchae/train/trainer.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// A configuration read strictly: each section resolved (defaults filled in), the data
/// loaded and the model built, ready to train or evaluate.
struct Run {
  /// The resolved configuration, as written to config.json.
  Json config;
  DataOptions data_options;
  TrainOptions train_options;
  DataSplits data;
  BuiltModel model;
};

/// The configuration of a run that a program trains itself: the model as the factory resolved it,
/// the data and train sections as the options are. Recorded in a `Trainer` with a run directory
/// (`Trainer::record_config`), it is written as config.json, and the directory is a run that
/// `eval`, `export`, `viz` and `report` read like one that `torchae train` wrote.
///
///   const BuiltModel built = build_model({{"family", "vae"}}, data.spec);
///   Trainer trainer(built.model, options, "runs/script");
///   trainer.record_config(run_config(built, data_options, options));
///   trainer.fit(data.train, data.validation);
Json run_config(const BuiltModel& model, const DataOptions& data, const TrainOptions& train);

/// Whether `value` at `key` (a dotted leaf, "model.skips" or "model.blocks.0") is what a model
/// option added since checkpoints were first written takes to keep the models of earlier runs
/// what they were: a checkpoint or an archive without the key was trained so.
bool added_with_old_behaviour(const std::string& key, const Json& value);

/// Resolves `config` ({"model": ..., "data": ..., "train": ...}; any section may be absent),
/// seeds the global generator with train.seed, loads the data (the test split only when
/// `with_test`) and builds the model. Unknown keys and bad values are refused by name.
Run prepare_run(const Json& config, bool with_test);

/// Trains a new run into `run_dir` (created; refused when it already holds a run). With `group`
/// (`join_process_group`), data-parallel: every rank calls it with the same configuration (checked:
/// the resolved configurations must be equal), and rank 0 alone writes `run_dir`. `reporter`:
/// who is told how training goes (`console_reporter()` for the command line's); null: no one.
void train_run(const Json& config, const std::filesystem::path& run_dir,
               std::shared_ptr<ProcessGroup> group = nullptr, std::shared_ptr<Reporter> reporter = nullptr);

/// Trains `run` into `run_dir` (continuing its checkpoint when `resume`) through the stages
/// the model describes (`StagedTrainer`: one, for a model that is not `Staged`).
void fit_run(Run& run, const std::filesystem::path& run_dir, bool resume);

/// Continues the run in `run_dir` exactly where its checkpoint stopped (from epoch 0 when it
/// stopped before writing one). `overrides` are
/// `--set` assignments; only train.epochs, train.device, train.threads and train.progress
/// may change on resume (anything else would make the continuation differ from the run). With
/// `group`, data-parallel, under the same world size as before or another: every rank reads the
/// run directory (on a file system they share) and rank 0 alone writes it.
void resume_run(const std::filesystem::path& run_dir, const std::vector<std::string>& overrides,
                std::shared_ptr<ProcessGroup> group = nullptr, std::shared_ptr<Reporter> reporter = nullptr);

/// Loads a run's configuration and trained weights (on the CPU). A non-empty `device` replaces
/// the run's train.device in `Run::train_options` (not in `Run::config`): a run trained on
/// "cuda" can be evaluated, exported and drawn on a machine without one.
Run load_run(const std::filesystem::path& run_dir, bool with_test, const std::string& device = {});

/// What `torchae eval` computes beyond the reconstruction metrics.
struct EvalOptions {
  /// A variational model's likelihood: importance samples per test image.
  int64_t iw_samples = kDefaultIwSamples;
  /// Add the linear-probe accuracy of the codes (`evaluate_probe`).
  bool probe = false;
  /// Add the retrieval metrics of a model with a binary code against the classical hashing
  /// methods (`evaluate_retrieval`), under "retrieval".
  bool retrieval = false;
  /// A generative model of Fashion-MNIST: samples scored by fd_fashion (`evaluate_sample_quality`).
  int64_t fd_samples = kDefaultFdSamples;
  /// A Boltzmann machine's log Z by annealed importance sampling (`evaluate_partition`): the
  /// inverse temperatures of a run and the number of runs.
  int64_t ais_temperatures = kDefaultAisTemperatures;
  int64_t ais_runs = kDefaultAisRuns;
  /// "KIND:LEVEL": add the scores of reconstructions of the test images so corrupted, against
  /// the clean ones (`evaluate_corrupted`), under "corrupted". Empty: none.
  std::string corrupt;
  /// Where to evaluate (auto, cpu, cuda, cuda:N); empty: the run's train.device.
  std::string device;
  /// The ranks of a data-parallel evaluation (`join_process_group`): each evaluates its shard of
  /// the test split and the per-example means are reduced over the ranks, so the figures are the
  /// one-process figures; the linear probe and sample quality are rank 0's; rank 0 writes eval.json.
  std::shared_ptr<ProcessGroup> group;
};

/// `torchae eval`: the test-set metrics of a trained run as JSON, also written to eval.json,
/// with the position of the checkpoint evaluated (`checkpoint_json`).
/// A model with a `Likelihood` adds it, a model with a classifier head its test accuracy, a
/// `Generative` model of Fashion-MNIST the quality of its samples.
Json evaluate_run(const std::filesystem::path& run_dir, const EvalOptions& options = {});
/// {"stage": S, "epoch": E} of a run's checkpoint: what an eval.json was computed from, so that
/// a run trained further since is evaluated again rather than reported stale.
Json checkpoint_json(const std::filesystem::path& run_dir);
/// The same for a run already loaded (with its test split) from `run_dir`.
Json evaluate_run(Run& run, const std::filesystem::path& run_dir, const EvalOptions& options = {});

}  // namespace torchae
