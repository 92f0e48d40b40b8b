#pragma once

#include "torchae/data/corruption.h"
#include "torchae/data/dataset.h"
#include "torchae/export/script.h"

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace torchae {

/// What `forward` returns. Fields a family does not produce stay undefined.
struct Output {
  /// The reconstruction in data space (after the output activation), shaped like the input.
  torch::Tensor reconstruction;
  /// The decoder's pre-activation output; with a sigmoid output, these are the logits from
  /// which binary cross-entropy is computed stably.
  torch::Tensor logits;
  /// The code h = f(x), [batch, code_size].
  torch::Tensor code;
  /// Gaussian posterior parameters (variational families).
  torch::Tensor mu;
  torch::Tensor log_var;
  /// What the encoder actually saw, when that is not the batch given to `forward`: the
  /// corrupted input of a denoising model, or the input leaf a Jacobian penalty differentiates.
  torch::Tensor input;
  /// Bool, the input's shape: the components a corruption chose.
  torch::Tensor mask;
  /// The noise level map a denoiser was told with its corrupted input in training (`NoiseAware`),
  /// [B, 1, H, W].
  torch::Tensor noise_level;
  /// Jacobian-vector products of the code, J_f(x) v, for random directions v pushed forward
  /// through the encoder beside the input, [probes, batch, code] (the Hutchinson contractive
  /// penalty's).
  torch::Tensor code_tangents;
  /// The encoder's ||J_f(x)||_F^2, averaged over the batch, when the forward pass computed it
  /// (the contractive family's closed form, with the encoder's layer in one node).
  torch::Tensor jacobian_norm;
  /// Class scores (logits) of a classifier head, [batch, classes].
  torch::Tensor scores;
  /// Samples of the model's own distribution drawn for its objective, detached: the negative
  /// phase of a Boltzmann machine (CD-k's reconstructions, PCD's persistent chains; a deep one's
  /// layers side by side).
  torch::Tensor negative;
  /// The data's side of a deep Boltzmann machine's objective, detached: the mean-field posterior
  /// of its hidden layers, side by side.
  torch::Tensor positive;
};

/// A loss with its named parts: `total` is what is minimised; `terms` are for logging
/// ("recon", "kl", ...), in a stable order.
struct Losses {
  torch::Tensor total;
  std::vector<std::pair<std::string, torch::Tensor>> terms;
};

/// Reconstruction costs shared by the families.
enum class ReconstructionLoss {
  /// Mean squared error per element.
  mse,
  /// Binary cross-entropy per element, computed from logits (needs a sigmoid output).
  bce,
};

ReconstructionLoss parse_reconstruction_loss(const std::string& name);
std::string to_string(ReconstructionLoss loss);

/// A classifier head's supervised loss: the cross-entropy of class `scores` (logits, [batch,
/// classes]) against `labels` (int64, [batch]), "ce", with the batch's accuracy as a term.
Losses classification_losses(const torch::Tensor& scores, const torch::Tensor& labels);

/// The cost of `output` against `target`, averaged over elements.
torch::Tensor reconstruction_loss(ReconstructionLoss kind, const Output& output,
                                  const torch::Tensor& target);
/// The same cost per element, unreduced (for weighted losses).
torch::Tensor reconstruction_loss_elements(ReconstructionLoss kind, const Output& output,
                                           const torch::Tensor& target);

/// The interface every family implements next to its `torch::nn::Module` base, and all the
/// trainer, evaluation and export know of a model.
///
///   std::shared_ptr<Autoencoder> ae = build_model(config["model"], data.spec).model;
///   Output out = ae->forward(x);
///   Losses l = ae->loss(x, out);
class Autoencoder {
 public:
  virtual ~Autoencoder() = default;

  /// Full pass: encode then decode.
  virtual Output forward(const torch::Tensor& input) = 0;
  /// The code of `input`, [batch, code_size].
  virtual torch::Tensor encode(const torch::Tensor& input) = 0;
  /// The code before its activation. Code activations are monotone, so a unit's maximising
  /// input is the same for both; activation maximisation ascends this one, whose gradient does
  /// not vanish when a sigmoid unit saturates. Defaults to `encode`.
  virtual torch::Tensor encode_preactivation(const torch::Tensor& input) { return encode(input); }
  /// Data-space output for `code`, shaped like the model's input.
  virtual torch::Tensor decode(const torch::Tensor& code) = 0;
  /// The decoder's `Output` for `code` as `forward` computes it (the reconstruction, the logits
  /// a bce loss needs, the code), for a model that decodes another's code: the bottom layer of
  /// a stack. Defaults to `decode` without logits.
  virtual Output reconstruct(const torch::Tensor& code);
  /// The training objective of `output`, what `forward` made of a batch, against `target`, the
  /// clean batch (what the encoder saw, when that differs, is in `output.input`).
  virtual Losses loss(const torch::Tensor& target, const Output& output) = 0;
  /// The reconstruction term of the loss alone, without penalties, averaged over elements:
  /// what a stack whose bottom layer this model is fine-tunes on. Defaults to the squared error.
  virtual torch::Tensor reconstruction_cost(const Output& output, const torch::Tensor& target);
  /// Whether the objective is currently supervised (a classifier head being fine-tuned): the
  /// trainer then calls `supervised_loss` with the labels of the batch instead of `loss`.
  virtual bool supervised() const { return false; }
  /// The supervised objective of `output` against `labels` (int64, [batch]). The default throws.
  virtual Losses supervised_loss(const Output& output, const torch::Tensor& labels);
  /// Width of the code.
  virtual int64_t code_size() const = 0;
  /// Besides its training shape, the model takes images whose sides are any multiple of this
  /// (a fully convolutional network: its total stride); 0 when it takes its training shape
  /// only. Export records it in the archive, where restore reads it.
  virtual int64_t size_multiple() const { return 0; }
  /// Whether every reconstruction passes through the code, so that the code's width bounds what
  /// the model keeps of its input: what makes PCA with as many components its baseline. False
  /// for a network whose skips or residual path carry the input around the code. Defaults to true.
  virtual bool bottlenecked() const { return true; }
  /// Called by the trainer before each epoch (0-based) of `epochs`, for schedules that live
  /// in the model (k-sparse annealing). Derived from the epoch alone, so resume stays exact.
  virtual void set_progress(int64_t /*epoch*/, int64_t /*epochs*/) {}
  /// Called by a stack before it trains its layers together, as one deep autoencoder: a layer
  /// pretrained as something other than an autoencoder (an RBM, whose decoder is its encoder's
  /// transpose) becomes one, its decoder getting weights of its own, which start from the
  /// transposed encoder's (Hinton & Salakhutdinov 2006, "unrolling"). Called again, it changes
  /// nothing. Defaults to nothing.
  virtual void unroll() {}
  /// The module itself: parameters, train()/eval(), to(device), save/load.
  virtual torch::nn::Module& module() = 0;
  /// Describes the model as it computes in eval mode, in TorchScript: `encode`, `decode` and
  /// `forward` (the reconstruction), with the tensors they use. This is what `torchae export`
  /// compiles and checks against the model. The default throws: a family that cannot be
  /// exported says so rather than export something else.
  virtual void script(ScriptModel& script) const;
};

/// Builds a fresh, freshly initialised model from options resolved beforehand (what a family's
/// builder returns, and what a stack keeps for each layer).
using ModelMaker = std::function<std::shared_ptr<Autoencoder>()>;

/// The codes of `data` (labels kept), in eval mode, without gradients, in batches, on the
/// device the model is on: what a stack's next layer or a linear probe trains on.
Dataset encode_dataset(Autoencoder& model, const Dataset& data, int64_t batch_size = 1000);

/// A family with a prior to sample from (vae, wae), next to `Autoencoder`: `viz --what
/// samples` draws with it, and its export adds `sample(n)`.
class Generative {
 public:
  virtual ~Generative() = default;
  /// `n` codes drawn from the prior, decoded: [n, input shape...].
  virtual torch::Tensor sample(int64_t n) = 0;
};

/// A model trained against an adversary (a WAE-GAN's latent discriminator), next to
/// `Autoencoder`: the trainer gives the adversary's parameters their own optimizer (same kind
/// and betas as the model's, at `adversary_lr`, checkpointed with the model's) and, after each
/// step of the model on a batch, one step of the adversary on that batch's output.
class Adversarial {
 public:
  virtual ~Adversarial() = default;
  /// The adversary's parameters, kept out of the model's optimizer; empty: no adversary.
  virtual std::vector<torch::Tensor> adversary_parameters() = 0;
  /// The adversary's loss on the output of a batch (what it needs of it, detached).
  virtual Losses adversary_loss(const Output& output) = 0;
  /// The adversary's learning rate (the model's schedule does not apply to it).
  virtual double adversary_lr() const = 0;
};

/// A model trained on corrupted copies of its batches (denoising), next to `Autoencoder`: with
/// `train.validate_corrupted` the trainer validates it on a corrupted copy of the validation set,
/// so that the validation loss measures what it is trained to do.
class Corrupting {
 public:
  virtual ~Corrupting() = default;
  /// How a batch is corrupted in training mode.
  virtual const CorruptionOptions& corruption() const = 0;
  /// What `forward` in training mode makes of a batch corrupted as `corrupted`, computed in the
  /// module's current mode (eval mode, for validation).
  virtual Output forward_corrupted(const Corrupted& corrupted) = 0;
};

/// A model with a classifier head, next to `Autoencoder` (a stacked model trained with its
/// `classify` phase): `eval` reports its test accuracy, and its export adds `classify(x)`.
class Classifier {
 public:
  virtual ~Classifier() = default;
  /// Class scores (logits) of `input`, [batch, classes].
  virtual torch::Tensor classify(const torch::Tensor& input) = 0;
  /// Number of classes; 0 when the model has no head.
  virtual int64_t classes() const = 0;
};

/// A model with a likelihood, next to `Autoencoder` (vae): `eval` reports its test ELBO and
/// importance-sampled log-likelihood.
class Likelihood {
 public:
  virtual ~Likelihood() = default;
  /// The ELBO of each example (one sample of z, KL in closed form), in nats: [N].
  virtual torch::Tensor elbo(const torch::Tensor& x) = 0;
  /// The importance-sampled estimate of log p(x) with `k` samples (Burda et al. 2016), in
  /// nats: [N]. About `rows` images are decoded at a time.
  virtual torch::Tensor importance_log_likelihood(const torch::Tensor& x, int64_t k, int64_t rows = 2048) = 0;
  /// Whether the likelihood is of binary data: eval then binarises the test images once.
  virtual bool binarizes() const = 0;
};

/// The path an annealed importance sampler follows from a base model to a model with an
/// intractable partition function (`Annealable`): distributions p_b, b from 0 to 1, over a state
/// of the model's units that the generic sampler (`ais_log_partition`) holds but does not read.
class AnnealingPath {
 public:
  virtual ~AnnealingPath() = default;
  /// log Z of the base model (b = 0), exact.
  virtual double base_log_partition() const = 0;
  /// `runs` independent exact samples of the base model: the chains' first state.
  virtual torch::Tensor sample_base(int64_t runs) = 0;
  /// log p*_to(state) - log p*_from(state), the unnormalised log-probabilities' difference,
  /// [runs]; then `state` makes one transition that leaves p_to invariant.
  virtual torch::Tensor advance(torch::Tensor& state, double from, double to) = 0;
};

/// A model with an energy and an intractable partition function Z (a Boltzmann machine), next
/// to `Autoencoder`: `eval` estimates log Z by annealed importance sampling (Neal 2001;
/// Salakhutdinov & Murray 2008) and, from it, the test log-likelihood.
class Annealable {
 public:
  virtual ~Annealable() = default;
  /// The path from the base-rate model fitted to `train` (a sample of the training data, as the
  /// model sees it) to this model; null where the model has none (an RBM with Gaussian units).
  virtual std::unique_ptr<AnnealingPath> annealing_path(const torch::Tensor& train) = 0;
  /// log p*(x) of each example, [N], nats: the unnormalised log-probability (for an RBM -F(x),
  /// the free energy's negative), or a lower bound of it (`bound()`).
  virtual torch::Tensor log_unnormalized(const torch::Tensor& x) = 0;
  /// Whether `log_unnormalized` is a variational lower bound (a DBM) rather than exact.
  virtual bool bound() const { return false; }
  /// log Z summed exactly, where the model is small enough for that (an RBM of at most 20 binary
  /// hidden units); none otherwise.
  virtual std::optional<double> exact_log_partition() { return std::nullopt; }
  /// Whether the model is of binary data: eval then binarises the test images once.
  virtual bool binarizes() const = 0;
};

/// A model that samples by a Markov chain (a Boltzmann machine's Gibbs sampler), next to
/// `Autoencoder`: `viz --what chains` draws its chains.
class GibbsSampler {
 public:
  virtual ~GibbsSampler() = default;
  /// `steps` steps of block Gibbs sampling from the visible state `start` [n, input shape...];
  /// returns the mean of the visible units given the last hidden state (what is drawn).
  virtual torch::Tensor gibbs(const torch::Tensor& start, int64_t steps) = 0;
  /// `n` random visible states, the start of chains from noise.
  virtual torch::Tensor random_visible(int64_t n) = 0;
  /// The Gibbs steps `Generative::sample` (and the exported `sample`) runs from noise.
  virtual int64_t sample_steps() const = 0;
};

/// A model whose code can be binary, for semantic hashing (`model.binary_code`), next to
/// `Autoencoder`: `eval --retrieval`, `torchae index` and `torchae search` use its bits, and its
/// export adds `hash(x)`.
class Hashing {
 public:
  virtual ~Hashing() = default;
  /// Bits of the binary code; 0 when the code is real-valued (the other methods then throw).
  virtual int64_t hash_bits() const = 0;
  /// The binary code of `input`, in eval mode: uint8 0/1, [N, bits].
  virtual torch::Tensor hash(const torch::Tensor& input) = 0;
  /// The real-valued code the bits threshold (before rounding), [N, bits]: what a float
  /// nearest-neighbour search compares, for reference.
  virtual torch::Tensor relaxed_code(const torch::Tensor& input) = 0;
};

/// A model that can be told which of its input's pixels are missing (an inpainter given the
/// mask as an input channel, `model.mask_input`), next to `Autoencoder`: `restore --task
/// inpaint` gives it the mask, and its export adds `fill(x, missing)`.
class MaskAware {
 public:
  virtual ~MaskAware() = default;
  /// Whether the model takes a mask; when false, `fill` throws.
  virtual bool takes_mask() const = 0;
  /// The output for images `input` [B, C, H, W] whose pixels are missing where `missing`
  /// [B, 1, H, W] is 1 (float, 0 where known). `forward(x)` is `fill(x, zeros)`.
  virtual Output fill(const torch::Tensor& input, const torch::Tensor& missing) = 0;
};

/// A denoiser told how much noise its input holds (the noise's standard deviation as one more
/// input channel, `model.noise_map`: FFDNet's noise level map), next to `Autoencoder`: `restore
/// --task denoise` gives it the level (`--noise-level`, or `estimate_noise_sigma`'s), and its
/// export adds `denoise(x, level)`.
class NoiseAware {
 public:
  virtual ~NoiseAware() = default;
  /// Whether the model takes a noise level; when false, `denoise` throws.
  virtual bool takes_noise_level() const = 0;
  /// The output for images `input` [B, C, H, W] whose noise has standard deviation `level`
  /// [B, 1, H, W] (in the images' units, pixel by pixel). `forward(x)` is `denoise(x, level)`
  /// with the level `estimate_noise_sigma` finds in each image of x.
  virtual Output denoise(const torch::Tensor& input, const torch::Tensor& level) = 0;
};

/// One stage of a model's training, as the model describes it (see `Staged`).
struct Stage {
  /// What the metrics lines of the stage say it is: "pretrain", "finetune", "classify", "train".
  std::string phase;
  /// 1-based layer of a layerwise stage; 0 otherwise.
  int64_t layer = 0;
  /// What the stage trains: the whole model or a part of it (a layer).
  std::shared_ptr<Autoencoder> model;
  /// The stage trains on the codes of these parts, applied in order to the data (in eval mode,
  /// without gradients, once); none: on the data itself.
  std::vector<std::shared_ptr<Autoencoder>> inputs_through;
  /// Epochs and learning rate of the stage; 0 takes the run's.
  int64_t epochs = 0;
  double lr = 0.0;
};

/// A model trained in several stages (a stack: greedy layerwise pretraining, then fine-tuning),
/// next to `Autoencoder`. The generic staged trainer runs the stages in order, each by the
/// generic `Trainer`; a model that is not `Staged` is trained in one stage, as a whole.
class Staged {
 public:
  virtual ~Staged() = default;
  /// The stages, in the order they run.
  virtual std::vector<Stage> stages() = 0;
  /// Called before stage `index` trains (a stack switches to its classifier's objective).
  virtual void enter_stage(std::size_t index) = 0;
  /// Called after every stage, and when one fails: the model is itself again.
  virtual void leave_stage() = 0;
};

}  // namespace torchae
