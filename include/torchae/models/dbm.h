#pragma once

#include "torchae/models/autoencoder.h"
#include "torchae/models/rbm.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// Options for `DBM`.
struct DBMOptions {
  DBMOptions(std::vector<int64_t> input_shape, std::vector<int64_t> layers);

  /// Shape of one example: as many binary visible units as it has elements.
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// The widths of the hidden layers, bottom first (at least 2).
  TORCH_ARG(std::vector<int64_t>, layers);
  /// Mean-field updates of the posterior q(h|v) (each a pass over every hidden layer).
  TORCH_ARG(int64_t, mean_field_steps) = 10;
  /// Gibbs sweeps of the persistent chains per update, and their number.
  TORCH_ARG(int64_t, cd_k) = 1;
  TORCH_ARG(int64_t, chains) = 100;
  /// Gibbs sweeps of `sample(n)` (and of the exported `sample`), from random states.
  TORCH_ARG(int64_t, gibbs_steps) = 1000;
  /// L2 cost on the weights, 0.5 * cost * sum_l ||W_l||^2.
  TORCH_ARG(double, weight_cost) = 0.0;
  /// Each training batch binarised afresh, x ~ Bernoulli(pixel).
  TORCH_ARG(bool, binarize) = false;
  TORCH_ARG(double, init_std) = 0.01;
  /// The stages that run, in this order: greedy pretraining by modified RBMs (each layer's
  /// epochs, learning rate and CD steps), the joint training of the DBM, the discriminative
  /// fine-tuning of a classifier initialised from it (0 epochs or lr: train's).
  TORCH_ARG(bool, pretrain) = true;
  TORCH_ARG(int64_t, pretrain_epochs) = 0;
  TORCH_ARG(double, pretrain_lr) = 0.0;
  TORCH_ARG(int64_t, pretrain_cd_k) = 1;
  TORCH_ARG(bool, train) = true;
  TORCH_ARG(bool, classify) = false;
  TORCH_ARG(int64_t, classify_epochs) = 0;
  TORCH_ARG(double, classify_lr) = 0.0;
  TORCH_ARG(int64_t, classes) = 10;
};

