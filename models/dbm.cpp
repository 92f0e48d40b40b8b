#include "torchae/models/dbm.h"

#include "torchae/core/error.h"
#include "torchae/models/registry.h"

#include <torch/nn/functional/linear.h>
#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

namespace torchae {

namespace F = torch::nn::functional;

namespace {

constexpr double kLog2 = 0.6931471805599453;

// The annealing path of a DBM of binary units (Salakhutdinov & Hinton 2009, section 4): the odd
// layers summed out, so the state is the even ones [v, h_2, h_4, ...] side by side, and
// p*_b(even) = exp((1 - b) a.v + b (b_0.v + sum_even c_l.h_l)) prod_odd prod_j (1 + exp(b x_lj)),
// x_l the input of odd layer l from its neighbours; the base model (b = 0) is the base-rate
// model of v with every hidden unit free. The transition is one Gibbs sweep at b.
class DbmAnnealingPath : public AnnealingPath {
 public:
  DbmAnnealingPath(std::vector<torch::Tensor> weights, std::vector<torch::Tensor> biases, torch::Tensor base)
      : w_(std::move(weights)), b_(std::move(biases)), base_(std::move(base)) {
    for (const auto& bias : b_) widths_.push_back(bias.size(0));
  }

  double base_log_partition() const override {
    int64_t hidden = 0;
    for (std::size_t l = 1; l < widths_.size(); ++l) hidden += widths_[l];
    return static_cast<double>(hidden) * kLog2 + torch::softplus(base_.to(torch::kDouble)).sum().item<double>();
  }

  torch::Tensor sample_base(int64_t runs) override {
    std::vector<torch::Tensor> even{sample_bernoulli(torch::sigmoid(base_).expand({runs, base_.size(0)}).contiguous())};
    for (std::size_t l = 2; l < widths_.size(); l += 2) {
      even.push_back(sample_bernoulli(torch::full({runs, widths_[l]}, 0.5, base_.options())));
    }
    return torch::cat(even, 1);
  }

  torch::Tensor advance(torch::Tensor& state, double from, double to) override {
    std::vector<torch::Tensor> s = split(state);
    const auto f64 = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
    torch::Tensor step = (to - from) * torch::mv(f64(s[0]), f64(b_[0] - base_));
    for (std::size_t l = 2; l < s.size(); l += 2) step = step + (to - from) * torch::mv(f64(s[l]), f64(b_[l]));
    for (std::size_t l = 1; l < s.size(); l += 2) {
      const torch::Tensor x = input(s, l);
      step = step + (torch::softplus(to * f64(x)) - torch::softplus(from * f64(x))).sum(1);
      s[l] = sample_bernoulli(torch::sigmoid(to * x));
    }
    s[0] = sample_bernoulli(torch::sigmoid((1.0 - to) * base_ + to * input(s, 0)));
    for (std::size_t l = 2; l < s.size(); l += 2) s[l] = sample_bernoulli(torch::sigmoid(to * input(s, l)));
    std::vector<torch::Tensor> even;
    for (std::size_t l = 0; l < s.size(); l += 2) even.push_back(s[l]);
    state = torch::cat(even, 1);
    return step;
  }

 private:
  // Every layer's state: the even ones from `state`, the odd ones undefined until drawn.
  std::vector<torch::Tensor> split(const torch::Tensor& state) const {
    std::vector<torch::Tensor> s(widths_.size());
    int64_t at = 0;
    for (std::size_t l = 0; l < widths_.size(); l += 2) {
      s[l] = state.narrow(1, at, widths_[l]);
      at += widths_[l];
    }
    return s;
  }

  torch::Tensor input(const std::vector<torch::Tensor>& s, std::size_t l) const {
    torch::Tensor x = b_[l].expand({s[l == 0 ? 1 : l - 1].size(0), widths_[l]});
    if (l > 0) x = x + F::linear(s[l - 1], w_[l - 1]);
    if (l + 1 < s.size()) x = x + torch::mm(s[l + 1], w_[l]);
    return x;
  }

