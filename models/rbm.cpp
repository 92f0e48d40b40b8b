#include "torchae/models/rbm.h"

#include "torchae/core/error.h"
#include "torchae/models/registry.h"

#include <torch/nn/functional/linear.h>
#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <iostream>

namespace torchae {

namespace F = torch::nn::functional;

namespace {

constexpr double kLog2 = 0.6931471805599453;

// The annealing path of a Bernoulli-Bernoulli RBM (Salakhutdinov & Murray 2008, section 4.1):
// p*_b(v) = exp((1 - b) a.v + b b.v) prod_j (1 + exp(b (W v + c)_j)), h summed out, from the
// base-rate model (visible biases a fitted to the data's marginals, the hidden units free) at
// b = 0 to the RBM at b = 1. The transition at b is one Gibbs sweep of the interpolated model.
class RbmAnnealingPath : public AnnealingPath {
 public:
  RbmAnnealingPath(torch::Tensor weight, torch::Tensor hidden_bias, torch::Tensor visible_bias,
                   torch::Tensor base_bias)
      : weight_(std::move(weight)), hidden_bias_(std::move(hidden_bias)), visible_bias_(std::move(visible_bias)),
        base_bias_(std::move(base_bias)) {}

  double base_log_partition() const override {
    return static_cast<double>(weight_.size(0)) * kLog2 + torch::softplus(base_bias_.to(torch::kDouble)).sum().item<double>();
  }

  torch::Tensor sample_base(int64_t runs) override {
    return sample_bernoulli(torch::sigmoid(base_bias_).expand({runs, base_bias_.size(0)}).contiguous());
  }

  torch::Tensor advance(torch::Tensor& v, double from, double to) override {
    const torch::Tensor pre = F::linear(v, weight_, hidden_bias_);
    const torch::Tensor pre64 = pre.to(torch::kDouble);
    // In double: the increments are small differences of large terms, summed 14,500 times.
    const torch::Tensor step = (to - from) * torch::mv(v.to(torch::kDouble), (visible_bias_ - base_bias_).to(torch::kDouble)) +
                               (torch::softplus(to * pre64) - torch::softplus(from * pre64)).sum(1);
    const torch::Tensor h = sample_bernoulli(torch::sigmoid(to * pre));
    v = sample_bernoulli(torch::sigmoid((1.0 - to) * base_bias_ + to * F::linear(h, weight_.t(), visible_bias_)));
    return step;
  }

 private:
  torch::Tensor weight_, hidden_bias_, visible_bias_, base_bias_;
};

}  // namespace


torch::Tensor base_rate_biases(const torch::Tensor& train, const torch::TensorOptions& options) {
  const torch::Tensor p = train.flatten(1).to(torch::kDouble).mean(0).clamp(1e-3, 1.0 - 1e-3);
  return torch::log(p / (1.0 - p)).to(options);
}

Units parse_units(const std::string& name) {
  if (name == "bernoulli") return Units::bernoulli;
  if (name == "gaussian") return Units::gaussian;
  throw Error(fmt::format("unknown units \"{}\" (known: bernoulli, gaussian)", name));
}

std::string to_string(Units units) { return units == Units::bernoulli ? "bernoulli" : "gaussian"; }

RBMOptions::RBMOptions(std::vector<int64_t> input_shape, int64_t hidden)
    : input_shape_(std::move(input_shape)), hidden_(hidden) {}

RBMImpl::RBMImpl(RBMOptions options_) : options(std::move(options_)) { reset(); }

void RBMImpl::reset() {
  int64_t visible = 1;
  for (int64_t d : options.input_shape()) visible *= d;
  TORCH_CHECK(visible > 0 && options.hidden() > 0, "rbm: empty visible or hidden layer");
  TORCH_CHECK(!(options.visible_units() == Units::gaussian && options.hidden_units() == Units::gaussian),
              "rbm: Gaussian visible and Gaussian hidden units together have no normalisable distribution");
  TORCH_CHECK(options.cd_k() >= 1 && options.chains() >= 1 && options.gibbs_steps() >= 1,
              "rbm: cd_k, chains and gibbs_steps must be >= 1");
  TORCH_CHECK(options.up_scale() > 0 && options.down_scale() > 0, "rbm: up_scale and down_scale must be > 0");
  encoder_ = register_module("encoder", torch::nn::Linear(visible, options.hidden()));
  {
    torch::NoGradGuard no_grad;
    encoder_->weight.normal_(0.0, options.init_std());
    encoder_->bias.zero_();
  }
  visible_bias_ = register_parameter("visible_bias", torch::zeros({visible}));
  decoder_weight_ = torch::Tensor();
  chains_ = torch::Tensor();
  if (options.persistent()) chains_ = register_buffer("chains", random_visible(options.chains()).flatten(1));
}

void RBMImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::RBM(visible={} [{}], hidden={} {}, {}-{}{})", encoder_->weight.size(1),
                        to_string(options.visible_units()), options.hidden(), to_string(options.hidden_units()),
                        options.persistent() ? "PCD" : "CD", options.cd_k(), unrolled() ? ", unrolled" : "");
}