/// A deep Boltzmann machine (Salakhutdinov & Hinton, AISTATS 2009) of binary units:
/// E(v, h) = -b.v - sum_l c_l.h_l - sum_l h_l.W_l h_(l-1). Its layers are pretrained greedily as
/// modified RBMs (`RBMOptions::up_scale`, `down_scale`: the bottom one with its visible input
/// doubled, the top one with its hidden layer doubled, a middle one both), each layer's bias in
/// the DBM the mean of the two RBMs' estimates of it; then trained as a whole by the generic
/// trainer on the surrogate E(v, q) - E(chains), whose gradient is the data term under the
/// mean-field posterior q less the model term of persistent Gibbs chains (PCD); then,
/// optionally, a classifier initialised from it is fine-tuned on labels, its first hidden layer
/// given the mean-field q(h_2|v) of the DBM as an extra input. The classifier's weights are
/// copies (made when its stage begins), so the DBM stays the generative model it was trained to
/// be: `eval` reports its likelihood and the classifier's accuracy from one run. `encode` is the
/// mean-field posterior of the top layer; `forward` the visible means given that of the first.
///
///   DBM dbm(DBMOptions({1, 28, 28}, {500, 1000}).classify(true));
///   StagedTrainer(dbm.ptr(), options, "runs/dbm").fit(train, validation);
class DBMImpl : public torch::nn::Cloneable<DBMImpl>,
                public Autoencoder,
                public Generative,
                public Annealable,
                public GibbsSampler,
                public Classifier,
                public Staged {
 public:
  explicit DBMImpl(DBMOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// A checkpoint from the classifier's stage on holds the classifier's weights: they are made,
  /// then read.
  void load(torch::serialize::InputArchive& archive) override;

  Output forward(const torch::Tensor& input) override;
  torch::Tensor encode(const torch::Tensor& input) override;
  torch::Tensor decode(const torch::Tensor& code) override;
  Output reconstruct(const torch::Tensor& code) override;
  /// With the chains' states: "recon" (detached), "energy_gap" (the surrogate) and the weight
  /// cost; without (eval mode): the reconstruction's cross-entropy.
  Losses loss(const torch::Tensor& target, const Output& output) override;
  torch::Tensor reconstruction_cost(const Output& output, const torch::Tensor& target) override;
  bool supervised() const override { return classifying_; }
  Losses supervised_loss(const Output& output, const torch::Tensor& labels) override;
  int64_t code_size() const override { return options.layers().back(); }
  torch::nn::Module& module() override { return *this; }
  /// encode (mean field), decode, forward, mean_field, sample(n) and, with a head, classify.
  void script(ScriptModel& script) const override;

  torch::Tensor sample(int64_t n) override;
  torch::Tensor gibbs(const torch::Tensor& start, int64_t steps) override;
  torch::Tensor random_visible(int64_t n) override;
  int64_t sample_steps() const override { return options.gibbs_steps(); }

  std::unique_ptr<AnnealingPath> annealing_path(const torch::Tensor& train) override;
  /// The variational lower bound of log p*(x): E_q[-E(x, h)] + H(q), q the mean-field posterior.
  torch::Tensor log_unnormalized(const torch::Tensor& x) override;
  bool bound() const override { return true; }
  bool binarizes() const override { return options.binarize(); }
  /// log Z summed over every hidden state (the visible units summed out), at most 20 hidden units.
  std::optional<double> exact_log_partition() override;

  torch::Tensor classify(const torch::Tensor& input) override;
  int64_t classes() const override { return options.classify() ? options.classes() : 0; }

  std::vector<Stage> stages() override;
  void enter_stage(std::size_t index) override;
  void leave_stage() override { classifying_ = false; }

  /// The mean-field posterior of each hidden layer given flat visible states, bottom first
  /// (Salakhutdinov & Hinton 2009, section 2.2), without gradients: started by a bottom-up pass
  /// with the inputs of all but the top layer doubled, then `mean_field_steps` updates.
  std::vector<torch::Tensor> mean_field(const torch::Tensor& v);
  /// The energy of each joint state (states[0] the visible units), [N].
  torch::Tensor energy(const std::vector<torch::Tensor>& states);
  /// The modified RBMs that pretrain the layers, bottom first; their weights are the DBM's.
  const std::vector<RBM>& layers() const { return layers_; }
  /// W_l [n_l, n_(l-1)] and the biases b_l of each layer (0: the visible), with gradients.
  std::vector<torch::Tensor> weights() const;
  std::vector<torch::Tensor> biases() const;
  /// Makes the classifier's weights, copies of the DBM's as they stand (once; the classify stage
  /// calls it): per layer a weight and a bias, and the weight of the extra input q(h_2|v).
  void make_classifier();
  bool has_classifier() const { return !classifier_.empty(); }

  DBMOptions options;

 private:
  /// The input of layer l (0: visible) given its neighbours in `states`.
  torch::Tensor layer_input(const std::vector<torch::Tensor>& states, std::size_t l, const std::vector<torch::Tensor>& w,
                            const std::vector<torch::Tensor>& b) const;
  /// One Gibbs sweep: the odd layers given the even ones, then the even ones (the visible included).
  void gibbs_sweep(std::vector<torch::Tensor>& states);
  /// Joint states for chains starting at flat visible `v`: hidden layers drawn bottom-up.
  std::vector<torch::Tensor> start_chains(const torch::Tensor& v);
  torch::Tensor view_as_input(const torch::Tensor& flat) const;

  std::vector<RBM> layers_;
  std::vector<torch::Tensor> chains_;
  /// The classifier's weights: W_1..W_L, b_1..b_L, then the extra input's weight (empty until made).
  std::vector<torch::Tensor> classifier_;
  torch::nn::Linear head_{nullptr};
  bool classifying_ = false;
};

TORCH_MODULE(DBM);

}  // namespace torchae
