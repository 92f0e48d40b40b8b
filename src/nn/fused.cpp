#include "torchae/nn/fused.h"

#include "kernels.h"
#include "torchae/core/parallel.h"

#include <c10/util/string_utils.h>
#include <torch/autograd.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/functional/loss.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

namespace torchae {

namespace {

bool is_dense_cpu_float(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous() &&
         t.layout() == torch::kStrided;
}

// 16 K elements a task for the loss's loops: a few microseconds of work each.
constexpr int64_t kLossGrain = int64_t{1} << 14;

class BceFromLogits : public torch::autograd::Function<BceFromLogits> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& probabilities, const torch::Tensor& target) {
    ctx->save_for_backward({probabilities, target});
    const float* x = logits.data_ptr<float>();
    const float* p = probabilities.data_ptr<float>();
    const float* t = target.data_ptr<float>();
    const double sum = parallel_sum(0, logits.numel(), kLossGrain, [&](int64_t begin, int64_t end) {
      return kernels::bce_from_logits_sum(x, p, t, begin, end);
    });
    return torch::scalar_tensor(sum / static_cast<double>(logits.numel()), logits.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& probabilities = saved[0];
    const torch::Tensor& target = saved[1];
    const float scale = grads[0].item<float>() / static_cast<float>(probabilities.numel());
    torch::Tensor grad = torch::empty_like(probabilities);
    const float* p = probabilities.data_ptr<float>();
    const float* t = target.data_ptr<float>();
    float* g = grad.data_ptr<float>();
    parallel_for(0, probabilities.numel(), kLossGrain, [&](int64_t begin, int64_t end) {
      kernels::bce_from_logits_grad(p, t, g, begin, end, scale);
    });
    return {grad, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor binary_cross_entropy_from_logits(const torch::Tensor& logits, const torch::Tensor& probabilities,
                                               const torch::Tensor& target) {
  const bool fusable = is_dense_cpu_float(logits) && is_dense_cpu_float(probabilities) &&
                       is_dense_cpu_float(target) && !target.requires_grad() && logits.numel() > 0 &&
                       logits.sizes() == probabilities.sizes() && logits.sizes() == target.sizes();
  if (!fusable) return torch::nn::functional::binary_cross_entropy_with_logits(logits, target);
  return BceFromLogits::apply(logits, probabilities.detach(), target);
}

namespace {

// One 64-bit draw of LibTorch's default CPU generator: the seed of a counter-based sequence.
uint64_t draw_seed() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get<at::CPUGeneratorImpl>()->random64();
}

// A float CPU tensor shaped like `like`, filled by a counter-based kernel (uniform, rademacher)
// from one draw of LibTorch's generator.
torch::Tensor counter_based_like(const torch::Tensor& like, void (*kernel)(float*, int64_t, int64_t, uint64_t)) {
  torch::Tensor out = torch::empty(like.sizes(), like.options().memory_format(torch::MemoryFormat::Contiguous));
  float* data = out.data_ptr<float>();
  const uint64_t seed = draw_seed();
  parallel_for(0, out.numel(), kLossGrain, [&](int64_t begin, int64_t end) { kernel(data, begin, end, seed); });
  return out;
}

}  // namespace

torch::Tensor uniform_like(const torch::Tensor& like) {
  if (!(like.device().is_cpu() && like.scalar_type() == torch::kFloat)) return torch::rand_like(like);
  return counter_based_like(like, kernels::uniform);
}

torch::Tensor sample_bernoulli(const torch::Tensor& p) { return (uniform_like(p) < p).to(p.scalar_type()); }

torch::Tensor rademacher_like(const torch::Tensor& like) {
  if (!(like.device().is_cpu() && like.scalar_type() == torch::kFloat)) {
    return (uniform_like(like) < 0.5).to(like.scalar_type()).mul_(2).sub_(1);
  }
  return counter_based_like(like, kernels::rademacher);
}

torch::Tensor dropout_multiplier_like(const torch::Tensor& like, double p) {
  TORCH_CHECK(p >= 0 && p < 1, "dropout_multiplier_like: p must be in [0, 1)");
  return (uniform_like(like) >= p).to(like.scalar_type()).div_(1 - p);
}

torch::Tensor choose_exactly(int64_t rows, int64_t d, int64_t m) {
  TORCH_CHECK(rows >= 0 && d >= 0 && m >= 0 && m <= d, "choose_exactly: need 0 <= m <= d");
  torch::Tensor mask = torch::zeros({rows, d}, torch::kBool);
  if (m == 0 || rows == 0) return mask;
  bool* data = mask.data_ptr<bool>();
  const uint64_t seed = draw_seed();
  parallel_for(0, rows, std::max<int64_t>(1, kLossGrain / d), [&](int64_t begin, int64_t end) {
    std::vector<int32_t> scratch(static_cast<std::size_t>(d));
    kernels::choose_exactly(data, scratch.data(), d, m, begin, end, seed);
  });
  return mask;
}

namespace {

// Elements [begin, end) of one Adam step, on this thread.
void adam_elements(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t begin, int64_t end,
                   double beta1, double beta2, double eps, double weight_decay, double step_size,
                   double sqrt_bias_correction2) {
  // Each coefficient rounded to float once, from double, as LibTorch's scalar arguments are.
  const auto f = [](double value) { return static_cast<float>(value); };
  kernels::adam(param, grad, exp_avg, exp_avg_sq, begin, end, f(beta1), f(1 - beta1), f(beta2), f(1 - beta2), f(eps),
                f(weight_decay), f(step_size), f(1 / sqrt_bias_correction2));
}

}  // namespace

void fused_adam_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t size,
                       double beta1, double beta2, double eps, double weight_decay, double step_size,
                       double sqrt_bias_correction2) {
  // 64 K floats (a quarter of a megabyte in each of the four buffers) a task: below that, waking
  // a second thread costs more than it saves.
  parallel_for(0, size, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    adam_elements(param, grad, exp_avg, exp_avg_sq, begin, end, beta1, beta2, eps, weight_decay, step_size,
                  sqrt_bias_correction2);
  });
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (p.grad().defined()) update(p, p.grad(), options);
    }
  }
  return loss;
}