void RBMImpl::load(torch::serialize::InputArchive& archive) {
  torch::Tensor decoder;
  if (!unrolled() && archive.try_read("decoder_weight", decoder)) unroll();
  torch::nn::Module::load(archive);
}

void RBMImpl::unroll() {
  if (unrolled()) return;
  decoder_weight_ = register_parameter("decoder_weight", encoder_->weight.detach().t().contiguous().clone());
}

torch::Tensor RBMImpl::hidden_input(const torch::Tensor& v) {
  return options.up_scale() == 1.0 ? encoder_->forward(v) : F::linear(v, options.up_scale() * encoder_->weight, encoder_->bias);
}

torch::Tensor RBMImpl::encode_preactivation(const torch::Tensor& input) { return hidden_input(input.flatten(1)); }

torch::Tensor RBMImpl::encode(const torch::Tensor& input) {
  const torch::Tensor pre = encode_preactivation(input);
  return options.hidden_units() == Units::bernoulli ? torch::sigmoid(pre) : pre;
}

torch::Tensor RBMImpl::visible_input(const torch::Tensor& h) {
  if (unrolled()) return F::linear(h, decoder_weight_, visible_bias_);
  return F::linear(h, options.down_scale() == 1.0 ? encoder_->weight.t() : options.down_scale() * encoder_->weight.t(),
                   visible_bias_);
}

Output RBMImpl::reconstruct(const torch::Tensor& code) {
  std::vector<int64_t> shape{code.size(0)};
  shape.insert(shape.end(), options.input_shape().begin(), options.input_shape().end());
  Output out;
  out.code = code;
  const torch::Tensor in = visible_input(code).view(shape);
  if (options.visible_units() == Units::bernoulli) {
    out.logits = in;
    out.reconstruction = torch::sigmoid(in);
  } else {
    out.reconstruction = in;
  }
  return out;
}

torch::Tensor RBMImpl::decode(const torch::Tensor& code) { return reconstruct(code).reconstruction; }

torch::Tensor RBMImpl::sample_hidden(const torch::Tensor& v) {
  const torch::Tensor pre = hidden_input(v);
  return options.hidden_units() == Units::bernoulli ? sample_bernoulli(torch::sigmoid(pre)) : pre + torch::randn_like(pre);
}

torch::Tensor RBMImpl::sample_visible(const torch::Tensor& h) {
  const torch::Tensor in = visible_input(h);
  return options.visible_units() == Units::bernoulli ? sample_bernoulli(torch::sigmoid(in)) : in + torch::randn_like(in);
}

