#pragma once

#include "torchae/models/autoencoder.h"
#include "torchae/nn/fused.h"  // sample_bernoulli, which Gibbs sampling is mostly

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/serialize/input-archive.h>

#include <memory>
#include <string>
#include <vector>

namespace torchae {

/// The kind of a layer of units in a Boltzmann machine.
enum class Units {
  /// Binary units, p(u = 1 | rest) = sigmoid(input).
  bernoulli,
  /// Real units of unit variance, u | rest ~ N(input, 1): for standardised real data (visible),
  /// or a linear code layer (hidden, as the 30 code units of Hinton & Salakhutdinov 2006).
  gaussian,
};

Units parse_units(const std::string& name);
std::string to_string(Units units);

/// The visible biases of the base-rate model of `train` [N, ...]: the logits of each unit's mean,
/// smoothed as Salakhutdinov & Murray's (no unit certain to be 0 or 1), [D], in `options`. The base
/// model annealed importance sampling starts from.
torch::Tensor base_rate_biases(const torch::Tensor& train, const torch::TensorOptions& options);

/// Options for `RBM`.
struct RBMOptions {
  RBMOptions(std::vector<int64_t> input_shape, int64_t hidden);

  /// Shape of one example; the visible layer has as many units as it has elements.
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// Number of hidden units (the code's width).
  TORCH_ARG(int64_t, hidden);
  TORCH_ARG(Units, visible_units) = Units::bernoulli;
  TORCH_ARG(Units, hidden_units) = Units::bernoulli;
  /// Gibbs steps of the negative phase: CD-k (Hinton 2002), or PCD-k with `persistent`.
  TORCH_ARG(int64_t, cd_k) = 1;
  /// Persistent contrastive divergence (Tieleman 2008): the negative phase continues `chains`
  /// Markov chains kept from one step to the next (model state, saved with the weights).
  TORCH_ARG(bool, persistent) = false;
  TORCH_ARG(int64_t, chains) = 100;
  /// Gibbs steps of `sample(n)` (and of the exported `sample`), from random states.
  TORCH_ARG(int64_t, gibbs_steps) = 1000;
  /// L2 cost on the weights alone, 0.5 * cost * ||W||^2 (Hinton's practical guide, 2010, section
  /// 10: 0.0001 to 0.01; biases are not decayed).
  TORCH_ARG(double, weight_cost) = 0.0;
  /// Sparsity target p of the hidden units' mean activation and the cost of the cross-entropy
  /// that pulls it there (guide section 11); cost 0: off.
  TORCH_ARG(double, sparsity_target) = 0.1;
  TORCH_ARG(double, sparsity_cost) = 0.0;
  /// Bernoulli visible units: each batch binarised afresh in training, x ~ Bernoulli(pixel).
  TORCH_ARG(bool, binarize) = false;
  /// Standard deviation of the initial weights (guide section 8: 0.01); biases start at 0.
  TORCH_ARG(double, init_std) = 0.01;
  /// A modified RBM, as a deep Boltzmann machine pretrains its layers with (Salakhutdinov &
  /// Hinton 2009, section 3.1): the weights scaled by `up_scale` in P(h|v) and by `down_scale` in
  /// P(v|h), 2 standing for the input a layer will get from the other side too (the bottom RBM's
  /// visible units doubled: up 2; the top's hidden: down 2; a middle one's: both). 1 and 1: an
  /// RBM. Scaled, the RBM has no annealing path (its chain has no single energy).
  TORCH_ARG(double, up_scale) = 1.0;
  TORCH_ARG(double, down_scale) = 1.0;
};

/// A restricted Boltzmann machine, E(v, h) = -b.v - c.h - h.Wv (plus |v|^2/2 and |h|^2/2 for
/// Gaussian units), trained by contrastive divergence through the generic trainer: its loss is
/// the surrogate F(v_data) - F(v_model), the free energies of the batch and of the negative
/// samples (detached), whose gradient is the CD (or PCD) estimate of the negative log-likelihood
/// gradient. `encode` is E[h|v], `decode` E[v|h], `forward` one mean-field reconstruction;
/// `sample(n)` runs `gibbs_steps` of block Gibbs sampling from noise. As a stack's layer it is a
/// deep belief network's (Hinton & Salakhutdinov 2006): `unroll` gives it a decoder of its own.
///
///   RBM rbm(RBMOptions({1, 28, 28}, 500).persistent(true));
///   torch::Tensor h = rbm->encode(x);  // P(h = 1 | x)
class RBMImpl : public torch::nn::Cloneable<RBMImpl>, public Autoencoder, public Generative, public Annealable,
                public GibbsSampler {
 public:
  explicit RBMImpl(RBMOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  /// A checkpoint of an unrolled model holds its decoder's weights: they are made, then read.
  void load(torch::serialize::InputArchive& archive) override;

  /// Mean-field reconstruction; in training, also the negative phase's samples (`negative`),
  /// and the binarised batch (`input`) when binarising.
  Output forward(const torch::Tensor& input) override;
  torch::Tensor encode(const torch::Tensor& input) override;
  torch::Tensor encode_preactivation(const torch::Tensor& input) override;
  torch::Tensor decode(const torch::Tensor& code) override;
  Output reconstruct(const torch::Tensor& code) override;
  /// With negative samples: "recon" (the reconstruction's cost, detached, for the log),
  /// "free_energy_gap" (the CD surrogate) and the penalties; without (eval mode): the
  /// reconstruction's cost alone.
  Losses loss(const torch::Tensor& target, const Output& output) override;
  /// Cross-entropy of the reconstruction for Bernoulli visible units, squared error for Gaussian.
  torch::Tensor reconstruction_cost(const Output& output, const torch::Tensor& target) override;
  int64_t code_size() const override { return options.hidden(); }
  torch::nn::Module& module() override { return *this; }
  void unroll() override;
  /// encode, decode, forward, and sample(n) with `gibbs_steps` steps.
  void script(ScriptModel& script) const override;

  torch::Tensor sample(int64_t n) override;
  torch::Tensor gibbs(const torch::Tensor& start, int64_t steps) override;
  torch::Tensor random_visible(int64_t n) override;
  int64_t sample_steps() const override { return options.gibbs_steps(); }

  std::unique_ptr<AnnealingPath> annealing_path(const torch::Tensor& train) override;
  torch::Tensor log_unnormalized(const torch::Tensor& x) override { return -free_energy(x); }
  bool binarizes() const override { return options.visible_units() == Units::bernoulli && options.binarize(); }

  /// F(v) = -log sum_h exp(-E(v, h)), [N], up to a constant for Gaussian units (the one log Z
  /// includes).
  torch::Tensor free_energy(const torch::Tensor& v);
  /// log Z exactly, by summing over the 2^hidden states of Bernoulli hidden units (Bernoulli
  /// visible units, hidden <= kMaxExactHidden), in double precision; none for a larger RBM.
  std::optional<double> exact_log_partition() override;
  static constexpr int64_t kMaxExactHidden = 20;
  /// Whether the decoder has weights of its own (`unroll`).
  bool unrolled() const { return decoder_weight_.defined(); }

  /// W [hidden, visible] and c (the hidden biases): the affine map of the encoder.
  const torch::nn::Linear& weights() const { return encoder_; }
  const torch::Tensor& visible_bias() const { return visible_bias_; }
  /// The persistent chains' visible states [chains, visible] (undefined without `persistent`).
  const torch::Tensor& chains() const { return chains_; }

  RBMOptions options;

 private:
  /// W v + c, the weights scaled by up_scale (flat visible states).
  torch::Tensor hidden_input(const torch::Tensor& v);
  bool scaled() const { return options.up_scale() != 1.0 || options.down_scale() != 1.0; }
  /// Samples of h given v, and of v given h (flat visible states).
  torch::Tensor sample_hidden(const torch::Tensor& v);
  torch::Tensor sample_visible(const torch::Tensor& h);
  /// The visible units' input given h: W^T h + b (through the decoder's own weights once unrolled).
  torch::Tensor visible_input(const torch::Tensor& h);
  /// The negative phase's samples for a batch whose hidden means are `h0` (CD), or the
  /// persistent chains moved on by cd_k steps (PCD).
  torch::Tensor negative_phase(const torch::Tensor& h0);

  torch::nn::Linear encoder_{nullptr};
  torch::Tensor visible_bias_;
  torch::Tensor decoder_weight_;
  torch::Tensor chains_;
};

TORCH_MODULE(RBM);

}  // namespace torchae
