#include "torchae/train/benchmark.h"

#include "torchae/core/error.h"
#include "torchae/core/runtime.h"
#include "torchae/nn/fused.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <unordered_set>

namespace torchae {

std::vector<std::pair<int64_t, int64_t>> linear_layers_of(const torch::nn::Module& module) {
  std::vector<std::pair<int64_t, int64_t>> layers;
  std::unordered_set<const c10::TensorImpl*> covered;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    const auto* linear = dynamic_cast<const torch::nn::LinearImpl*>(child.get());
    if (linear == nullptr) continue;
    layers.emplace_back(linear->options.in_features(), linear->options.out_features());
    covered.insert(linear->weight.unsafeGetTensorImpl());
    if (linear->bias.defined()) covered.insert(linear->bias.unsafeGetTensorImpl());
  }
  for (const auto& named : module.named_parameters()) {
    if (covered.count(named.value().unsafeGetTensorImpl()) == 0) {
      throw Error(fmt::format("the model's parameter {} is not a Linear layer's: the matrix-product floor is only "
                              "measured for models made of Linear layers",
                              named.key()));
    }
  }
  return layers;
}

GemmFloor::GemmFloor(const std::vector<std::pair<int64_t, int64_t>>& layers, int64_t batch) {
  if (layers.empty()) throw Error("the matrix-product floor needs at least one Linear layer");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto [in, out] = layers[i];
    Layer layer;
    layer.input = torch::rand({batch, in});
    layer.weight = torch::rand({out, in});
    layer.output = torch::empty({batch, out});
    layer.grad_output = torch::rand({batch, out});
    layer.grad_weight = torch::empty({out, in});
    if (i > 0) layer.grad_input = torch::empty({batch, in});
    if (i > 0) layer.grad_input_part = torch::empty({batch, in});  // the helper's, paired
    layer.bias = torch::rand({out});
    // Adam reads the products' weight gradient in place, and a fixed draw for the bias.
    layer.weight.mutable_grad() = layer.grad_weight;
    layer.bias.mutable_grad() = torch::rand({out});
    const int64_t products = i > 0 ? 3 : 2;
    products_ += products;
    flops_ += static_cast<double>(products) * 2.0 * static_cast<double>(batch * in * out);
    layers_.push_back(std::move(layer));
  }
  std::vector<torch::Tensor> parameters;
  for (const auto& l : layers_) parameters.insert(parameters.end(), {l.weight, l.bias});
  // The rate is small enough that the weights stay where they were drawn over any number of steps.
  adam_ = std::make_unique<FusedAdam>(parameters, torch::optim::AdamOptions(1e-6));
  if (cores_per_process() >= 2) helper_ = std::make_unique<HelperThread>();
  step();  // the first products allocate OpenBLAS's buffers
  adam_->step();  // and the first update Adam's moments
}

void GemmFloor::step() {
  // y = x W^T forward; dW = g^T x and dx = g W backward, from the last layer to the first.
  for (auto& l : layers_) at::mm_out(l.output, l.input, l.weight.t());
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    at::mm_out(it->grad_weight, it->grad_output.t(), it->input);
    if (it->grad_input.defined()) at::mm_out(it->grad_input, it->grad_output, it->weight);
  }
}

void GemmFloor::paired_step() {
  // As PairedLinear makes them (the sum of the input gradient's two parts is not a product, and
  // not timed).
  const torch::Tensor no_bias;
  for (auto& l : layers_) paired_forward(*helper_, l.output, l.input, l.weight, no_bias);
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    torch::Tensor parts[2] = {it->grad_input, it->grad_input_part};
    paired_backward(*helper_, it->grad_weight, it->grad_input.defined() ? parts : nullptr, it->grad_output, it->input,
                    it->weight);
  }
}

int64_t GemmFloor::parameters() const {
  int64_t n = 0;
  for (const auto& l : layers_) n += l.weight.numel() + l.bias.numel();
  return n;
}