torch::Tensor RBMImpl::negative_phase(const torch::Tensor& h0) {
  torch::NoGradGuard no_grad;
  if (options.persistent()) {
    torch::Tensor v = chains_;
    for (int64_t t = 0; t < options.cd_k(); ++t) v = sample_visible(sample_hidden(v));
    chains_.copy_(v);
    return v;
  }
  torch::Tensor h = options.hidden_units() == Units::bernoulli ? sample_bernoulli(h0) : h0 + torch::randn_like(h0);
  torch::Tensor v = sample_visible(h);
  for (int64_t t = 1; t < options.cd_k(); ++t) v = sample_visible(sample_hidden(v));
  return v;
}

Output RBMImpl::forward(const torch::Tensor& input) {
  torch::Tensor x = input;
  if (is_training() && binarizes()) x = sample_bernoulli(input);
  Output out = reconstruct(encode(x));
  if (is_training()) {
    out.input = x;
    out.negative = negative_phase(out.code.detach());
  }
  return out;
}

torch::Tensor RBMImpl::free_energy(const torch::Tensor& v_in) {
  const torch::Tensor v = v_in.flatten(1);
  // Scaled (a modified RBM), the hidden term is divided by the scale: its gradient in W is still
  // E[h | v] v^T, the statistics CD compares.
  const double up = options.up_scale();
  const torch::Tensor pre = hidden_input(v);
  const torch::Tensor hidden =
      (options.hidden_units() == Units::bernoulli ? -torch::softplus(pre).sum(1) : -0.5 * pre.pow(2).sum(1)) / up;
  const torch::Tensor visible = options.visible_units() == Units::bernoulli
                                    ? -torch::mv(v, visible_bias_)
                                    : 0.5 * (v - visible_bias_).pow(2).sum(1);
  return visible + hidden;
}

torch::Tensor RBMImpl::reconstruction_cost(const Output& output, const torch::Tensor& target) {
  return reconstruction_loss(options.visible_units() == Units::bernoulli ? ReconstructionLoss::bce : ReconstructionLoss::mse,
                             output, target.view(output.reconstruction.sizes()));
}

Losses RBMImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor v0 = output.input.defined() ? output.input : target;
  const torch::Tensor recon = reconstruction_cost(output, v0);
  if (!output.negative.defined()) return {recon, {{"recon", recon}}};
  // The gradient of F(v_data) - F(v_model) is minus CD's estimate of d log p(v) / d theta
  // (Hinton 2002): the data's statistics <v h>_0 less the negative samples' <v h>_k. Both phases
  // in one batch: one product for their hidden inputs, and W's gradient one product that sums
  // both phases' statistics, where two would leave autograd a weight-sized sum to make.
  const int64_t n0 = v0.size(0);
  const torch::Tensor energies = free_energy(torch::cat({v0.flatten(1), output.negative.flatten(1)}));
  const torch::Tensor gap = energies.narrow(0, 0, n0).mean() - energies.narrow(0, n0, energies.size(0) - n0).mean();
  Losses losses{gap, {{"recon", recon.detach()}, {"free_energy_gap", gap.detach()}}};
  if (options.weight_cost() > 0) {
    const torch::Tensor decay = 0.5 * options.weight_cost() * encoder_->weight.pow(2).sum();
    losses.total = losses.total + decay;
    losses.terms.emplace_back("weight_decay", decay.detach());
  }
  if (options.sparsity_cost() > 0 && options.hidden_units() == Units::bernoulli) {
    // Cross-entropy between the target p and each unit's activation: its derivative with
    // respect to the unit's input, averaged over the batch, is q - p (guide section 11.2).
    const torch::Tensor pre = encode_preactivation(v0);
    const torch::Tensor sparsity =
        options.sparsity_cost() *
        F::binary_cross_entropy_with_logits(pre, torch::full_like(pre, options.sparsity_target()),
                                            F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum)) /
        pre.size(0);
    losses.total = losses.total + sparsity;
    losses.terms.emplace_back("sparsity", sparsity.detach());
  }
  return losses;
}

