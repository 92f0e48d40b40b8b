#include "torchae/data/corruption.h"

#include "torchae/data/image_io.h"
#include "torchae/nn/fused.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <mutex>

namespace torchae {

const std::vector<std::string>& corruption_names() {
  static const std::vector<std::string> names{"none", "gaussian", "masking", "salt_pepper", "inpaint", "gray"};
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
  const bool fraction = o.kind != CorruptionKind::gaussian;
  o.level = r.number("level", default_level, fraction ? between(0, 1) : at_least(0));
  o.min = data.min;
  o.max = data.max;
  o.clip = r.boolean("clip", o.clip);
  o.blind = r.boolean("blind", o.blind);
  r.require(!o.blind || o.kind == CorruptionKind::gaussian, "blind", "draws a sigma per example: gaussian only");
  const bool image = data.shape.size() == 3;
  r.require(o.kind != CorruptionKind::inpaint || image, "corruption", "inpaint needs images {C, H, W}");
  r.require(o.kind != CorruptionKind::gray || (image && data.shape[0] == 3), "corruption",
            "gray needs colour images {3, H, W}");
  return o;
}

namespace {

// Exactly m of each row's d components, uniformly at random: on the CPU the first m steps of a
// Fisher-Yates shuffle (choose_exactly), elsewhere the m largest of d uniforms.
torch::Tensor choose_per_example(int64_t batch, int64_t d, int64_t m, const torch::TensorOptions& options) {
  if (options.device().is_cpu()) return choose_exactly(batch, d, m);
  torch::Tensor mask = torch::zeros({batch, d}, options.dtype(torch::kBool));
  if (m == 0) return mask;
  const torch::Tensor chosen = std::get<1>(torch::rand({batch, d}, options.dtype(torch::kFloat32)).topk(m, 1));
  return mask.scatter_(1, chosen, true);
}

}  // namespace

const std::vector<std::string>& mask_kind_names() {
  static const std::vector<std::string> names{"random", "scratches", "blocks", "text"};
  return names;
}

MaskKind parse_mask_kind(const std::string& name) {
  return static_cast<MaskKind>(index_of_name(mask_kind_names(), name, "mask"));
}

torch::Tensor random_mask(int64_t height, int64_t width, MaskKind kind, double fraction) {
  TORCH_CHECK(height >= 1 && width >= 1 && fraction >= 0 && fraction <= 1, "random_mask: bad size or fraction");
  cv::Mat mask = cv::Mat::zeros(static_cast<int>(height), static_cast<int>(width), CV_8U);
  // Shapes are sized for at most a 64-pixel side, whatever the image: a model trained on
  // small patches meets holes of the sizes it learned to fill, and a large image gets more of
  // them rather than larger ones.
  const double side = std::min(64.0, static_cast<double>(std::min(height, width)));
  const auto target = static_cast<int>(std::ceil(fraction * static_cast<double>(height * width)));
  // Uniforms in blocks: one tensor per shape rather than one call per number.
  for (int shapes = 0; cv::countNonZero(mask) < target && shapes < 100000; ++shapes) {
    const torch::Tensor u_tensor = torch::rand({12}, torch::kDouble);
    const double* u = u_tensor.data_ptr<double>();
    auto point = [&](int i) {
      return cv::Point(static_cast<int>(u[i] * static_cast<double>(width)), static_cast<int>(u[i + 1] * static_cast<double>(height)));
    };
    const MaskKind shape = kind == MaskKind::mixed ? static_cast<MaskKind>(1 + std::min(2, static_cast<int>(u[0] * 3))) : kind;
    switch (shape) {
      case MaskKind::scratches: {
        const std::vector<cv::Point> line{point(1), point(3), point(5)};
        const int thickness = 1 + static_cast<int>(u[7] * std::max(1.0, side / 24.0));
        cv::polylines(mask, line, false, cv::Scalar(255), thickness, cv::LINE_8);
        break;
      }
      case MaskKind::blocks: {
        const int w = std::max(1, static_cast<int>((0.1 + 0.15 * u[7]) * side));
        const int h = std::max(1, static_cast<int>((0.1 + 0.15 * u[8]) * side));
        cv::rectangle(mask, cv::Rect(point(1), cv::Size(w, h)), cv::Scalar(255), cv::FILLED);
        break;
      }
      case MaskKind::text:
      case MaskKind::mixed: {
        std::string letters(2 + static_cast<std::size_t>(u[7] * 4), 'A');
        for (std::size_t i = 0; i < letters.size(); ++i) letters[i] = static_cast<char>('A' + static_cast<int>(u[8 + i % 4] * 26) % 26);
        // Hershey glyphs are about 22 pixels tall at scale 1: letters a sixth to a third of the side.
        const double scale = side / 22.0 * (1.0 / 6.0 + u[3] / 6.0);
        const int thickness = std::max(1, static_cast<int>(scale * 1.5));
        cv::putText(mask, letters, point(1), cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255), thickness);
        break;
      }
    }
  }
  torch::Tensor out = torch::empty({height, width}, torch::kUInt8);
  cv::Mat view(static_cast<int>(height), static_cast<int>(width), CV_8U, out.data_ptr<uint8_t>());
  mask.copyTo(view);
  return out.gt(0);
}

