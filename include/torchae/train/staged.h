#pragma once

#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"
#include "torchae/train/trainer.h"

#include <torch/nn/pimpl.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torchae {

/// One stage of a run, as `StagedTrainer` runs it: the model's `Stage` (its phase is empty for
/// the one stage of a model that is not `Staged`) with its train options.
struct StagePlan : Stage {
  /// The run's train options with the stage's epochs and learning rate.
  TrainOptions options;
};

/// Trains any model through the stages it describes, each by the generic `Trainer`: a `Staged`
/// model (a stack: each layer's pretraining, fine-tuning, the classifier head) stage by stage,
/// any other model in one stage, as a whole. A stage that trains on the codes of parts of the
/// model gets them computed once, in eval mode and without gradients, from the codes the stage
/// before it used, and kept in memory: nothing is pushed through frozen layers at every batch.
/// Every stage writes to the one run directory: in a run of several stages, its lines in
/// metrics.jsonl carry "phase", "layer" and "stage", and checkpoint.pt holds the whole model
/// with the stage's optimizer, so `resume()` continues from inside any stage, exactly.
///
///   StagedTrainer trainer(model, options, "runs/sdae");
///   trainer.fit(data.train, data.validation);
class StagedTrainer {
 public:
  StagedTrainer(std::shared_ptr<Autoencoder> model, TrainOptions options, std::filesystem::path run_dir = {});
  /// The same for a family's module holder (`Stacked`, `Undercomplete`, ...).
  template <typename Impl>
  StagedTrainer(const torch::nn::ModuleHolder<Impl>& model, TrainOptions options, std::filesystem::path run_dir = {})
      : StagedTrainer(std::shared_ptr<Autoencoder>(model.ptr()), std::move(options), std::move(run_dir)) {}

  /// The stages, in the order they run.
  const std::vector<StagePlan>& stages() const { return stages_; }
  /// Continues from run_dir/checkpoint.pt when there is one (false otherwise): stages before
  /// the checkpoint's are done, and its own resumes where it stopped.
  bool resume();
  /// The run's configuration, recorded in the checkpoint of every stage (`Trainer::record_config`).
  void record_config(Json config) { config_ = std::move(config); }
  /// Runs every stage not done yet.
  void fit(const Dataset& train, const Dataset& validation);
  /// The same on a streamed training set (`Trainer::fit`); a model of several stages is refused,
  /// since its later stages train on codes of the whole training set held in memory.
  void fit(const BatchSource& train, const Dataset& validation, LoaderOptions loader);
  /// Called after each epoch of every stage, once its checkpoint is written.
  void on_epoch_end(std::function<void(const StagePlan&, const EpochRecord&)> callback) {
    on_epoch_end_ = std::move(callback);
  }

 private:
  /// Where stage `i` sits in the run, as its `Trainer` records it.
  TrainingStage position(std::size_t i) const;
  /// Runs stage `i`: its `Trainer` made (and resumed, when the checkpoint is of this stage), then
  /// `fit` with it, between the model's enter_stage and leave_stage.
  void fit_stage(std::size_t i, const std::function<void(Trainer&)>& fit);

  std::shared_ptr<Autoencoder> model_;
  /// The model's `Staged` face; null for a model trained in one stage.
  Staged* staged_ = nullptr;
  TrainOptions options_;
  std::filesystem::path run_dir_;
  std::vector<StagePlan> stages_;
  Json config_;
  /// The stage the checkpoint was written in (-1: start from the beginning).
  int64_t resume_stage_ = -1;
  std::function<void(const StagePlan&, const EpochRecord&)> on_epoch_end_;
};

}  // namespace torchae
