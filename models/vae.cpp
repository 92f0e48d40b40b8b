#include "torchae/models/vae.h"

#include "torchae/models/registry.h"
#include "torchae/nn/fused.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

namespace torchae {

namespace {

constexpr double kLog2Pi = 1.8378770664093453;  // log(2 pi)

// z = mu + sigma * eps, the reparameterisation (Kingma & Welling 2014, section 2.4).
torch::Tensor reparameterize(const torch::Tensor& mu, const torch::Tensor& log_var, const torch::Tensor& eps) {
  return mu + torch::exp(0.5 * log_var) * eps;
}

}  // namespace

torch::Tensor kl_to_standard_normal(const torch::Tensor& mu, const torch::Tensor& log_var) {
  return 0.5 * (log_var.exp() + mu.pow(2) - 1.0 - log_var).sum(-1);
}

torch::Tensor diagonal_gaussian_log_density(const torch::Tensor& z, const torch::Tensor& mu,
                                            const torch::Tensor& log_var) {
  return -0.5 * (kLog2Pi + log_var + (z - mu).pow(2) * torch::exp(-log_var)).sum(-1);
}

VAEOptions::VAEOptions(BackboneOptions networks) : networks_(std::move(networks)) {}

VAEOptions::VAEOptions(std::vector<int64_t> input_shape, int64_t latent_size)
    : VAEOptions(BackboneOptions(std::move(input_shape), latent_size)) {}

VAEImpl::VAEImpl(VAEOptions options_) : options(std::move(options_)) { reset(); }

void VAEImpl::reset() {
  const BackboneOptions& net = options.networks();
  const int64_t input_size = net.input_size();
  TORCH_CHECK(input_size > 0 && options.latent_size() > 0, "vae: empty input or latent size");
  TORCH_CHECK(options.sigma() > 0, "vae: sigma must be > 0");
  TORCH_CHECK(options.beta() >= 0, "vae: beta must be >= 0");
  encoder_ = nullptr;
  decoder_ = nullptr;
  conv_encoder_ = nullptr;
  conv_decoder_ = nullptr;
  // The encoder's last layer gives mu and log-variance side by side.
  if (net.conv()) {
    conv_encoder_ = register_module("encoder", ConvEncoder(net.conv_options(2 * options.latent_size()), Activation::identity));
    conv_decoder_ = register_module("decoder", ConvDecoder(net.conv_options(options.latent_size())));
  } else {
    encoder_ = register_module("encoder", MLP(MLPOptions(net.encoder_widths(2 * options.latent_size())).activation(net.activation())));
    decoder_ = register_module("decoder", MLP(MLPOptions(net.decoder_widths(options.latent_size())).activation(net.activation())));
  }
  log_variance_ = torch::Tensor();
  if (options.decoder() == VaeDecoder::gaussian && options.learn_variance()) {
    log_variance_ =
        register_parameter("log_variance", torch::full({input_size}, 2.0 * std::log(options.sigma())));
  }
}

void VAEImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::VAE(input_shape=[{}], {}, latent_size={}, decoder={}, beta={})",
                        fmt::join(options.networks().input_shape(), ", "), describe_backbone(options.networks()),
                        options.latent_size(),
                        options.decoder() == VaeDecoder::bernoulli ? "bernoulli" : "gaussian", options.beta());
}

std::pair<torch::Tensor, torch::Tensor> VAEImpl::posterior(const torch::Tensor& input) {
  const torch::Tensor stats = conv_encoder_ ? conv_encoder_->forward(input) : encoder_->forward(input.flatten(1));
  return {stats.narrow(1, 0, options.latent_size()), stats.narrow(1, options.latent_size(), options.latent_size())};
}

torch::Tensor VAEImpl::decoder_output(const torch::Tensor& z) {
  return conv_decoder_ ? conv_decoder_->forward(z).flatten(1) : decoder_->forward(z);
}

torch::Tensor VAEImpl::pixel_log_variance() const {
  if (log_variance_.defined()) return log_variance_;
  return torch::full({options.networks().input_size()}, 2.0 * std::log(options.sigma()));
}