  std::vector<torch::Tensor> w_, b_;
  torch::Tensor base_;
  std::vector<int64_t> widths_;
};

}  // namespace

DBMOptions::DBMOptions(std::vector<int64_t> input_shape, std::vector<int64_t> layers)
    : input_shape_(std::move(input_shape)), layers_(std::move(layers)) {}

DBMImpl::DBMImpl(DBMOptions options_) : options(std::move(options_)) { reset(); }

void DBMImpl::reset() {
  const std::vector<int64_t>& widths = options.layers();
  TORCH_CHECK(widths.size() >= 2, "dbm: at least 2 hidden layers (for one, an rbm)");
  TORCH_CHECK(options.mean_field_steps() >= 1 && options.cd_k() >= 1 && options.chains() >= 1 &&
                  options.gibbs_steps() >= 1 && options.pretrain_cd_k() >= 1,
              "dbm: mean_field_steps, cd_k, chains, gibbs_steps and pretrain_cd_k must be >= 1");
  layers_.clear();
  chains_.clear();
  const std::size_t top = widths.size();
  for (std::size_t l = 1; l <= top; ++l) {
    // Salakhutdinov & Hinton 2009, section 3.1: a layer that will get input from above in the DBM
    // has its bottom-up input doubled while it pretrains; one that will get input from below, its
    // top-down input.
    RBMOptions o(l == 1 ? options.input_shape() : std::vector<int64_t>{widths[l - 2]}, widths[l - 1]);
    o.up_scale(l < top ? 2.0 : 1.0)
        .down_scale(l > 1 ? 2.0 : 1.0)
        .cd_k(options.pretrain_cd_k())
        .weight_cost(options.weight_cost())
        .binarize(l == 1 && options.binarize())
        .init_std(options.init_std());
    layers_.push_back(register_module("layer" + std::to_string(l), RBM(o)));
  }
  chains_.push_back(register_buffer("chain0", random_visible(options.chains()).flatten(1)));
  for (std::size_t l = 1; l <= top; ++l) {
    chains_.push_back(register_buffer("chain" + std::to_string(l),
                                      sample_bernoulli(torch::full({options.chains(), widths[l - 1]}, 0.5))));
  }
  classifier_.clear();
  head_ = nullptr;
  if (options.classify()) {
    TORCH_CHECK(options.classes() >= 2, "dbm: a classifier needs at least 2 classes");
    head_ = register_module("head", torch::nn::Linear(widths.back(), options.classes()));
  }
}

void DBMImpl::pretty_print(std::ostream& stream) const {
  stream << fmt::format("torchae::DBM(visible={}, layers=[{}], mean_field_steps={}, chains={}, classes={})",
                        layers_.front()->weights()->weight.size(1), fmt::join(options.layers(), ", "),
                        options.mean_field_steps(), options.chains(), classes());
}

void DBMImpl::load(torch::serialize::InputArchive& archive) {
  torch::Tensor weight;
  if (!has_classifier() && archive.try_read("classifier_weight1", weight)) make_classifier();
  torch::nn::Module::load(archive);
}

void DBMImpl::make_classifier() {
  if (has_classifier() || !head_) return;
  torch::NoGradGuard no_grad;
  const auto w = weights(), b = biases();
  const std::size_t top = layers_.size();
  for (std::size_t l = 1; l <= top; ++l) {
    classifier_.push_back(register_parameter(fmt::format("classifier_weight{}", l), w[l - 1].detach().clone()));
  }
  for (std::size_t l = 1; l <= top; ++l) {
    classifier_.push_back(register_parameter(fmt::format("classifier_bias{}", l), b[l].detach().clone()));
  }
  classifier_.push_back(register_parameter("classifier_extra", w[1].detach().clone()));
}

std::vector<torch::Tensor> DBMImpl::weights() const {
  std::vector<torch::Tensor> w;
  for (const auto& layer : layers_) w.push_back(layer->weights()->weight);
  return w;
}

std::vector<torch::Tensor> DBMImpl::biases() const {
  // A hidden layer below the top was estimated twice in pretraining, as the hidden units of its
  // own RBM and as the visible units of the one above: the DBM takes the mean.
  std::vector<torch::Tensor> b{layers_.front()->visible_bias()};
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const torch::Tensor& own = layers_[l]->weights()->bias;
    b.push_back(l + 1 < layers_.size() ? 0.5 * (own + layers_[l + 1]->visible_bias()) : own);
  }
  return b;
}

