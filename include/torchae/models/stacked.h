#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// One layer of a stacked autoencoder: its width and the shallow family that pretrains it.
struct StackedLayer {
  /// Code width of the layer.
  int64_t units = 0;
  /// The shallow family: undercomplete, dropout, sparse, ksparse, denoising or contractive.
  std::string family = "undercomplete";
  /// The family's options, resolved (code_size excluded: it is `units`).
  Json options = Json::object();
  /// Pretraining epochs and learning rate (0: train.epochs, train.lr).
  int64_t epochs = 0;
  double lr = 0.0;
};

/// Options for `Stacked`.
struct StackedOptions {
  StackedOptions(DataSpec data, std::vector<StackedLayer> layers);

  /// The data the bottom layer sees.
  TORCH_ARG(DataSpec, data);
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
/// business, fine-tuning its own) or its classifier head.
enum class StackedPhase { reconstruct, classify };

/// A deep autoencoder assembled from shallow ones (Bengio et al. 2007; Vincent et al. 2010):
/// layer l is a shallow autoencoder of its own family, pretrained on the codes of layers < l;
/// the stack encodes through the layers' encoders in order and decodes through their
/// decoders in reverse, with the very weights (tied ones included) the layers were trained
/// with, since the layers are its submodules. With `classify` it has a softmax head on the top
/// code. `LayerwisePretrainer` trains it phase by phase with the generic trainer.
///
///   Stacked sae(StackedOptions(spec, {{1000, "denoising"}, {1000, "denoising"}}).classify(true));
///   torch::Tensor scores = sae->classify(x);
class StackedImpl : public torch::nn::Cloneable<StackedImpl>, public Autoencoder, public Classifier {
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
  Losses loss(const torch::Tensor& target, const torch::Tensor& input, const Output& output) override;
  bool supervised() const override { return phase_ == StackedPhase::classify; }
  /// Cross-entropy of the head's scores ("ce"), with the batch's accuracy as a term.
  Losses supervised_loss(const Output& output, const torch::Tensor& labels) override;
  int64_t code_size() const override { return options.layers().back().units; }
  torch::nn::Module& module() override { return *this; }
  /// encode, decode, forward and (with a head) classify; each layer's methods as layer<l>_*.
  void script(ScriptModel& script) const override;

  torch::Tensor classify(const torch::Tensor& input) override;
  int64_t classes() const override { return options.classify() ? options.classes() : 0; }

  /// The layers, bottom first, each a shallow autoencoder of its family.
  const std::vector<std::shared_ptr<Autoencoder>>& layers() const { return layers_; }
  /// The data spec layer `l` (0-based) is built for: the input's, or the codes below it.
  DataSpec layer_spec(std::size_t l) const;
  StackedPhase phase() const { return phase_; }
  void set_phase(StackedPhase phase) { phase_ = phase; }

  StackedOptions options;

 private:
  /// The top code; in the classify phase's training, with classify_dropout on each code.
  torch::Tensor encode_for_head(const torch::Tensor& input);

  std::vector<std::shared_ptr<Autoencoder>> layers_;
  torch::nn::Linear head_{nullptr};
  ReconstructionLoss loss_ = ReconstructionLoss::bce;
  StackedPhase phase_ = StackedPhase::reconstruct;
};

TORCH_MODULE(Stacked);

/// The families a stack's layers may use.
const std::vector<std::string>& stackable_families();

}  // namespace torchae
