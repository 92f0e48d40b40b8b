#include "torchae/train/staged.h"

#include "torchae/core/error.h"
#include "torchae/core/runtime.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>

namespace torchae {

namespace {

// The training and validation data of a stage, pushed through parts of the model.
struct Codes {
  /// The parts applied so far, in order.
  std::vector<std::shared_ptr<Autoencoder>> through;
  Dataset train, validation;

  // Moves on to the codes of `parts`: from the codes held when they extend the parts applied
  // so far (each pretraining stage adds one layer), else from `raw`.
  void advance(const std::vector<std::shared_ptr<Autoencoder>>& parts, const Dataset& raw_train,
               const Dataset& raw_validation) {
    const bool extends = through.size() <= parts.size() && std::equal(through.begin(), through.end(), parts.begin());
    if (!extends) {
      through.clear();
      train = raw_train;
      validation = raw_validation;
    }
    for (std::size_t i = through.size(); i < parts.size(); ++i) {
      train = encode_dataset(*parts[i], train);
      validation = encode_dataset(*parts[i], validation);
      through.push_back(parts[i]);
    }
  }
};

}  // namespace

StagedTrainer::StagedTrainer(std::shared_ptr<Autoencoder> model, TrainOptions options, std::filesystem::path run_dir)
    : model_(std::move(model)), options_(std::move(options)), run_dir_(std::move(run_dir)) {
  staged_ = dynamic_cast<Staged*>(model_.get());
  const std::vector<Stage> stages = staged_ ? staged_->stages() : std::vector<Stage>{{"", 0, model_, {}, 0, 0.0}};
  for (const Stage& stage : stages) {
    TrainOptions o = options_;
    if (stage.epochs > 0) o.epochs = stage.epochs;
    if (stage.lr > 0) o.lr = stage.lr;
    // A stack validates its denoising layers' pretraining on corrupted codes; the stages that
    // train on clean batches (fine-tuning) on clean ones.
    o.validate_corrupted = o.validate_corrupted && dynamic_cast<Corrupting*>(stage.model.get()) != nullptr;
    // Codes are not images: the stages that train on them see them as they are.
    if (!stage.inputs_through.empty()) o.augment = "none";
    stages_.push_back({stage, o});
  }
}

bool StagedTrainer::resume() {
  resume_stage_ = checkpoint_stage(run_dir_);
  if (resume_stage_ >= static_cast<int64_t>(stages_.size())) {
    throw Error(fmt::format("{}: the checkpoint was written in stage {}, but this run has {} stages",
                            (run_dir_ / kCheckpointFile).string(), resume_stage_ + 1, stages_.size()));
  }
  return resume_stage_ >= 0;
}

TrainingStage StagedTrainer::position(std::size_t i) const {
  TrainingStage where{static_cast<int64_t>(i), Json::object(), "", &model_->module()};
  const StagePlan& stage = stages_[i];
  if (!staged_) return where;
  where.tag["phase"] = stage.phase;
  where.name = stage.phase;
  if (stage.layer > 0) {
    where.tag["layer"] = stage.layer;
    const auto layers = std::count_if(stages_.begin(), stages_.end(),
                                      [&](const StagePlan& s) { return s.phase == stage.phase && s.layer > 0; });
    where.name = fmt::format("{} layer {}/{}", stage.phase, stage.layer, layers);
  }
  return where;
}

void StagedTrainer::fit_stage(std::size_t i, const std::function<void(Trainer&)>& fit) {
  const StagePlan& stage = stages_[i];
  if (staged_) staged_->enter_stage(i);
  try {
    Trainer trainer(stage.model, stage.options, run_dir_, position(i));
    trainer.record_config(config_);
    // The checkpoint holds the whole model: resuming restores the stages done before this
    // one too, whose parts make the codes this one trains on.
    if (static_cast<int64_t>(i) == resume_stage_) trainer.resume();
    if (on_epoch_end_) trainer.on_epoch_end([&](const EpochRecord& record) { on_epoch_end_(stage, record); });
    fit(trainer);
  } catch (...) {
    if (staged_) staged_->leave_stage();
    throw;
  }
  if (staged_) staged_->leave_stage();
}

void StagedTrainer::fit(const BatchSource& train, const Dataset& validation, LoaderOptions loader) {
  if (staged_) {
    throw Error("config: data.source: a model trained in stages (a stack's layerwise pretraining) trains its later "
                "stages on codes of the training set held in memory, and cannot stream it; set data.source "
                "\"memory\"");
  }
  model_->module().to(training_device(options_));
  fit_stage(0, [&](Trainer& trainer) { trainer.fit(train, validation, loader); });
}

void StagedTrainer::fit(const Dataset& train, const Dataset& validation) {
  model_->module().to(training_device(options_));
  Codes codes{{}, train, validation};
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    if (static_cast<int64_t>(i) < resume_stage_) continue;
    fit_stage(i, [&](Trainer& trainer) {
      codes.advance(stages_[i].inputs_through, train, validation);
      trainer.fit(codes.train, codes.validation);
    });
  }
}

}  // namespace torchae