void FusedAdam::step_in_halves(HelperThread& helper) {
  torch::NoGradGuard no_grad;
  std::vector<Pass> passes;
  int64_t total = 0;
  for (auto& group : param_groups_) {
    auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (const std::optional<Pass> pass = prepare(p, p.grad(), options)) {  // p holds the gradient meanwhile
        passes.push_back(*pass);
        total += pass->size;
      }
    }
  }
  if (total < (int64_t{1} << 17)) {
    for (const Pass& pass : passes) pass.run(0, pass.size);
    return;
  }
  // 64 elements are 256 bytes, beyond any vector's alignment: each element is computed by the
  // instructions one pass would use.
  const auto middle = [](const Pass& pass) { return pass.size / 2 / 64 * 64; };
  helper.both(
      [&] {
        for (const Pass& pass : passes) pass.run(middle(pass), pass.size);
      },
      [&] {
        for (const Pass& pass : passes) pass.run(0, middle(pass));
      });
}

void FusedAdam::update(torch::Tensor& p, torch::Tensor grad, const torch::optim::AdamOptions& options) {
  if (const std::optional<Pass> pass = prepare(p, grad, options)) pass->run(0, pass->size);  // `grad` outlives it
}

void FusedAdam::Pass::run(int64_t begin, int64_t end) const {
  // On the calling thread: a pass runs on the trainer's helper and its Adam worker too, threads
  // of their own that split the work themselves.
  adam_elements(param, grad, exp_avg, exp_avg_sq, begin, end, beta1, beta2, eps, weight_decay, step_size,
                sqrt_bias_correction2);
}

std::optional<FusedAdam::Pass> FusedAdam::prepare(torch::Tensor& p, torch::Tensor grad,
                                                  const torch::optim::AdamOptions& options) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(!grad.is_sparse(), "Adam does not support sparse gradients");
  const double beta1 = std::get<0>(options.betas());
  const double beta2 = std::get<1>(options.betas());
  const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
  torch::optim::OptimizerParamState* entry = nullptr;
  {
    // The table may grow (and rehash) here; the states themselves do not move.
    std::lock_guard<std::mutex> lock(state_mutex_);
    auto found = state_.find(key);
    if (found == state_.end()) {
      auto fresh = std::make_unique<torch::optim::AdamParamState>();
      fresh->step(0);
      fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      if (options.amsgrad()) fresh->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      found = state_.emplace(key, std::move(fresh)).first;
    }
    entry = found->second.get();
  }
  auto& state = static_cast<torch::optim::AdamParamState&>(*entry);
  torch::Tensor& exp_avg = state.exp_avg();
  torch::Tensor& exp_avg_sq = state.exp_avg_sq();
  state.step(state.step() + 1);
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(state.step()));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(state.step()));
  const double step_size = options.lr() / bias_correction1;

  const bool fusable = !options.amsgrad() && is_dense_cpu_float(p) && is_dense_cpu_float(grad) &&
                       is_dense_cpu_float(exp_avg) && is_dense_cpu_float(exp_avg_sq) && grad.numel() == p.numel();
  if (fusable) {
    return Pass{p.data_ptr<float>(), grad.data_ptr<float>(), exp_avg.data_ptr<float>(), exp_avg_sq.data_ptr<float>(),
                p.numel(), beta1, beta2, options.eps(), options.weight_decay(), step_size,
                std::sqrt(bias_correction2)};
  }
  // LibTorch's own Adam::step, operation for operation.
  if (options.weight_decay() != 0) grad = grad.add(p, options.weight_decay());
  exp_avg.mul_(beta1).add_(grad, 1 - beta1);
  exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  torch::Tensor denom;
  if (options.amsgrad()) {
    torch::Tensor& max_exp_avg_sq = state.max_exp_avg_sq();
    torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
    denom = (max_exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
  } else {
    denom = (exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options.eps());
  }
  p.addcdiv_(exp_avg, denom, -step_size);
  return std::nullopt;
}