torch::Tensor DBMImpl::layer_input(const std::vector<torch::Tensor>& s, std::size_t l, const std::vector<torch::Tensor>& w,
                                   const std::vector<torch::Tensor>& b) const {
  torch::Tensor x;
  if (l > 0) x = F::linear(s[l - 1], w[l - 1], b[l]);
  if (l + 1 < s.size()) x = x.defined() ? x + torch::mm(s[l + 1], w[l]) : F::linear(s[l + 1], w[l].t(), b[l]);
  return x;
}

std::vector<torch::Tensor> DBMImpl::mean_field(const torch::Tensor& v) {
  torch::NoGradGuard no_grad;
  const auto w = weights(), b = biases();
  const std::size_t top = layers_.size();
  std::vector<torch::Tensor> q{v};
  for (std::size_t l = 1; l <= top; ++l) {
    q.push_back(torch::sigmoid(F::linear(q[l - 1], (l < top ? 2.0 : 1.0) * w[l - 1], b[l])));
  }
  for (int64_t step = 0; step < options.mean_field_steps(); ++step) {
    for (std::size_t l = 1; l <= top; ++l) q[l] = torch::sigmoid(layer_input(q, l, w, b));
  }
  q.erase(q.begin());
  return q;
}

torch::Tensor DBMImpl::energy(const std::vector<torch::Tensor>& s) {
  const auto w = weights(), b = biases();
  torch::Tensor e = -torch::mv(s[0], b[0]);
  for (std::size_t l = 1; l < s.size(); ++l) {
    e = e - torch::mv(s[l], b[l]) - (F::linear(s[l - 1], w[l - 1]) * s[l]).sum(1);
  }
  return e;
}

void DBMImpl::gibbs_sweep(std::vector<torch::Tensor>& s) {
  const auto w = weights(), b = biases();
  for (std::size_t parity : {1, 0}) {
    for (std::size_t l = parity; l < s.size(); l += 2) s[l] = sample_bernoulli(torch::sigmoid(layer_input(s, l, w, b)));
  }
}

std::vector<torch::Tensor> DBMImpl::start_chains(const torch::Tensor& v) {
  std::vector<torch::Tensor> s{v};
  for (const torch::Tensor& q : mean_field(v)) s.push_back(sample_bernoulli(q));
  return s;
}

torch::Tensor DBMImpl::view_as_input(const torch::Tensor& flat) const {
  std::vector<int64_t> shape{flat.size(0)};
  shape.insert(shape.end(), options.input_shape().begin(), options.input_shape().end());
  return flat.view(shape);
}

Output DBMImpl::reconstruct(const torch::Tensor& code) {
  // Top-down means; a layer below the top also gets input from below in the DBM, which the
  // doubled input from above stands in for (as in pretraining).
  const auto w = weights(), b = biases();
  torch::Tensor h = code;
  for (std::size_t l = layers_.size(); l > 1; --l) h = torch::sigmoid(F::linear(h, 2.0 * w[l - 1].t(), b[l - 1]));
  Output out;
  out.code = code;
  out.logits = view_as_input(F::linear(h, w[0].t(), b[0]));
  out.reconstruction = torch::sigmoid(out.logits);
  return out;
}

torch::Tensor DBMImpl::decode(const torch::Tensor& code) { return reconstruct(code).reconstruction; }

torch::Tensor DBMImpl::encode(const torch::Tensor& input) { return mean_field(input.flatten(1)).back(); }

