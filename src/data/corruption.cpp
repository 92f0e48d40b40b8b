#include "torchae/data/corruption.h"

#include "torchae/data/image_io.h"
#include "torchae/nn/fused.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

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

torch::Tensor estimate_noise_sigma(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(2) >= 2 && images.size(3) >= 2,
              "estimate_noise_sigma: expected images [B, C, H, W] with sides of at least 2, got ", images.sizes());
  torch::NoGradGuard no_grad;
  const torch::Tensor e = images.slice(2, 0, images.size(2) / 2 * 2).slice(3, 0, images.size(3) / 2 * 2);
  auto at = [&](int64_t i, int64_t j) { return e.slice(2, i, e.size(2), 2).slice(3, j, e.size(3), 2); };
  const torch::Tensor d = (at(0, 0) - at(0, 1) - at(1, 0) + at(1, 1)) * 0.5;
  return std::get<0>(torch::median(d.abs().flatten(1), 1)) / 0.6745;
}

torch::Tensor noise_level_map(const torch::Tensor& sigma, const torch::Tensor& images) {
  return sigma.view({-1, 1, 1, 1}).expand({images.size(0), 1, images.size(2), images.size(3)});
}

std::vector<std::string> script_estimate_noise_sigma(const std::string& images, const std::string& out) {
  return {fmt::format("e = {0}[:, :, :{0}.size(2) // 2 * 2, :{0}.size(3) // 2 * 2]", images),
          "d = (e[:, :, 0::2, 0::2] - e[:, :, 0::2, 1::2] - e[:, :, 1::2, 0::2] + e[:, :, 1::2, 1::2]) * 0.5",
          fmt::format("{} = torch.median(d.abs().flatten(1), 1)[0] / 0.6745", out)};
}

Corrupted corrupt(const torch::Tensor& x, const CorruptionOptions& o) {
  torch::NoGradGuard no_grad;
  Corrupted c = corrupt_unclipped(x, o);
  if (o.clip) c.input = c.input.clamp(o.min, o.max);
  return c;
}

}  // namespace torchae