namespace {

thread_local HelperThread* paired_helper = nullptr;

}  // namespace

// Each thread keeps to its half of the weight's rows, forward and backward, so that what a core
// wrote stays in its cache.
void paired_forward(HelperThread& helper, torch::Tensor& y, const torch::Tensor& x, const torch::Tensor& weight,
                    const torch::Tensor& bias) {
  in_halves(helper, weight.size(0), [&](int64_t begin, int64_t end) {
    torch::Tensor part = y.narrow(1, begin, end - begin);
    const torch::Tensor rows = weight.narrow(0, begin, end - begin);
    if (bias.defined()) {
      at::addmm_out(part, bias.narrow(0, begin, end - begin), x, rows.t());
    } else {
      at::mm_out(part, x, rows.t());
    }
  });
}

void paired_backward(HelperThread& helper, torch::Tensor& grad_weight, torch::Tensor* grad_input_parts,
                     const torch::Tensor& grad_output, const torch::Tensor& x, const torch::Tensor& weight) {
  in_halves(helper, weight.size(0), [&](int64_t begin, int64_t end) {
    const torch::Tensor g = grad_output.narrow(1, begin, end - begin);
    torch::Tensor rows = grad_weight.narrow(0, begin, end - begin);
    at::mm_out(rows, g.t(), x);
    if (grad_input_parts) at::mm_out(grad_input_parts[begin == 0 ? 0 : 1], g, weight.narrow(0, begin, end - begin));
  });
}

namespace {

class PairedLinear : public torch::autograd::Function<PairedLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    torch::Tensor y = torch::empty({x.size(0), weight.size(0)}, x.options());
    paired_forward(*PairedProducts::current(), y, x, weight, bias);
    ctx->save_for_backward({x, weight});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const torch::Tensor& gy = grads[0];
    const bool for_x = ctx->needs_input_grad(0), for_weight = ctx->needs_input_grad(1);
    torch::Tensor gx, gw;
    HelperThread* helper = PairedProducts::current();
    // Without the weight's gradient there is one product, the input's, which would not be split.
    if (helper == nullptr || torch::GradMode::is_enabled() || !for_weight) {
      if (for_x) gx = gy.mm(weight);
      if (for_weight) gw = gy.t().mm(x);
    } else {
      gw = torch::empty(weight.sizes(), weight.options());
      torch::Tensor parts[2];
      if (for_x) parts[0] = torch::empty(x.sizes(), x.options()), parts[1] = torch::empty(x.sizes(), x.options());
      paired_backward(*helper, gw, for_x ? parts : nullptr, gy, x, weight);
      if (for_x) gx = parts[0].add_(parts[1]);
    }
    torch::Tensor gb = ctx->needs_input_grad(2) ? gy.sum(0) : torch::Tensor();
    return {gx, gw, gb};
  }
};

}  // namespace

PairedProducts::PairedProducts(HelperThread& helper) : previous_(paired_helper) { paired_helper = &helper; }

PairedProducts::~PairedProducts() { paired_helper = previous_; }

HelperThread* PairedProducts::current() { return paired_helper; }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto is_cpu_float = [](const torch::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.layout() == torch::kStrided;
  };
  const bool paired = paired_helper != nullptr && is_cpu_float(x) && is_cpu_float(weight) && is_cpu_float(bias) &&
                      x.dim() == 2 && weight.dim() == 2 && bias.dim() == 1 && weight.size(0) >= 2 &&
                      x.size(1) == weight.size(1) && bias.size(0) == weight.size(0);
  if (!paired) return torch::nn::functional::linear(x, weight, bias);
  return PairedLinear::apply(x, weight, bias);
}

}  // namespace torchae
