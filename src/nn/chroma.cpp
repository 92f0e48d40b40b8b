#include "torchae/nn/chroma.h"

#include "torchae/data/image_io.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace torchae {

torch::Tensor chroma(const torch::Tensor& rgb) {
  const torch::Tensor y = luma(rgb);
  return torch::stack({(rgb.select(-3, 2) - y) / 1.772, (rgb.select(-3, 0) - y) / 1.402}, -3);
}

torch::Tensor rgb_from_luma_chroma(const torch::Tensor& y, const torch::Tensor& chroma) {
  const torch::Tensor cb = chroma.narrow(-3, 0, 1), cr = chroma.narrow(-3, 1, 1);
  return torch::cat({y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb}, -3);
}

torch::Tensor annealed_mean(const torch::Tensor& scores, const torch::Tensor& kernel, double temperature) {
  TORCH_CHECK(kernel.dim() == 4 && kernel.size(0) == 2, "annealed mean: expected a kernel [2, Q, 1, 1], got ",
              kernel.sizes());
  TORCH_CHECK(scores.dim() == 4 && scores.size(1) == kernel.size(1), "annealed mean: expected class scores [B, ",
              kernel.size(1), ", h, w], got ", scores.sizes());
  TORCH_CHECK(temperature > 0, "annealed mean: the temperature must be positive, got ", temperature);
  // A 1x1 convolution with the centres as its kernel: the expectation of the centres.
  return torch::conv2d(torch::softmax(scores / temperature, 1), kernel.to(scores.options()));
}

torch::Tensor colours_of_scores(const torch::Tensor& scores, const torch::Tensor& kernel, const torch::Tensor& y,
                                double temperature) {
  torch::Tensor c = annealed_mean(scores, kernel, temperature);
  if (c.size(2) != y.size(2) || c.size(3) != y.size(3)) c = torch::upsample_bilinear2d(c, {y.size(2), y.size(3)}, false);
  return rgb_from_luma_chroma(y, c).clamp(0, 1);
}

std::string script_rgb_from_luma_chroma(const std::string& y, const std::string& chroma) {
  return fmt::format("torch.cat([{0} + 1.402 * {1}[:, 1:2], {0} - 0.344136 * {1}[:, 0:1] - 0.714136 * {1}[:, 1:2], "
                     "{0} + 1.772 * {1}[:, 0:1]], 1)",
                     y, chroma);
}

double colourfulness(const torch::Tensor& rgb) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(0) == 3, "colourfulness: expected an RGB image [3, H, W], got ", rgb.sizes());
  const torch::Tensor x = rgb.to(torch::kFloat64) * 255.0;
  const torch::Tensor rg = x[0] - x[1], yb = 0.5 * (x[0] + x[1]) - x[2];
  const double sigma = std::sqrt(rg.var(/*unbiased=*/false).item<double>() + yb.var(false).item<double>());
  const double mu = std::hypot(rg.mean().item<double>(), yb.mean().item<double>());
  return sigma + 0.3 * mu;
}

ChromaBins::ChromaBins(double step) : step_(step) {
  TORCH_CHECK(step > 0 && step <= 0.5, "chroma bins: the cell side must be in (0, 0.5], got ", step);
  const auto n = side_ = static_cast<int64_t>(std::floor(1.0 / step + 1e-9));
  std::vector<float> centres;
  std::vector<int64_t> cell_of(static_cast<std::size_t>(n * n), -1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      // The grid is centred on gray (0, 0).
      const double cb = (static_cast<double>(i) - static_cast<double>(n - 1) / 2) * step;
      const double cr = (static_cast<double>(j) - static_cast<double>(n - 1) / 2) * step;
      // The luma range over which R, G and B all stay in [0, 1].
      const double g = 0.344136 * cb + 0.714136 * cr;
      const double lo = std::max({0.0, -1.402 * cr, g, -1.772 * cb});
      const double hi = std::min({1.0, 1.0 - 1.402 * cr, 1.0 + g, 1.0 - 1.772 * cb});
      if (lo <= hi) {
        cell_of[static_cast<std::size_t>(i * n + j)] = static_cast<int64_t>(centres.size() / 2);
        centres.insert(centres.end(), {static_cast<float>(cb), static_cast<float>(cr)});
      }
    }
  }
  centres_ = torch::tensor(centres).view({-1, 2});
  cell_of_square_ = torch::tensor(cell_of);
}