Output DBMImpl::forward(const torch::Tensor& input) {
  torch::Tensor v = input.flatten(1);
  if (is_training() && binarizes()) v = sample_bernoulli(v);
  Output out;
  if (classifying_) {
    out.scores = classify(v);
    return out;
  }
  const std::vector<torch::Tensor> q = mean_field(v);
  out.code = q.back();
  out.logits = view_as_input(F::linear(q.front(), weights().front().t(), biases().front()));
  out.reconstruction = torch::sigmoid(out.logits);
  if (is_training()) {
    out.input = view_as_input(v);
    out.positive = torch::cat(q, 1);
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> s(chains_.begin(), chains_.end());
    for (int64_t k = 0; k < options.cd_k(); ++k) gibbs_sweep(s);
    for (std::size_t l = 0; l < s.size(); ++l) chains_[l].copy_(s[l]);
    out.negative = torch::cat(s, 1);
  }
  return out;
}

torch::Tensor DBMImpl::reconstruction_cost(const Output& output, const torch::Tensor& target) {
  return F::binary_cross_entropy_with_logits(output.logits, target.view(output.logits.sizes()));
}

Losses DBMImpl::loss(const torch::Tensor& target, const Output& output) {
  const torch::Tensor v = output.input.defined() ? output.input : target;
  const torch::Tensor recon = reconstruction_cost(output, v);
  if (!output.negative.defined()) return {recon, {{"recon", recon}}};
  // The widths of the layers side by side in `positive` (hidden) and `negative` (all).
  std::vector<int64_t> widths{v[0].numel()};
  widths.insert(widths.end(), options.layers().begin(), options.layers().end());
  const std::vector<int64_t> hidden(widths.begin() + 1, widths.end());
  std::vector<torch::Tensor> data{v.flatten(1)};
  for (const torch::Tensor& q : output.positive.split_with_sizes(hidden, 1)) data.push_back(q);
  const std::vector<torch::Tensor> model = output.negative.split_with_sizes(widths, 1);
  // E is linear in each layer's state, so E(v, q) = E_q[E(v, h)]: the gradient of this gap is the
  // data term under q less the chains' model term (Salakhutdinov & Hinton 2009, equation 7).
  // Both terms in one batch, as the RBM's: one product a layer, whose weight gradient sums both.
  std::vector<torch::Tensor> both;
  for (std::size_t l = 0; l < data.size(); ++l) both.push_back(torch::cat({data[l], model[l]}));
  const int64_t n0 = data.front().size(0);
  const torch::Tensor energies = energy(both);
  const torch::Tensor gap = energies.narrow(0, 0, n0).mean() - energies.narrow(0, n0, energies.size(0) - n0).mean();
  Losses losses{gap, {{"recon", recon.detach()}, {"energy_gap", gap.detach()}}};
  if (options.weight_cost() > 0) {
    torch::Tensor decay = torch::zeros({}, gap.options());
    for (const torch::Tensor& w : weights()) decay = decay + w.pow(2).sum();
    decay = 0.5 * options.weight_cost() * decay;
    losses.total = losses.total + decay;
    losses.terms.emplace_back("weight_decay", decay.detach());
  }
  return losses;
}

torch::Tensor DBMImpl::classify(const torch::Tensor& input) {
  TORCH_CHECK(head_, "dbm: this model has no classifier head (model.classify is false)");
  const torch::Tensor v = input.flatten(1);
  // Salakhutdinov & Hinton 2009, section 5: the mean-field q(h_2|v), computed with the DBM as it
  // stands and held fixed, is an extra input to the first hidden layer through W_2.
  const torch::Tensor q2 = mean_field(v)[1];
  const std::size_t top = layers_.size();
  // The classifier's own weights once its stage has begun; before, the DBM's.
  std::vector<torch::Tensor> w, b{torch::Tensor()};
  torch::Tensor extra;
  if (has_classifier()) {
    w.assign(classifier_.begin(), classifier_.begin() + static_cast<std::ptrdiff_t>(top));
    b.insert(b.end(), classifier_.begin() + static_cast<std::ptrdiff_t>(top), classifier_.begin() + static_cast<std::ptrdiff_t>(2 * top));
    extra = classifier_.back();
  } else {
    w = weights();
    b = biases();
    extra = w[1];
  }
  torch::Tensor h = torch::sigmoid(F::linear(v, w[0], b[1]) + torch::mm(q2, extra));
  for (std::size_t l = 2; l <= top; ++l) h = torch::sigmoid(F::linear(h, w[l - 1], b[l]));
  return head_->forward(h);
}

