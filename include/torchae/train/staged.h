#pragma once

#include "torchae/data/dataset.h"
#include "torchae/models/stacked.h"
#include "torchae/train/trainer.h"

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// One stage of a stacked model's training, as `LayerwisePretrainer` runs it.
struct StagePlan {
  /// "pretrain", "finetune" or "classify".
  std::string phase;
  /// 1-based layer of a pretraining stage; 0 otherwise.
  int64_t layer = 0;
  /// What the generic trainer trains: the layer's shallow autoencoder, or the whole stack.
  std::shared_ptr<Autoencoder> model;
  /// The run's train options with the stage's epochs and learning rate.
  TrainOptions options;
};

/// Trains a `Stacked` model phase by phase, each stage by the generic `Trainer`:
///  - pretrain: layer l, as the shallow autoencoder of its family, on the codes of layers
///    1..l-1. Those are computed once per layer, in eval mode and without gradients, from the
///    codes the layer below was trained on, and kept in memory: nothing is pushed through
///    frozen layers at every batch;
///  - finetune: the whole stack on reconstruction;
///  - classify: the encoder and the softmax head on the labels.
/// Every stage writes to the one run directory: its lines in metrics.jsonl carry "phase",
/// "layer" and "stage", and checkpoint.pt holds the whole model with the stage's optimizer, so
/// `resume()` continues from inside any stage, exactly.
///
///   LayerwisePretrainer pretrainer(stacked, options, "runs/sdae");
///   pretrainer.fit(data.train, data.validation);
class LayerwisePretrainer {
 public:
  LayerwisePretrainer(Stacked model, TrainOptions options, std::filesystem::path run_dir = {});

  /// The stages, in the order they run.
  const std::vector<StagePlan>& stages() const { return stages_; }
  /// Continues from run_dir/checkpoint.pt when there is one (false otherwise): stages before
  /// the checkpoint's are done, and its own resumes where it stopped.
  bool resume();
  /// Runs every stage not done yet.
  void fit(const Dataset& train, const Dataset& validation);
  /// Called after each epoch of every stage, once its checkpoint is written.
  void on_epoch_end(std::function<void(const StagePlan&, const EpochRecord&)> callback) {
    on_epoch_end_ = std::move(callback);
  }

 private:
  Stacked model_;
  TrainOptions options_;
  std::filesystem::path run_dir_;
  std::vector<StagePlan> stages_;
  /// The stage the checkpoint was written in (-1: start from the beginning).
  int64_t resume_stage_ = -1;
  std::function<void(const StagePlan&, const EpochRecord&)> on_epoch_end_;
};

}  // namespace torchae