namespace {

double seconds_of(const std::function<void()>& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// `run` timed with OpenBLAS on the threads it has and on one, the faster; each setting's seconds
// added to `totals` (by thread count) when given. OpenBLAS is left as it was. Without OpenBLAS
// (threads 0) setting the count does nothing, and `run` is timed once.
double fastest_over_blas_threads(const std::function<void()>& run, std::map<int64_t, double>* totals) {
  const int64_t threads = blas_threads();
  const std::vector<int64_t> settings = threads > 1 ? std::vector<int64_t>{threads, 1} : std::vector<int64_t>{threads};
  double fastest = std::numeric_limits<double>::infinity();
  for (const int64_t setting : settings) {
    set_blas_threads(setting);
    const double seconds = seconds_of(run);
    if (totals) (*totals)[setting] += seconds;
    fastest = std::min(fastest, seconds);
  }
  set_blas_threads(threads);
  return fastest;
}

}  // namespace

double GemmFloor::fastest(const std::function<void(bool)>& run, bool count) {
  double best = fastest_over_blas_threads([&] { run(false); }, count ? &seconds_by_blas_threads_ : nullptr);
  if (helper_) {
    const double paired = seconds_of([&] { run(true); });
    if (count) paired_seconds_ += paired;
    best = std::min(best, paired);
  }
  return best;
}

double GemmFloor::time(int64_t steps) {
  return fastest(
      [&](bool paired) {
        for (int64_t i = 0; i < steps; ++i) paired ? paired_step() : step();
      },
      true);
}

double GemmFloor::time_with_adam(int64_t steps) {
  return fastest(
      [&](bool paired) {
        for (int64_t i = 0; i < steps; ++i) {
          paired ? paired_step() : step();
          if (helper_) {
            adam_->step_in_halves(*helper_);
          } else {
            adam_->step();
          }
        }
      },
      false);
}

namespace {

const std::vector<std::string>& part_names() {
  static const std::vector<std::string> names{"matrix products",      "element-wise forward", "element-wise backward",
                                              "loss",                 "optimizer",            "allocation",
                                              "data",                 "framework",            "unprofiled"};
  return names;
}

bool is_product(const std::string& name) {
  static const std::set<std::string> products{"aten::mm",          "aten::addmm",          "aten::bmm",
                                              "aten::baddbmm",     "aten::addmv",          "aten::mv",
                                              "aten::dot",         "aten::mkldnn_convolution",
                                              "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
                                              "aten::convolution_backward", "aten::mkldnn_convolution_backward",
                                              "aten::slow_conv_transpose2d", "aten::_nnpack_spatial_convolution"};
  return products.count(name) > 0;
}

bool is_allocation(const std::string& name) {
  static const std::set<std::string> allocations{"aten::empty",      "aten::empty_strided", "aten::empty_like",
                                                 "aten::zeros",      "aten::zeros_like",    "aten::ones_like",
                                                 "aten::resize_",    "aten::fill_",         "aten::zero_",
                                                 "aten::new_empty",  "aten::new_zeros",     "aten::new_empty_strided"};
  return allocations.count(name) > 0;
}

bool is_wrapper(const std::string& name) {
  return name.rfind("torchae::", 0) == 0 || name.rfind("autograd::engine::", 0) == 0;
}

// The part a torchae:: scope of Trainer::step or the benchmark stands for; null for the others.
const char* scope_part(const std::string& scope) {
  if (scope == "torchae::data") return "data";
  if (scope == "torchae::optimizer") return "optimizer";
  if (scope == "torchae::loss") return "loss";
  if (scope == "torchae::paired") return "matrix products";  // this thread's half, and its wait for the other
  return nullptr;
}

// The part an op's self time belongs to, from its name and the scopes it ran in (`scopes`:
// the names of the events enclosing it, outermost first).
std::string part_of(const std::string& name, const std::vector<std::string>& scopes) {
  // A scope's own time is its part's when nothing inside it is an op (FusedAdam's one loop, say).
  if (const char* part = scope_part(name)) return part;
  if (is_wrapper(name)) return "framework";
  if (is_product(name)) return "matrix products";
  if (is_allocation(name)) return "allocation";
  bool backward = false;
  for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
    const std::string& scope = *it;
    if (const char* part = scope_part(scope)) return part;
    if (scope.rfind("autograd::engine::evaluate_function: ", 0) == 0) {
      // The backward of the loss: its grad_fn is named after the loss function.
      if (scope.find("Loss") != std::string::npos || scope.find("CrossEntropy") != std::string::npos) return "loss";
      backward = true;
    }
    if (scope == "torchae::backward") backward = true;
  }
  return backward ? "element-wise backward" : "element-wise forward";
}

}  // namespace