namespace {

Corrupted corrupt_unclipped(const torch::Tensor& x, const CorruptionOptions& o) {
  switch (o.kind) {
    case CorruptionKind::none:
      return {x, torch::zeros_like(x, torch::kBool), {}};
    case CorruptionKind::gaussian: {
      torch::Tensor sigma = torch::full({x.size(0)}, o.level, x.options());
      if (o.blind) sigma = o.level * torch::rand({x.size(0)}, x.options());
      std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
      shape[0] = x.size(0);
      return {x + sigma.view(shape) * torch::randn_like(x), torch::ones_like(x, torch::kBool), sigma};
    }
    case CorruptionKind::inpaint: {
      TORCH_CHECK(x.dim() == 4, "inpaint corruption: expected images [B, C, H, W]");
      std::vector<torch::Tensor> masks;
      for (int64_t i = 0; i < x.size(0); ++i) masks.push_back(random_mask(x.size(2), x.size(3), MaskKind::mixed, o.level));
      const torch::Tensor mask = torch::stack(masks).unsqueeze(1).expand_as(x).to(x.device());
      return {x.masked_fill(mask, 0.0), mask, {}};
    }
    case CorruptionKind::gray: {
      TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "gray corruption: expected colour images [B, 3, H, W]");
      return {luma(x).unsqueeze(1).expand_as(x).contiguous(), torch::ones_like(x, torch::kBool), {}};
    }
    case CorruptionKind::masking:
    case CorruptionKind::salt_pepper: {
      const int64_t batch = x.size(0);
      const int64_t d = x.numel() / std::max<int64_t>(batch, 1);
      const auto m = static_cast<int64_t>(std::llround(o.level * static_cast<double>(d)));
      const torch::Tensor mask = choose_per_example(batch, d, m, x.options()).view(x.sizes());
      if (o.kind == CorruptionKind::masking) return {x.masked_fill(mask, 0.0), mask, {}};
      const torch::Tensor salt = uniform_like(x) < 0.5;
      const torch::Tensor values = torch::where(salt, torch::full_like(x, o.max), torch::full_like(x, o.min));
      return {torch::where(mask, values, x), mask, {}};
    }
  }
  TORCH_CHECK(false, "unreachable corruption");
}

}  // namespace

namespace {

// The patches of the noise estimate: side 5 (less on images of 5 pixels or fewer a side), on a
// grid of step `noise_patch_step` that keeps them to about 65,536.
constexpr int64_t kNoisePatch = 5;
constexpr int64_t kNoisePatches = 1 << 16;

int64_t noise_patch_step(int64_t positions) {
  int64_t step = 1;
  while ((step + 1) * (step + 1) * kNoisePatches <= positions) ++step;
  return step;
}

}  // namespace