Losses DBMImpl::supervised_loss(const Output& output, const torch::Tensor& labels) {
  return classification_losses(output.scores, labels);
}

torch::Tensor DBMImpl::random_visible(int64_t n) {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), options.input_shape().begin(), options.input_shape().end());
  const auto o = layers_.empty() ? torch::TensorOptions() : layers_.front()->visible_bias().options();
  return sample_bernoulli(torch::full(shape, 0.5, o));
}

torch::Tensor DBMImpl::gibbs(const torch::Tensor& start, int64_t steps) {
  TORCH_CHECK(steps >= 0, "gibbs: steps must be >= 0");
  if (steps == 0) return start;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> s = start_chains(start.flatten(1));
  for (int64_t t = 1; t < steps; ++t) gibbs_sweep(s);
  const auto w = weights(), b = biases();
  return view_as_input(torch::sigmoid(layer_input(s, 0, w, b)));
}

torch::Tensor DBMImpl::sample(int64_t n) { return gibbs(random_visible(n), options.gibbs_steps()); }

std::unique_ptr<AnnealingPath> DBMImpl::annealing_path(const torch::Tensor& train) {
  std::vector<torch::Tensor> w, b;
  for (const auto& t : weights()) w.push_back(t.detach());
  for (const auto& t : biases()) b.push_back(t.detach());
  const torch::Tensor base = base_rate_biases(train, b.front().options());
  return std::make_unique<DbmAnnealingPath>(std::move(w), std::move(b), base);
}

torch::Tensor DBMImpl::log_unnormalized(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const torch::Tensor v = x.flatten(1);
  std::vector<torch::Tensor> q = mean_field(v);
  torch::Tensor entropy = torch::zeros({v.size(0)}, v.options());
  for (const torch::Tensor& layer : q) {
    const torch::Tensor c = layer.clamp(1e-7, 1.0 - 1e-7);
    entropy = entropy - (c * c.log() + (1 - c) * (1 - c).log()).sum(1);
  }
  q.insert(q.begin(), v);
  return -energy(q) + entropy;
}

std::optional<double> DBMImpl::exact_log_partition() {
  int64_t hidden = 0;
  for (int64_t width : options.layers()) hidden += width;
  if (hidden > 20) return std::nullopt;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> w, b;
  for (const auto& t : weights()) w.push_back(t.detach().cpu().to(torch::kDouble));
  for (const auto& t : biases()) b.push_back(t.detach().cpu().to(torch::kDouble));
  const torch::Tensor bits = torch::pow(2, torch::arange(hidden, torch::kInt64));
  const torch::Tensor all = torch::arange(int64_t{1} << hidden, torch::kInt64).unsqueeze(1).bitwise_and(bits).ne(0).to(torch::kDouble);
  // log Z = log sum_h exp(-E_h(h)) prod_i (1 + exp(b_0 + W_1^T h_1)_i), the visible units summed out.
  std::vector<torch::Tensor> h{torch::Tensor()};
  int64_t at = 0;
  for (int64_t width : options.layers()) {
    h.push_back(all.narrow(1, at, width));
    at += width;
  }
  torch::Tensor log_terms = torch::softplus(F::linear(h[1], w[0].t(), b[0])).sum(1);
  for (std::size_t l = 1; l < h.size(); ++l) {
    log_terms = log_terms + torch::mv(h[l], b[l]);
    if (l >= 2) log_terms = log_terms + (F::linear(h[l - 1], w[l - 1]) * h[l]).sum(1);
  }
  return torch::logsumexp(log_terms, 0).item<double>();
}