ChromaBins::Soft ChromaBins::soft_encode(const torch::Tensor& chroma, int64_t neighbours) const {
  TORCH_CHECK(chroma.dim() == 4 && chroma.size(1) == 2, "chroma bins: expected chroma [B, 2, h, w], got ",
              chroma.sizes());
  TORCH_CHECK(neighbours >= 1 && neighbours <= 25, "chroma bins: 1 to 25 neighbours, got ", neighbours);
  torch::NoGradGuard no_grad;
  const auto opts = chroma.options();
  const double half = static_cast<double>(side_ - 1) / 2;
  // The grid square of each pixel, then the 5x5 squares around it: [B, 25, h, w] each.
  const torch::Tensor grid = torch::round(chroma.to(torch::kFloat64) / step_ + half).clamp(0, side_ - 1).to(torch::kLong);
  const torch::Tensor offsets = torch::arange(-2, 3, grid.options());
  const torch::Tensor i = grid.narrow(1, 0, 1) + offsets.repeat_interleave(5).view({1, 25, 1, 1});
  const torch::Tensor j = grid.narrow(1, 1, 1) + offsets.repeat({5}).view({1, 25, 1, 1});
  const torch::Tensor inside = (i >= 0) & (i < side_) & (j >= 0) & (j < side_);
  const torch::Tensor cells =
      cell_of_square_.to(chroma.device()).index({i.clamp(0, side_ - 1) * side_ + j.clamp(0, side_ - 1)}).masked_fill(~inside, -1);
  const torch::Tensor di = chroma.narrow(1, 0, 1) - (i.to(opts.dtype()) - half) * step_;
  const torch::Tensor dj = chroma.narrow(1, 1, 1) - (j.to(opts.dtype()) - half) * step_;
  const torch::Tensor d2 = (di * di + dj * dj).masked_fill(cells < 0, std::numeric_limits<double>::infinity());
  auto [near, k] = d2.topk(neighbours, 1, /*largest=*/false);
  torch::Tensor chosen = cells.gather(1, k);
  // Every square outside the 5x5 is at least 2 cells from the pixel (1.5 beyond its own
  // square's half). Where the gamut's edge leaves fewer cells than that inside, the neighbours
  // are looked for among all cells instead.
  const double reach = 2.0 * step_;
  const torch::Tensor unsure = near.select(1, neighbours - 1) > reach * reach;
  if (unsure.any().item<bool>()) {
    const torch::Tensor points = chroma.permute({0, 2, 3, 1}).index({unsure});
    const auto [far_near, far_cells] = torch::cdist(points, centres_.to(opts)).pow(2).topk(neighbours, 1, false);
    const torch::Tensor to = unsure.unsqueeze(1).expand_as(chosen);
    near = near.permute({0, 2, 3, 1}).index_put({unsure}, far_near).permute({0, 3, 1, 2});
    chosen = chosen.permute({0, 2, 3, 1}).index_put({unsure}, far_cells).permute({0, 3, 1, 2});
  }
  const double sigma = step_ / 2;
  return {chosen.contiguous(), torch::softmax(near / (-2.0 * sigma * sigma), 1).contiguous()};
}

torch::Tensor ChromaBins::dense(const Soft& soft) const {
  const auto& c = soft.cells;
  return torch::zeros({c.size(0), size(), c.size(2), c.size(3)}, soft.weights.options()).scatter_add_(1, c, soft.weights);
}

torch::Tensor ChromaBins::class_weights(const torch::Tensor& counts, double lambda) const {
  TORCH_CHECK(counts.dim() == 1 && counts.size(0) == size(), "chroma bins: expected counts [", size(), "], got ",
              counts.sizes());
  TORCH_CHECK(lambda >= 0 && lambda <= 1, "chroma bins: the rebalancing mix must be in [0, 1], got ", lambda);
  const torch::Tensor n = counts.to(torch::kFloat64).cpu();
  const double total = n.sum().item<double>();
  if (total <= 0) return torch::ones({size()}, counts.options().dtype(torch::kFloat));
  const torch::Tensor c = centres_.to(torch::kFloat64);
  const double sigma = step_ / 2;
  // Each cell's mass spread over the plane by a Gaussian (columns sum to 1: mass is kept).
  torch::Tensor kernel = torch::exp(torch::cdist(c, c).pow(2) / (-2.0 * sigma * sigma));
  kernel = kernel / kernel.sum(0, true);
  const torch::Tensor p = kernel.mv(n / total);
  torch::Tensor w = 1.0 / ((1.0 - lambda) * p + lambda / static_cast<double>(size()));
  w = w / (p * w).sum();
  return w.to(counts.device(), torch::kFloat);
}

torch::Tensor ChromaBins::annealed_mean(const torch::Tensor& logits, double temperature) const {
  return torchae::annealed_mean(logits, kernel(), temperature);
}

std::vector<std::string> ChromaBins::script_annealed_mean(const std::string& out, const std::string& logits,
                                                          const std::string& kernel, double temperature) const {
  return {fmt::format("{} = torch.conv2d(torch.softmax({} / {:.17g}, 1), {})", out, logits, temperature, kernel)};
}

}  // namespace torchae
