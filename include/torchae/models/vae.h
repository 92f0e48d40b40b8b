#pragma once

#include "torchae/models/autoencoder.h"
#include "torchae/nn/backbone.h"

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace torchae {

/// The observation model p(x|z) of a variational autoencoder.
enum class VaeDecoder {
  /// Independent Bernoulli pixels; the decoder outputs logits (data in [0, 1]).
  bernoulli,
  /// Independent Gaussians around the decoder's output, with a learned per-pixel variance or
  /// a fixed one.
  gaussian,
};

/// Options for `VAE`.
struct VAEOptions {
  /// `networks.code_size()` is the dimension of z.
  explicit VAEOptions(BackboneOptions networks);
  /// MLPs of the default widths for examples of `input_shape`, z of `latent_size` dimensions.
  VAEOptions(std::vector<int64_t> input_shape, int64_t latent_size);

  /// Dimension of z.
  int64_t latent_size() const { return networks_.code_size(); }

  /// The encoder and decoder networks: MLPs, or convolutions followed by a dense layer to
  /// (mu, log-variance), mirrored by the decoder.
  TORCH_ARG(BackboneOptions, networks);
  /// p(x|z).
  TORCH_ARG(VaeDecoder, decoder) = VaeDecoder::bernoulli;
  /// Gaussian decoder: learn a log-variance per pixel (true) or keep sigma fixed (false).
  TORCH_ARG(bool, learn_variance) = true;
  /// Gaussian decoder: the fixed standard deviation, or the learned one's starting value.
  TORCH_ARG(double, sigma) = 0.1;
  /// Weight of the KL term (beta-VAE, Higgins et al. 2017; 1 is the ELBO).
  TORCH_ARG(double, beta) = 1.0;
  /// Bernoulli decoder: binarise each batch afresh in training mode, x ~ Bernoulli(pixel)
  /// (dynamic binarisation, as in the likelihood literature since Salakhutdinov & Murray 2008).
  TORCH_ARG(bool, binarize) = true;
};

/// KL(N(mu, diag(exp(log_var))) || N(0, I)) per example, in closed form:
/// 0.5 * sum_j (exp(log_var_j) + mu_j^2 - 1 - log_var_j) (Kingma & Welling 2014, appendix B).
torch::Tensor kl_to_standard_normal(const torch::Tensor& mu, const torch::Tensor& log_var);

/// log N(z; mu, diag(exp(log_var))) summed over the last dimension.
torch::Tensor diagonal_gaussian_log_density(const torch::Tensor& z, const torch::Tensor& mu,
                                            const torch::Tensor& log_var);

/// The variational autoencoder (Kingma & Welling, ICLR 2014): a Gaussian encoder q(z|x) =
/// N(mu(x), diag(sigma^2(x))), the reparameterisation z = mu + sigma * eps, a decoder p(x|z),
/// and loss -ELBO = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I)), in nats per example.
/// In eval mode z = mu, so `encode`, `forward` and `decode` are deterministic.
///
///   VAE vae(VAEOptions({1, 28, 28}, 8));
///   Output out = vae->forward(x);                  // out.mu, out.log_var, out.code = z
///   torch::Tensor ll = vae->importance_log_likelihood(x, 1000);   // log p(x), nats, [N]
class VAEImpl : public torch::nn::Cloneable<VAEImpl>, public Autoencoder, public Generative, public Likelihood {
 public:
  explicit VAEImpl(VAEOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Output forward(const torch::Tensor& input) override;
  /// A sample of q(z|x) in training mode, its mean mu in eval mode.
  torch::Tensor encode(const torch::Tensor& input) override;
  /// The mean of p(x|z), shaped like the input.
  torch::Tensor decode(const torch::Tensor& code) override;
  /// -ELBO per example, averaged over the batch: terms "recon" (-log p(x|z), one sample) and
  /// "kl". The target is the binarised input when the model binarised it.
  Losses loss(const torch::Tensor& target, const Output& output) override;
  int64_t code_size() const override { return options.latent_size(); }
  torch::nn::Module& module() override { return *this; }
  /// Exports `sample(n)` too: n draws from the prior, decoded to means.
  void script(ScriptModel& script) const override;

  /// mu and log-variance of q(z|x), each [N, latent_size].
  std::pair<torch::Tensor, torch::Tensor> posterior(const torch::Tensor& input);
  /// log p(x|z) summed over the pixels, for x [N, ...] and z [N, latent]: [N].
  torch::Tensor log_likelihood(const torch::Tensor& x, const torch::Tensor& z);
  /// The ELBO of each example (one sample of z, KL in closed form), in nats: [N].
  torch::Tensor elbo(const torch::Tensor& x) override;
  /// The importance-sampled estimate of log p(x) with `k` samples of q(z|x) (Burda et al.
  /// 2016): log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), in nats: [N]. A lower bound in
  /// expectation that rises with k towards log p(x). About `rows` images are decoded at a time.
  torch::Tensor importance_log_likelihood(const torch::Tensor& x, int64_t k, int64_t rows = 2048) override;
  /// Draws `n` codes from the prior N(0, I) and decodes them.
  torch::Tensor sample(int64_t n) override;
  /// Whether likelihoods are meant for binarised data (a Bernoulli decoder that binarises).
  bool binarizes() const override { return options.decoder() == VaeDecoder::bernoulli && options.binarize(); }

  VAEOptions options;

 private:
  /// The decoder's output for z, flat [N, D]: logits (Bernoulli) or means (Gaussian).
  torch::Tensor decoder_output(const torch::Tensor& z);
  /// log p(x|z) from the decoder's output, summed over the last dimension.
  torch::Tensor log_likelihood_of_output(const torch::Tensor& x_flat, const torch::Tensor& out) const;
  /// The Gaussian decoder's log-variance per pixel, [D].
  torch::Tensor pixel_log_variance() const;

  MLP encoder_{nullptr};
  MLP decoder_{nullptr};
  ConvEncoder conv_encoder_{nullptr};  // conv backbone only, as is:
  ConvDecoder conv_decoder_{nullptr};
  torch::Tensor log_variance_;  // Gaussian decoder, learned variance only
};

TORCH_MODULE(VAE);

}  // namespace torchae
