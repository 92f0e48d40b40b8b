#include "torchae/data/corruption.h"

#include <torch/torch.h>

#include <cmath>

namespace torchae {

const std::vector<std::string>& corruption_names() {
  static const std::vector<std::string> names{"none", "gaussian", "masking", "salt_pepper"};
  return names;
}

CorruptionKind parse_corruption(const std::string& name) {
  return static_cast<CorruptionKind>(index_of_name(corruption_names(), name, "corruption"));
}

std::string to_string(CorruptionKind kind) { return corruption_names().at(static_cast<std::size_t>(kind)); }

CorruptionOptions CorruptionOptions::from(OptionReader& r, const DataSpec& data, const std::string& default_kind,
                                          double default_level) {
  CorruptionOptions o;
  o.kind = parse_corruption(r.choice("corruption", default_kind, corruption_names()));
  const bool fraction = o.kind == CorruptionKind::masking || o.kind == CorruptionKind::salt_pepper;
  o.level = r.number("level", default_level, fraction ? between(0, 1) : at_least(0));
  o.min = data.min;
  o.max = data.max;
  return o;
}

namespace {

// Exactly m of each row's d components, uniformly at random: the m largest of d uniforms.
torch::Tensor choose_per_example(int64_t batch, int64_t d, int64_t m, const torch::TensorOptions& options) {
  torch::Tensor mask = torch::zeros({batch, d}, options.dtype(torch::kBool));
  if (m == 0) return mask;
  const torch::Tensor chosen = std::get<1>(torch::rand({batch, d}, options.dtype(torch::kFloat32)).topk(m, 1));
  return mask.scatter_(1, chosen, true);
}

}  // namespace

Corrupted corrupt(const torch::Tensor& x, const CorruptionOptions& o) {
  torch::NoGradGuard no_grad;
  switch (o.kind) {
    case CorruptionKind::none:
      return {x, torch::zeros_like(x, torch::kBool)};
    case CorruptionKind::gaussian:
      return {x + o.level * torch::randn_like(x), torch::ones_like(x, torch::kBool)};
    case CorruptionKind::masking:
    case CorruptionKind::salt_pepper: {
      const int64_t batch = x.size(0);
      const int64_t d = x.numel() / std::max<int64_t>(batch, 1);
      const auto m = static_cast<int64_t>(std::llround(o.level * static_cast<double>(d)));
      const torch::Tensor mask = choose_per_example(batch, d, m, x.options()).view(x.sizes());
      if (o.kind == CorruptionKind::masking) return {x.masked_fill(mask, 0.0), mask};
      const torch::Tensor salt = torch::rand_like(x) < 0.5;
      const torch::Tensor values = torch::where(salt, torch::full_like(x, o.max), torch::full_like(x, o.min));
      return {torch::where(mask, values, x), mask};
    }
  }
  TORCH_CHECK(false, "unreachable corruption");
}

}  // namespace torchae