std::vector<Stage> DBMImpl::stages() {
  std::vector<Stage> stages;
  if (options.pretrain()) {
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      std::vector<std::shared_ptr<Autoencoder>> below;
      for (std::size_t i = 0; i < l; ++i) below.push_back(layers_[i].ptr());
      stages.push_back({"pretrain", static_cast<int64_t>(l + 1), layers_[l].ptr(), below, options.pretrain_epochs(),
                        options.pretrain_lr()});
    }
  }
  const std::shared_ptr<Autoencoder> self(shared_from_this(), this);
  if (options.train()) stages.push_back({"train", 0, self, {}, 0, 0.0});
  if (options.classify()) stages.push_back({"classify", 0, self, {}, options.classify_epochs(), options.classify_lr()});
  return stages;
}

void DBMImpl::enter_stage(std::size_t index) {
  classifying_ = stages().at(index).phase == "classify";
  if (classifying_) make_classifier();
}

void DBMImpl::script(ScriptModel& script) const {
  const std::size_t top = layers_.size();
  std::vector<std::string> w{""}, b;
  for (std::size_t l = 1; l <= top; ++l) w.push_back(script.tensor(fmt::format("W{}", l), weights()[l - 1]));
  const auto bias = biases();
  for (std::size_t l = 0; l <= top; ++l) b.push_back(script.tensor(fmt::format("b{}", l), bias[l]));
  // The input of layer l from its neighbours in q (q[0] the visible units).
  auto input = [&](std::size_t l) {
    std::string x = l > 0 ? fmt::format("torch.linear(q[{}], {}, {})", l - 1, w[l], b[l]) : "";
    if (l + 1 <= top) {
      x += l > 0 ? fmt::format(" + torch.mm(q[{}], {})", l + 1, w[l + 1])
                 : fmt::format("torch.linear(q[1], {}.t(), {})", w[1], b[0]);
    }
    return x;
  };
  std::vector<std::string> mean_field{"q: List[Tensor] = [v]"};
  for (std::size_t l = 1; l <= top; ++l) {
    mean_field.push_back(fmt::format("q.append(torch.sigmoid(torch.linear(q[{}], {}{}, {})))", l - 1,
                                     l < top ? "2.0 * " : "", w[l], b[l]));
  }
  mean_field.push_back(fmt::format("for _ in range({}):", options.mean_field_steps()));
  for (std::size_t l = 1; l <= top; ++l) mean_field.push_back(fmt::format("    q[{}] = torch.sigmoid({})", l, input(l)));
  mean_field.push_back("return q");
  script.method("mean_field(self, v: Tensor) -> List[Tensor]", mean_field);

  const std::string shape = fmt::format("{}", fmt::join(options.input_shape(), ", "));
  std::vector<std::string> decoder{"y = h"};
  for (std::size_t l = top; l > 1; --l) {
    decoder.push_back(fmt::format("y = torch.sigmoid(torch.linear(y, 2.0 * {}.t(), {}))", w[l], b[l - 1]));
  }
  decoder.push_back(fmt::format("y = torch.sigmoid(torch.linear(y, {}.t(), {})).view([h.size(0), {}])", w[1], b[0], shape));
  define_autoencoder_methods(script, {"h = self.mean_field(x.flatten(1))[-1]"}, decoder,
                             {"q = self.mean_field(x.flatten(1))",
                              fmt::format("return torch.sigmoid(torch.linear(q[1], {}.t(), {})).view([x.size(0), {}])",
                                          w[1], b[0], shape)});
  std::vector<std::string> sample{"q = self.mean_field(torch.bernoulli(torch.full([n, " +
                                  std::to_string(layers_.front()->weights()->weight.size(1)) + "], 0.5, device=" + w[1] +
                                  ".device)))"};
  for (std::size_t l = 1; l <= top; ++l) sample.push_back(fmt::format("q[{}] = torch.bernoulli(q[{}])", l, l));
  sample.push_back(fmt::format("for _ in range({}):", options.gibbs_steps() - 1));
  for (std::size_t parity : {1, 0}) {
    for (std::size_t l = parity; l <= top; l += 2) {
      sample.push_back(fmt::format("    q[{}] = torch.bernoulli(torch.sigmoid({}))", l, input(l)));
    }
  }
  sample.push_back(fmt::format("return torch.sigmoid({}).view([n, {}])", input(0), shape));
  script.method("sample(self, n: int) -> Tensor", sample);
  if (head_) {
    // The classifier's weights (the DBM's before its stage).
    std::vector<std::string> cw{""}, cb{""};
    for (std::size_t l = 1; l <= top; ++l) {
      cw.push_back(has_classifier() ? script.tensor(fmt::format("classifier_weight{}", l), classifier_[l - 1]) : w[l]);
      cb.push_back(has_classifier() ? script.tensor(fmt::format("classifier_bias{}", l), classifier_[top + l - 1]) : b[l]);
    }
    const std::string extra = has_classifier() ? script.tensor("classifier_extra", classifier_.back()) : w[2];
    std::vector<std::string> classify{"v = x.flatten(1)", "q = self.mean_field(v)",
                                      fmt::format("h = torch.sigmoid(torch.linear(v, {}, {}) + torch.mm(q[2], {}))", cw[1],
                                                  cb[1], extra)};
    for (std::size_t l = 2; l <= top; ++l) classify.push_back(fmt::format("h = torch.sigmoid(torch.linear(h, {}, {}))", cw[l], cb[l]));
    classify.push_back(fmt::format("return torch.linear(h, {}, {})", script.tensor("head.weight", head_->weight),
                                   script.tensor("head.bias", head_->bias)));
    script.method("classify(self, x: Tensor) -> Tensor", classify);
  }
}