StepProfile profile_steps(const std::function<void()>& step, int64_t steps) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  prof::prepareProfiler(ProfilerConfig(ProfilerState::KINETO), {ActivityType::CPU});
  prof::enableProfiler(ProfilerConfig(ProfilerState::KINETO), {ActivityType::CPU});
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();

  // The events nest by time on each thread (the profiler gives microseconds): sorted by start,
  // the longer first, each event's parent is the innermost open one that contains it.
  struct Span {
    uint64_t thread, start, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& event : result->events()) {
    if (event.deviceType() != c10::DeviceType::CPU) continue;
    spans.push_back({event.startThreadId(), event.startUs(), event.startUs() + event.durationUs(), event.name()});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.thread, a.start, b.end) < std::tie(b.thread, b.start, a.end);
  });
  std::map<std::string, double> parts;
  std::map<std::string, double> ops;
  double covered_ms = 0;
  std::vector<std::size_t> open;  // indices into spans, outermost first
  std::vector<double> self_ms(spans.size());
  const auto close = [&](std::size_t index) {
    std::vector<std::string> scopes;
    for (const std::size_t o : open) scopes.push_back(spans[o].name);
    const double ms = std::max(self_ms[index], 0.0);
    parts[part_of(spans[index].name, scopes)] += ms;
    if (!is_wrapper(spans[index].name)) {
      ops[spans[index].name + (scopes.empty() ? "" : " < " + scopes.back())] += ms;
    }
  };
  for (std::size_t i = 0; i < spans.size(); ++i) {
    while (!open.empty() && (spans[open.back()].thread != spans[i].thread || spans[open.back()].end < spans[i].end ||
                             spans[open.back()].end <= spans[i].start)) {
      const std::size_t done = open.back();
      open.pop_back();
      close(done);
    }
    const double ms = static_cast<double>(spans[i].end - spans[i].start) / 1e3;
    self_ms[i] = ms;
    if (open.empty()) {
      covered_ms += ms;
    } else {
      self_ms[open.back()] -= ms;
    }
    open.push_back(i);
  }
  while (!open.empty()) {
    const std::size_t done = open.back();
    open.pop_back();
    close(done);
  }
  parts["unprofiled"] = std::max(wall_ms - covered_ms, 0.0);

  StepProfile profile;
  profile.steps = steps;
  const double per = 1.0 / static_cast<double>(steps);
  profile.wall_ms_per_step = wall_ms * per;
  for (const auto& name : part_names()) profile.ms_per_step.emplace_back(name, parts[name] * per);
  std::vector<std::pair<std::string, double>> heaviest(ops.begin(), ops.end());
  std::sort(heaviest.begin(), heaviest.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (heaviest.size() > 12) heaviest.resize(12);
  for (auto& [name, ms] : heaviest) profile.top_ops.emplace_back(name, ms * per);
  return profile;
}

nlohmann::json StepProfile::to_json() const {
  nlohmann::json parts = nlohmann::json::object();
  nlohmann::json fractions = nlohmann::json::object();
  for (const auto& [name, ms] : ms_per_step) {
    parts[name] = ms;
    fractions[name] = wall_ms_per_step > 0 ? ms / wall_ms_per_step : 0.0;
  }
  nlohmann::json top = nlohmann::json::array();
  for (const auto& [name, ms] : top_ops) top.push_back({{"op", name}, {"ms_per_step", ms}});
  return {{"steps", steps},
          {"wall_ms_per_step", wall_ms_per_step},
          {"ms_per_step", parts},
          {"fraction", fractions},
          {"top_ops", top}};
}

}  // namespace torchae