torch::Tensor RBMImpl::random_visible(int64_t n) {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), options.input_shape().begin(), options.input_shape().end());
  const auto o = visible_bias_.defined() ? visible_bias_.options() : torch::TensorOptions();
  return options.visible_units() == Units::bernoulli ? sample_bernoulli(torch::full(shape, 0.5, o)) : torch::randn(shape, o);
}

torch::Tensor RBMImpl::gibbs(const torch::Tensor& start, int64_t steps) {
  TORCH_CHECK(steps >= 0, "gibbs: steps must be >= 0");
  if (steps == 0) return start;
  torch::NoGradGuard no_grad;
  torch::Tensor v = start.flatten(1);
  torch::Tensor h = sample_hidden(v);
  for (int64_t t = 1; t < steps; ++t) h = sample_hidden(sample_visible(h));
  return decode(h);
}

torch::Tensor RBMImpl::sample(int64_t n) { return gibbs(random_visible(n), options.gibbs_steps()); }

std::unique_ptr<AnnealingPath> RBMImpl::annealing_path(const torch::Tensor& train) {
  if (options.visible_units() != Units::bernoulli || options.hidden_units() != Units::bernoulli || unrolled() ||
      scaled()) {
    return nullptr;
  }
  return std::make_unique<RbmAnnealingPath>(encoder_->weight.detach(), encoder_->bias.detach(), visible_bias_.detach(),
                                            base_rate_biases(train, visible_bias_.options()));
}