torch::Tensor VAEImpl::log_likelihood_of_output(const torch::Tensor& x_flat, const torch::Tensor& out) const {
  if (options.decoder() == VaeDecoder::bernoulli) {
    // log Bernoulli(x; sigmoid(l)) = x * l - softplus(l), stable for any logit.
    return (x_flat * out - torch::softplus(out)).sum(-1);
  }
  const torch::Tensor log_var = pixel_log_variance().to(out.device());
  return diagonal_gaussian_log_density(x_flat, out, log_var);
}

torch::Tensor VAEImpl::log_likelihood(const torch::Tensor& x, const torch::Tensor& z) {
  return log_likelihood_of_output(x.flatten(1), decoder_output(z));
}

Output VAEImpl::forward(const torch::Tensor& input) {
  Output out;
  torch::Tensor x = input;
  if (is_training() && binarizes()) {
    x = sample_bernoulli(input);
    out.input = x;
  }
  auto [mu, log_var] = posterior(x);
  out.mu = mu;
  out.log_var = log_var;
  out.code = is_training() ? reparameterize(mu, log_var, torch::randn_like(mu)) : mu;
  const torch::Tensor decoded = decoder_output(out.code).view(input.sizes());
  if (options.decoder() == VaeDecoder::bernoulli) {
    out.logits = decoded;
    out.reconstruction = torch::sigmoid(decoded);
  } else {
    out.reconstruction = decoded;
  }
  return out;
}

torch::Tensor VAEImpl::encode(const torch::Tensor& input) {
  auto [mu, log_var] = posterior(input);
  return is_training() ? reparameterize(mu, log_var, torch::randn_like(mu)) : mu;
}

torch::Tensor VAEImpl::decode(const torch::Tensor& code) {
  std::vector<int64_t> shape{code.size(0)};
  shape.insert(shape.end(), options.networks().input_shape().begin(), options.networks().input_shape().end());
  const torch::Tensor decoded = decoder_output(code);
  return (options.decoder() == VaeDecoder::bernoulli ? torch::sigmoid(decoded) : decoded).view(shape);
}

Losses VAEImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor x = output.input.defined() ? output.input : target;
  const torch::Tensor decoded = options.decoder() == VaeDecoder::bernoulli ? output.logits : output.reconstruction;
  // With Bernoulli pixels the term is the binary cross-entropy summed over pixels: the fused one,
  // from the sigmoid the forward computed, times the pixels per example.
  const torch::Tensor recon =
      options.decoder() == VaeDecoder::bernoulli && output.reconstruction.defined()
          ? binary_cross_entropy_from_logits(output.logits, output.reconstruction, x.view_as(output.logits)) *
                static_cast<double>(options.networks().input_size())
          : -log_likelihood_of_output(x.flatten(1), decoded.flatten(1)).mean();
  const torch::Tensor kl = kl_to_standard_normal(output.mu, output.log_var).mean();
  return {recon + options.beta() * kl, {{"recon", recon}, {"kl", kl}}};
}

torch::Tensor VAEImpl::elbo(const torch::Tensor& x) {
  auto [mu, log_var] = posterior(x);
  const torch::Tensor z = reparameterize(mu, log_var, torch::randn_like(mu));
  return log_likelihood(x, z) - kl_to_standard_normal(mu, log_var);
}

