#pragma once

#include "torchae/models/autoencoder.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// One layer of a stacked autoencoder: its width, the shallow model that pretrains it, and
/// how long it pretrains.
///
///   StackedLayer layer{1000, "denoising", [=] { return Denoising(denoising_options).ptr(); }};
struct StackedLayer {
  /// Code width of the layer.
  int64_t units = 0;
  /// The shallow family's name (for messages and `pretty_print`).
  std::string family = "undercomplete";
  /// Makes the layer's shallow autoencoder from its options, resolved and typed when the stack
  /// was configured: its code has `units` elements, its input is the codes of the layer below.
  ModelMaker make;
  /// Pretraining epochs and learning rate (0: train.epochs, train.lr).
  int64_t epochs = 0;
  double lr = 0.0;
};

/// Options for `Stacked`.
struct StackedOptions {
  explicit StackedOptions(std::vector<StackedLayer> layers);

  /// The layers, input side first.
  TORCH_ARG(std::vector<StackedLayer>, layers);
  /// The phases that run, in this order.
  TORCH_ARG(bool, pretrain) = true;
  TORCH_ARG(bool, finetune) = true;
  TORCH_ARG(bool, classify) = false;
  /// Epochs and learning rate of the fine-tuning and classifier phases (0: train's).
  TORCH_ARG(int64_t, finetune_epochs) = 0;
  TORCH_ARG(double, finetune_lr) = 0.0;
  TORCH_ARG(int64_t, classify_epochs) = 0;
  TORCH_ARG(double, classify_lr) = 0.0;
  /// Classes of the softmax head (present when `classify` is on).
  TORCH_ARG(int64_t, classes) = 10;
  /// Dropout on every code on its way up, in the classifier phase's training (0: none).
  TORCH_ARG(double, classify_dropout) = 0.0;
};

/// What a stacked model is being trained for: its reconstruction (pretraining is its layers'
/// business, fine-tuning its own) or its classifier head (in its `classify` stage).
enum class StackedPhase { reconstruct, classify };

/// A deep autoencoder assembled from shallow ones (Bengio et al. 2007; Vincent et al. 2010):
/// layer l is a shallow autoencoder of its own family, pretrained on the codes of layers < l;
/// the stack encodes through the layers' encoders in order and decodes through their
/// decoders in reverse, with the very weights (tied ones included) the layers were trained
/// with, since the layers are its submodules. With `classify` it has a softmax head on the top
/// code. It describes its training as stages (`Staged`: each layer's pretraining, fine-tuning,
/// the head), which the generic `StagedTrainer` runs with the generic trainer.
///
///   Stacked sae(StackedOptions({{1000, "denoising", make_first}, {1000, "denoising", make_second}}).classify(true));
///   torch::Tensor scores = sae->classify(x);
class StackedImpl : public torch::nn::Cloneable<StackedImpl>,
                    public Autoencoder,
                    public Classifier,
                    public Staged,
                    public Hashing {
 public:
  explicit StackedImpl(StackedOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// The reconstruction; in the classify phase only the code and the class scores.
  Output forward(const torch::Tensor& input) override;
  torch::Tensor encode(const torch::Tensor& input) override;
  torch::Tensor decode(const torch::Tensor& code) override;
  Output reconstruct(const torch::Tensor& code) override;
  /// The bottom layer's reconstruction cost, on the whole stack.
  Losses loss(const torch::Tensor& target, const Output& output) override;
  torch::Tensor reconstruction_cost(const Output& output, const torch::Tensor& target) override;
  bool supervised() const override { return phase_ == StackedPhase::classify; }
  /// Cross-entropy of the head's scores ("ce"), with the batch's accuracy as a term.
  Losses supervised_loss(const Output& output, const torch::Tensor& labels) override;
  int64_t code_size() const override { return options.layers().back().units; }
  torch::nn::Module& module() override { return *this; }
  /// encode, decode, forward and (with a head) classify; each layer's methods as layer<l>_*.
  void script(ScriptModel& script) const override;

  torch::Tensor classify(const torch::Tensor& input) override;
  int64_t classes() const override { return options.classify() ? options.classes() : 0; }

  /// The top layer's binary code (Salakhutdinov & Hinton's semantic hashing is a stack whose top
  /// layer's code is binary): its bits, 0 when the top layer's code is real-valued.
  int64_t hash_bits() const override;
  torch::Tensor hash(const torch::Tensor& input) override;
  torch::Tensor relaxed_code(const torch::Tensor& input) override;

  /// pretrain (each layer on the codes of those below it), finetune, classify: those switched on.
  std::vector<Stage> stages() override;
  void enter_stage(std::size_t index) override;
  void leave_stage() override { phase_ = StackedPhase::reconstruct; }

  /// The layers, bottom first, each a shallow autoencoder of its family.
  const std::vector<std::shared_ptr<Autoencoder>>& layers() const { return layers_; }
  StackedPhase phase() const { return phase_; }

  StackedOptions options;

 private:
  /// The top code; in the classify phase's training, with classify_dropout on each code.
  torch::Tensor encode_for_head(const torch::Tensor& input);
  /// The input of the top layer: the code of the layers below it.
  torch::Tensor encode_below_top(const torch::Tensor& input);
  /// The top layer as `Hashing`, null when it has no binary code.
  Hashing* top_hashing() const;

  std::vector<std::shared_ptr<Autoencoder>> layers_;
  torch::nn::Linear head_{nullptr};
  StackedPhase phase_ = StackedPhase::reconstruct;
};

TORCH_MODULE(Stacked);

}  // namespace torchae