std::optional<double> RBMImpl::exact_log_partition() {
  const int64_t hidden = options.hidden();
  if (options.visible_units() != Units::bernoulli || options.hidden_units() != Units::bernoulli ||
      hidden > kMaxExactHidden || unrolled() || scaled()) {
    return std::nullopt;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor w = encoder_->weight.detach().cpu().to(torch::kDouble);
  const torch::Tensor c = encoder_->bias.detach().cpu().to(torch::kDouble);
  const torch::Tensor b = visible_bias_.detach().cpu().to(torch::kDouble);
  const torch::Tensor bits = torch::pow(2, torch::arange(hidden, torch::kInt64));
  const int64_t states = int64_t{1} << hidden, chunk = int64_t{1} << 14;
  std::vector<torch::Tensor> parts;
  // log Z = log sum_h exp(c.h) prod_i (1 + exp(b_i + (W^T h)_i)), the visible units summed out.
  for (int64_t first = 0; first < states; first += chunk) {
    const torch::Tensor index = torch::arange(first, std::min(states, first + chunk), torch::kInt64);
    const torch::Tensor h = index.unsqueeze(1).bitwise_and(bits).ne(0).to(torch::kDouble);
    parts.push_back(torch::logsumexp(torch::mv(h, c) + torch::softplus(torch::addmm(b, h, w)).sum(1), 0));
  }
  return torch::logsumexp(torch::stack(parts), 0).item<double>();
}

void RBMImpl::script(ScriptModel& script) const {
  const std::string w = script.tensor("encoder.weight", encoder_->weight);
  const std::string c = script.tensor("encoder.bias", encoder_->bias);
  const std::string b = script.tensor("visible_bias", visible_bias_);
  const auto scale = [](double s, const std::string& tensor) { return s == 1.0 ? tensor : fmt::format("{} * {}", s, tensor); };
  const std::string wt = unrolled() ? script.tensor("decoder_weight", decoder_weight_) : scale(options.down_scale(), w + ".t()");
  const bool bernoulli_hidden = options.hidden_units() == Units::bernoulli;
  const bool bernoulli_visible = options.visible_units() == Units::bernoulli;
  const std::string shape = fmt::format("{}", fmt::join(options.input_shape(), ", "));
  const std::string hidden_in = fmt::format("torch.linear(v, {}, {})", scale(options.up_scale(), w), c);
  const std::string visible_in = fmt::format("torch.linear(h, {}, {})", wt, b);
  define_autoencoder_methods(
      script, {"v = x.flatten(1)", fmt::format("h = {}", bernoulli_hidden ? "torch.sigmoid(" + hidden_in + ")" : hidden_in)},
      {fmt::format("y = {}.view([h.size(0), {}])", bernoulli_visible ? "torch.sigmoid(" + visible_in + ")" : visible_in,
                   shape)});
  const std::string sample_h = bernoulli_hidden ? fmt::format("torch.bernoulli(torch.sigmoid({}))", hidden_in)
                                                : fmt::format("{0} + torch.randn_like({0})", hidden_in);
  const std::string sample_v = bernoulli_visible ? fmt::format("torch.bernoulli(torch.sigmoid({}))", visible_in)
                                                 : fmt::format("{0} + torch.randn_like({0})", visible_in);
  const int64_t visible = encoder_->weight.size(1);
  script.method("sample(self, n: int) -> Tensor",
                {bernoulli_visible ? fmt::format("v = torch.bernoulli(torch.full([n, {}], 0.5, device={}.device))", visible, w)
                                   : fmt::format("v = torch.randn([n, {}], device={}.device)", visible, w),
                 "h = " + sample_h,
                 fmt::format("for _ in range({}):", options.gibbs_steps() - 1),
                 "    v = " + sample_v,
                 "    h = " + sample_h,
                 "return self.decode(h)"});
}

void register_rbm(Registry& registry) {
  registry.add(
      {"rbm",
       "restricted Boltzmann machine: Bernoulli or Gaussian visible units, Bernoulli or linear-Gaussian hidden "
       "units (code_size), trained by CD-k or persistent CD; log Z by annealed importance sampling; as a stack's "
       "layers, a deep belief network unrolled into a deep autoencoder",
       [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
         RBMOptions o(data.shape, r.integer("code_size", 500, at_least(1)));
         o.visible_units(parse_units(r.choice("visible_units", "bernoulli", {"bernoulli", "gaussian"})));
         o.hidden_units(parse_units(r.choice("hidden_units", "bernoulli", {"bernoulli", "gaussian"})));
         r.require(!(o.visible_units() == Units::gaussian && o.hidden_units() == Units::gaussian), "hidden_units",
                   "gaussian hidden units need bernoulli visible units (two Gaussian layers have no normalisable "
                   "distribution)");
         r.require(o.visible_units() != Units::bernoulli || (data.min >= 0.0 && data.max <= 1.0), "visible_units",
                   fmt::format("bernoulli units need input in [0, 1], this input spans [{:.3g}, {:.3g}]; use "
                               "gaussian units on standardised data (data.standardize)",
                               data.min, data.max));
         o.cd_k(r.integer("cd_k", o.cd_k(), at_least(1)));
         o.persistent(r.boolean("persistent", o.persistent()));
         o.chains(r.integer("chains", o.chains(), at_least(1)));
         o.gibbs_steps(r.integer("gibbs_steps", o.gibbs_steps(), at_least(1)));
         o.weight_cost(r.number("weight_cost", o.weight_cost(), at_least(0)));
         o.sparsity_target(r.number("sparsity_target", o.sparsity_target(), strictly_between(0, 1)));
         o.sparsity_cost(r.number("sparsity_cost", o.sparsity_cost(), at_least(0)));
         o.binarize(r.boolean("binarize", o.binarize()));
         r.require(!o.binarize() || o.visible_units() == Units::bernoulli, "binarize",
                   "only bernoulli visible units are binarised");
         o.init_std(r.number("init_std", o.init_std(), greater_than(0)));
         r.finish();
         if (o.visible_units() == Units::gaussian && !data.standardized) {
           r.warn("visible_units", "gaussian units have unit variance, but this input is not standardised (set "
                                   "data.standardize=true)");
         }
         return [o] { return RBM(o).ptr(); };
       },
       // In a stack, units that suit the codes below: Bernoulli on [0, 1], Gaussian otherwise.
       [](const DataSpec& input) -> Json {
         return {{"visible_units", input.min >= 0.0 && input.max <= 1.0 ? "bernoulli" : "gaussian"}};
       }});
}

}  // namespace torchae
