#include "torchae/train/layerwise.h"

#include "torchae/core/error.h"
#include "torchae/core/runtime.h"

#include <torch/torch.h>

#include <fmt/format.h>

namespace torchae {

LayerwisePretrainer::LayerwisePretrainer(Stacked model, TrainOptions options, std::filesystem::path run_dir)
    : model_(std::move(model)), options_(std::move(options)), run_dir_(std::move(run_dir)) {
  auto with = [&](int64_t epochs, double lr) {
    TrainOptions o = options_;
    if (epochs > 0) o.epochs = epochs;
    if (lr > 0) o.lr = lr;
    return o;
  };
  const StackedOptions& o = model_->options;
  if (o.pretrain()) {
    for (std::size_t l = 0; l < o.layers().size(); ++l) {
      const StackedLayer& layer = o.layers()[l];
      stages_.push_back({"pretrain", static_cast<int64_t>(l + 1), model_->layers()[l], with(layer.epochs, layer.lr)});
    }
  }
  if (o.finetune()) stages_.push_back({"finetune", 0, model_.ptr(), with(o.finetune_epochs(), o.finetune_lr())});
  if (o.classify()) stages_.push_back({"classify", 0, model_.ptr(), with(o.classify_epochs(), o.classify_lr())});
}

bool LayerwisePretrainer::resume() {
  resume_stage_ = checkpoint_stage(run_dir_);
  if (resume_stage_ >= static_cast<int64_t>(stages_.size())) {
    throw Error(fmt::format("{}: the checkpoint was written in stage {}, but this run has {} stages",
                            (run_dir_ / kCheckpointFile).string(), resume_stage_ + 1, stages_.size()));
  }
  return resume_stage_ >= 0;
}

void LayerwisePretrainer::fit(const Dataset& train, const Dataset& validation) {
  model_->to(resolve_device(options_.device));
  // The codes the next pretraining stage trains on, and how many layers made them.
  Dataset codes_train = train, codes_validation = validation;
  std::size_t depth = 0;
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const StagePlan& stage = stages_[i];
    if (static_cast<int64_t>(i) < resume_stage_) continue;
    const bool pretraining = stage.phase == "pretrain";
    TrainingStage where{static_cast<int64_t>(i), Json{{"phase", stage.phase}}, stage.phase, model_.get()};
    if (pretraining) {
      where.tag["layer"] = stage.layer;
      where.name = fmt::format("pretrain layer {}/{}", stage.layer, model_->layers().size());
    }
    model_->set_phase(stage.phase == "classify" ? StackedPhase::classify : StackedPhase::reconstruct);
    Trainer trainer(stage.model, stage.options, run_dir_, where);
    // The checkpoint holds the whole model: resuming restores the stages done before this one
    // too, whose layers make the codes below.
    if (static_cast<int64_t>(i) == resume_stage_) trainer.resume();
    if (pretraining) {
      for (; depth + 1 < static_cast<std::size_t>(stage.layer); ++depth) {
        Autoencoder& below = *model_->layers()[depth];
        codes_train = encode_dataset(below, codes_train);
        codes_validation = encode_dataset(below, codes_validation);
      }
    }
    if (on_epoch_end_) trainer.on_epoch_end([&](const EpochRecord& record) { on_epoch_end_(stage, record); });
    try {
      trainer.fit(pretraining ? codes_train : train, pretraining ? codes_validation : validation);
    } catch (...) {
      model_->set_phase(StackedPhase::reconstruct);
      throw;
    }
    model_->set_phase(StackedPhase::reconstruct);
  }
}

}  // namespace torchae