torch::Tensor estimate_noise_sigma(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(2) >= 2 && images.size(3) >= 2,
              "estimate_noise_sigma: expected images [B, C, H, W] with sides of at least 2, got ", images.sizes());
  torch::NoGradGuard no_grad;
  // At least two patches a side, on the smallest images.
  const int64_t c = images.size(1), p = std::min({kNoisePatch, images.size(2) - 1, images.size(3) - 1}), r = c * p * p;
  const int64_t step = noise_patch_step((images.size(2) - p + 1) * (images.size(3) - p + 1));
  std::vector<torch::Tensor> sigmas;
  for (int64_t b = 0; b < images.size(0); ++b) {
    const torch::Tensor x = images[b];
    // Every patch as a column [C p p, N], in float64 (the patches only: not a copy of the image).
    torch::Tensor patches =
        x.unfold(1, p, step).unfold(2, p, step).permute({0, 3, 4, 1, 2}).reshape({r, -1}).to(torch::kFloat64);
    // Clipping shrinks the noise where it happens: patches holding the image's extreme values are
    // left out, while enough others remain.
    const torch::Tensor inside = ((patches > x.min()) & (patches < x.max())).all(0);
    if (inside.sum().item<int64_t>() >= 8 * r) patches = patches.index({torch::indexing::Slice(), inside});
    patches = patches - patches.mean(1, true);
    const torch::Tensor covariance = patches.mm(patches.t()) / static_cast<double>(patches.size(1) - 1);
    // Descending eigenvalues; the noise's variance is the mean of the smallest ones from the first
    // index where that mean is also their median.
    const torch::Tensor e = torch::linalg::eigvalsh(covariance, "L").flip(0);
    const torch::Tensor i = torch::arange(r, e.options().dtype(torch::kLong)), n = r - i;
    const torch::Tensor tail_mean = e.flip(0).cumsum(0).flip(0) / n;
    const torch::Tensor lower = e.index({i + torch::div(n, 2, "floor")});
    const torch::Tensor upper = e.index({i + torch::div(n - 1, 2, "floor")});
    const torch::Tensor is_median = (lower <= tail_mean) & (tail_mean <= upper);
    sigmas.push_back(tail_mean.index({is_median.to(torch::kInt).argmax()}).clamp_min(0).sqrt());
  }
  return torch::stack(sigmas).to(images.dtype());
}

torch::Tensor noise_level_map(const torch::Tensor& sigma, const torch::Tensor& images) {
  return sigma.view({-1, 1, 1, 1}).expand({images.size(0), 1, images.size(2), images.size(3)});
}

std::vector<std::string> script_estimate_noise_sigma(const std::string& images, const std::string& out) {
  const std::string p = fmt::format("min([{}, {}.size(2) - 1, {}.size(3) - 1])", kNoisePatch, images, images);
  return {
      fmt::format("p = {}", p),
      fmt::format("r = {}.size(1) * p * p", images),
      "step = 1",
      fmt::format("while (step + 1) * (step + 1) * {1} <= ({0}.size(2) - p + 1) * ({0}.size(3) - p + 1):", images,
                  kNoisePatches),
      "    step += 1",
      "sigmas: List[Tensor] = []",
      fmt::format("for b in range({}.size(0)):", images),
      fmt::format("    xb = {}[b]", images),
      "    patches = xb.unfold(1, p, step).unfold(2, p, step).permute([0, 3, 4, 1, 2]).reshape([r, -1]).double()",
      "    inside = ((patches > xb.min()) & (patches < xb.max())).all(0)",
      "    if int(inside.sum()) >= 8 * r:",
      "        patches = patches[:, inside]",
      "    patches = patches - patches.mean(1, True)",
      "    covariance = patches.mm(patches.t()) / float(patches.size(1) - 1)",
      "    e = torch.linalg_eigvalsh(covariance, 'L').flip(0)",
      "    i = torch.arange(r, device=e.device)",
      "    n = r - i",
      "    tail_mean = e.flip(0).cumsum(0).flip(0) / n",
      "    is_median = (e[i + torch.div(n, 2, rounding_mode='floor')] <= tail_mean) & "
      "(tail_mean <= e[i + torch.div(n - 1, 2, rounding_mode='floor')])",
      "    sigmas.append(tail_mean[is_median.int().argmax()].clamp_min(0).sqrt())",
      fmt::format("{} = torch.stack(sigmas).to({}.dtype)", out, images)};
}

Corrupted Corrupted::to(const torch::Device& device) const {
  auto moved = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
  return {moved(input), moved(mask), moved(level)};
}

Corrupted Corrupted::narrow(int64_t start, int64_t length) const {
  auto part = [&](const torch::Tensor& t) { return t.defined() ? t.narrow(0, start, length) : t; };
  return {part(input), part(mask), part(level)};
}

Corrupted corrupt(const torch::Tensor& x, const CorruptionOptions& o) {
  torch::NoGradGuard no_grad;
  Corrupted c = corrupt_unclipped(x, o);
  if (o.clip) c.input = c.input.clamp(o.min, o.max);
  return c;
}

Corrupted corrupt_seeded(const torch::Tensor& x, const CorruptionOptions& o, uint64_t seed) {
  TORCH_CHECK(x.device().is_cpu(), "corrupt_seeded: expected a CPU tensor, got one on ", x.device());
  // The generator locks itself for each draw: its mutex is held only around the state's copies.
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    state = generator.get_state();
    generator.set_current_seed(seed);
  }
  struct Restore {
    at::Generator& generator;
    const at::Tensor& state;
    ~Restore() {
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(state);
    }
  } restore{generator, state};
  return corrupt(x, o);
}

}  // namespace torchae