void register_dbm(Registry& registry) {
  registry.add(
      {"dbm",
       "deep Boltzmann machine of binary units (layers: hidden widths), pretrained by modified RBMs, trained with "
       "mean-field for the data and persistent chains for the model; AIS for its likelihood bound; optionally a "
       "classifier fine-tuned from it (classify)",
       [](OptionReader& r, const DataSpec& data, const Registry&) -> ModelMaker {
         DBMOptions o(data.shape, r.integers("layers", {500, 1000}, at_least(1)));
         r.require(o.layers().size() >= 2, "layers", "a DBM has at least 2 hidden layers (for one, use rbm)");
         r.require(data.min >= 0.0 && data.max <= 1.0, "family",
                   fmt::format("a dbm's visible units are binary: it needs input in [0, 1], this input spans "
                               "[{:.3g}, {:.3g}]",
                               data.min, data.max));
         o.mean_field_steps(r.integer("mean_field_steps", o.mean_field_steps(), at_least(1)));
         o.cd_k(r.integer("cd_k", o.cd_k(), at_least(1)));
         o.chains(r.integer("chains", o.chains(), at_least(1)));
         o.gibbs_steps(r.integer("gibbs_steps", o.gibbs_steps(), at_least(1)));
         o.weight_cost(r.number("weight_cost", o.weight_cost(), at_least(0)));
         o.binarize(r.boolean("binarize", o.binarize()));
         o.init_std(r.number("init_std", o.init_std(), greater_than(0)));
         o.pretrain(r.boolean("pretrain", o.pretrain()));
         o.pretrain_epochs(r.integer("pretrain_epochs", o.pretrain_epochs(), at_least(0)));
         o.pretrain_lr(r.number("pretrain_lr", o.pretrain_lr(), at_least(0)));
         o.pretrain_cd_k(r.integer("pretrain_cd_k", o.pretrain_cd_k(), at_least(1)));
         o.train(r.boolean("train", o.train()));
         o.classify(r.boolean("classify", o.classify()));
         r.require(o.pretrain() || o.train() || o.classify(), "train",
                   "every stage is off (pretrain, train, classify): nothing would be trained");
         o.classify_epochs(r.integer("classify_epochs", o.classify_epochs(), at_least(0)));
         o.classify_lr(r.number("classify_lr", o.classify_lr(), at_least(0)));
         o.classes(r.integer("classes", o.classes(), at_least(2)));
         r.finish();
         return [o] { return DBM(o).ptr(); };
       },
       /*layer_defaults=*/nullptr});  // not a stack's layer
}

}  // namespace torchae