torch::Tensor VAEImpl::importance_log_likelihood(const torch::Tensor& x, int64_t k, int64_t rows) {
  TORCH_CHECK(k >= 1 && rows >= 1, "importance_log_likelihood: k and rows must be >= 1");
  auto [mu, log_var] = posterior(x);
  const torch::Tensor x_flat = x.flatten(1);
  const int64_t n = x.size(0), d = options.latent_size();
  // log-weights are combined chunk by chunk with a running logsumexp, so memory stays at
  // about `rows` decoded images whatever k and n are (larger blocks were slower here: the
  // allocator's page faults dominated).
  const int64_t per_chunk = std::max<int64_t>(1, rows / std::max<int64_t>(1, n));
  torch::Tensor total;
  for (int64_t done = 0; done < k; done += per_chunk) {
    const int64_t s = std::min(per_chunk, k - done);
    const torch::Tensor eps = torch::randn({s, n, d}, mu.options());
    const torch::Tensor z = reparameterize(mu.unsqueeze(0), log_var.unsqueeze(0), eps);  // [s, n, d]
    const torch::Tensor log_px = log_likelihood_of_output(x_flat.unsqueeze(0).expand({s, n, x_flat.size(1)}),
                                                          decoder_output(z.view({s * n, d})).view({s, n, -1}));
    const torch::Tensor log_pz = -0.5 * (kLog2Pi + z.pow(2)).sum(-1);
    const torch::Tensor log_qz = diagonal_gaussian_log_density(z, mu.unsqueeze(0), log_var.unsqueeze(0));
    const torch::Tensor chunk_total = torch::logsumexp(log_px + log_pz - log_qz, 0);
    total = total.defined() ? torch::logaddexp(total, chunk_total) : chunk_total;
  }
  return total - std::log(static_cast<double>(k));
}

torch::Tensor VAEImpl::sample(int64_t n) {
  const auto device = parameters().front().device();
  return decode(torch::randn({n, options.latent_size()}, torch::TensorOptions(device)));
}

void VAEImpl::script(ScriptModel& script) const {
  std::vector<std::string> encoder{conv_encoder_ ? "h = x" : "h = x.flatten(1)"};
  const auto layers = conv_encoder_ ? conv_encoder_->script(script, "encoder", "h") : encoder_->script(script, "encoder", "h");
  encoder.insert(encoder.end(), layers.begin(), layers.end());
  encoder.push_back(fmt::format("h = h.narrow(1, 0, {})", options.latent_size()));
  std::vector<std::string> decoder =
      conv_decoder_ ? conv_decoder_->script(script, "decoder", "h") : decoder_->script(script, "decoder", "h");
  decoder.push_back(fmt::format("y = {}.view([h.size(0), {}])",
                                options.decoder() == VaeDecoder::bernoulli ? "torch.sigmoid(h)" : "h",
                                fmt::join(options.networks().input_shape(), ", ")));
  define_autoencoder_methods(script, encoder, decoder);
  script.method("sample(self, n: int) -> Tensor",
                {fmt::format("return self.decode(torch.randn([n, {}]))", options.latent_size())});
}

void register_vae(Registry& registry) {
  registry.add({"vae",
                "variational autoencoder: Gaussian q(z|x), reparameterisation, Bernoulli or Gaussian p(x|z), "
                "loss -ELBO with beta on the KL term (Kingma & Welling 2014)",
                [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
                  // d_z = 8, as the WAE paper's MNIST setting, so VAE and WAE compare at one size.
                  BackboneOptions net = read_backbone_options(r, data, BackboneOptions(data.shape, 8));
                  net.activation(parse_activation(r.choice("activation", "relu", activation_names())));
                  VAEOptions o(net);
                  const std::string decoder = r.choice("decoder", "bernoulli", {"bernoulli", "gaussian"});
                  o.decoder(decoder == "bernoulli" ? VaeDecoder::bernoulli : VaeDecoder::gaussian);
                  o.learn_variance(r.choice("variance", "learned", {"learned", "fixed"}) == "learned");
                  o.sigma(r.number("sigma", o.sigma(), greater_than(0)));
                  o.beta(r.number("beta", o.beta(), at_least(0)));
                  o.binarize(r.boolean("binarize", o.binarize()));
                  r.require(o.decoder() != VaeDecoder::bernoulli || (data.min >= 0.0 && data.max <= 1.0), "decoder",
                            fmt::format("bernoulli needs data in [0, 1], this data spans [{:.3g}, {:.3g}]",
                                        data.min, data.max));
                  r.finish();
                  return [o] { return VAE(o).ptr(); };
                },
                /*layer_defaults=*/nullptr});  // not a stack's layer
}

}  // namespace torchae
