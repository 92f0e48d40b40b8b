#include "torchae/viz/pictures.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/eval/metrics.h"
#include "torchae/train/run.h"
#include "src/data/cv_image.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <numeric>

namespace torchae {

namespace {

// Matplotlib's "tab10" colours (RGB), which stay apart for the usual kinds of colour blindness.
const std::vector<cv::Scalar>& palette() {
  static const std::vector<cv::Scalar> colours{
      {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return colours;
}

}  // namespace

torch::Tensor image_grid(const torch::Tensor& images, int64_t columns, bool normalise_each) {
  TORCH_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3), "image_grid: expected [N, 1|3, H, W]");
  torch::Tensor x = images.detach().cpu().to(torch::kFloat32);
  if (normalise_each) {
    const torch::Tensor flat = x.flatten(1);
    const torch::Tensor lo = std::get<0>(flat.min(1)).view({-1, 1, 1, 1});
    const torch::Tensor hi = std::get<0>(flat.max(1)).view({-1, 1, 1, 1});
    x = (x - lo) / (hi - lo).clamp_min(1e-12);
  }
  x = x.clamp(0, 1).mul(255).round().to(torch::kUInt8);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t cols = std::max<int64_t>(1, std::min(columns, n));
  const int64_t rows = (n + cols - 1) / cols;
  torch::Tensor grid = torch::full({rows * (h + 1) + 1, cols * (w + 1) + 1, c}, 64, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, col = i % cols;
    grid.narrow(0, 1 + r * (h + 1), h).narrow(1, 1 + col * (w + 1), w).copy_(x[i].permute({1, 2, 0}));
  }
  return grid;
}

void write_png(const std::filesystem::path& path, const torch::Tensor& grid) {
  const torch::Tensor g = grid.contiguous();
  const int type = g.size(2) == 3 ? CV_8UC3 : CV_8UC1;
  cv::Mat image(static_cast<int>(g.size(0)), static_cast<int>(g.size(1)), type, g.data_ptr<uint8_t>());
  if (g.size(2) == 3) {
    cv::Mat bgr;
    cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
    image = bgr;
  }
  write_png_mat(path, image);
}

torch::Tensor first_layer_filters(Autoencoder& model, const std::vector<int64_t>& input_shape) {
  for (const auto& m : model.module().modules(/*include_self=*/false)) {
    if (const auto* conv = m->as<torch::nn::Conv2d>()) {
      // A conv backbone's first kernels, [channels, C, k, k]: images of C channels themselves.
      const torch::Tensor w = conv->weight.detach().cpu();
      return w / w.flatten(1).norm(2, {1}, true).clamp_min(1e-12).view({-1, 1, 1, 1});
    }
    if (const auto* linear = m->as<torch::nn::Linear>()) {
      const torch::Tensor w = linear->weight.detach().cpu();
      std::vector<int64_t> shape{w.size(0)};
      shape.insert(shape.end(), input_shape.begin(), input_shape.end());
      TORCH_CHECK(w.size(1) == std::accumulate(input_shape.begin(), input_shape.end(), int64_t{1}, std::multiplies<>()),
                  "first_layer_filters: the first affine layer does not take the input");
      return (w / w.norm(2, {1}, true).clamp_min(1e-12)).view(shape);
    }
  }
  throw Error("this model has no affine layer to draw filters from");
}

std::vector<torch::Tensor> reconstruction_rows(Autoencoder& model, const torch::Tensor& inputs) {
  std::vector<torch::Tensor> rows{inputs};
  torch::Tensor seen = inputs;
  {
    model.module().train();
    const Output out = model.forward(inputs);
    if (out.input.defined() && !torch::equal(out.input.detach(), inputs)) seen = out.input.detach();
  }
  model.module().eval();
  torch::NoGradGuard no_grad;
  if (!seen.is_same(inputs)) rows.push_back(seen);
  rows.push_back(model.forward(seen).reconstruction);
  return rows;
}

torch::Tensor maximize_unit(Autoencoder& model, int64_t unit, const std::vector<int64_t>& input_shape, double norm,
                            int64_t steps, double lr) {
  TORCH_CHECK(unit >= 0 && unit < model.code_size(), "maximize_unit: unit out of range");
  model.module().eval();
  std::vector<int64_t> shape{1};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  torch::Tensor x = torch::randn(shape);
  x = x * (norm / x.norm().item<double>());
  // Projected ascent with normalised gradient steps, decaying linearly to zero: the step
  // length does not depend on the gradient's scale, and (unlike Adam's per-coordinate
  // scaling) the step follows the gradient's direction, so for one affine unit x converges
  // to the filter direction.
  for (int64_t step = 0; step < steps; ++step) {
    const torch::Tensor leaf = x.detach().requires_grad_(true);
    const torch::Tensor objective = model.encode_preactivation(leaf).select(1, unit).sum();
    const torch::Tensor grad = torch::autograd::grad({objective}, {leaf})[0];
    const double grad_norm = grad.norm().item<double>();
    if (grad_norm == 0.0) break;  // a dead unit: nothing to ascend
    const double length = lr * norm * (1.0 - static_cast<double>(step) / static_cast<double>(steps));
    x = leaf.detach() + grad * (length / grad_norm);
    x = x * (norm / x.norm().item<double>());
  }
  return x;
}

torch::Tensor interpolation_rows(Autoencoder& model, const torch::Tensor& a, const torch::Tensor& b, int64_t steps) {
  TORCH_CHECK(a.sizes() == b.sizes() && steps >= 2, "interpolation_rows: pairs of equal shape, steps >= 2");
  model.module().eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor from = model.encode(a), to = model.encode(b);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < a.size(0); ++i) {
    const torch::Tensor t = torch::linspace(0, 1, steps).unsqueeze(1);
    const torch::Tensor line = (1 - t) * from[i].unsqueeze(0) + t * to[i].unsqueeze(0);
    rows.push_back(a[i].unsqueeze(0));
    rows.push_back(model.decode(line));
    rows.push_back(b[i].unsqueeze(0));
  }
  return torch::cat(rows);
}

torch::Tensor codes_to_plane(const torch::Tensor& codes) {
  const torch::Tensor c = codes.detach().cpu().to(torch::kFloat32);
  if (c.size(1) == 2) return c;
  if (c.size(1) == 1) return torch::cat({c, torch::zeros_like(c)}, 1);
  const PCA pca = PCA::fit(c, 2);
  return (c.to(torch::kDouble) - pca.mean).mm(pca.components).to(torch::kFloat32);
}

torch::Tensor scatter_plot(const torch::Tensor& points, const torch::Tensor& labels,
                           const std::vector<std::string>& names, int64_t size) {
  // Matplotlib's "tab10" colours (RGB), which stay apart for the usual kinds of colour blindness.
  const std::vector<cv::Scalar>& colours = palette();
  const int side = static_cast<int>(size), legend = 200, margin = 20;
  cv::Mat image(side, side + legend, CV_8UC3, cv::Scalar(255, 255, 255));
  const torch::Tensor p = points.detach().cpu().to(torch::kFloat32);
  const torch::Tensor lo = std::get<0>(p.min(0)), hi = std::get<0>(p.max(0));
  const torch::Tensor scaled = (p - lo) / (hi - lo).clamp_min(1e-12) * static_cast<float>(side - 2 * margin) + margin;
  const torch::Tensor label = labels.defined() ? labels.cpu().to(torch::kLong) : torch::zeros({p.size(0)}, torch::kLong);
  const auto xy = scaled.accessor<float, 2>();
  const auto l = label.accessor<int64_t, 1>();
  for (int64_t i = 0; i < p.size(0); ++i) {
    const cv::Point centre(static_cast<int>(xy[i][0]), side - static_cast<int>(xy[i][1]));
    cv::circle(image, centre, 2, colours[static_cast<std::size_t>(l[i]) % colours.size()], cv::FILLED, cv::LINE_AA);
  }
  const int64_t classes = label.numel() > 0 ? label.max().item<int64_t>() + 1 : 0;
  for (int64_t k = 0; k < classes; ++k) {
    const int y = margin + 24 * static_cast<int>(k);
    cv::circle(image, {side + 16, y}, 6, colours[static_cast<std::size_t>(k) % colours.size()], cv::FILLED, cv::LINE_AA);
    const std::string name = static_cast<std::size_t>(k) < names.size() ? names[static_cast<std::size_t>(k)] : std::to_string(k);
    cv::putText(image, name, {side + 30, y + 5}, cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  // The image was drawn in RGB order; the tensor is returned as RGB too.
  return torch::from_blob(image.data, {image.rows, image.cols, 3}, torch::kUInt8).clone();
}

std::vector<int64_t> chain_steps(int64_t most) {
  std::vector<int64_t> steps{0};
  for (int64_t decade = 1; decade < most; decade *= 10) {
    for (int64_t m : {1, 2, 5}) {
      if (m * decade < most) steps.push_back(m * decade);
    }
  }
  steps.push_back(most);
  return steps;
}

torch::Tensor gibbs_chain_grid(GibbsSampler& sampler, const torch::Tensor& starts, const std::vector<int64_t>& steps) {
  TORCH_CHECK(starts.dim() == 4 && !steps.empty(), "gibbs_chain_grid: expected starts [R, C, H, W] and steps");
  torch::NoGradGuard no_grad;
  const int64_t rows = starts.size(0), columns = static_cast<int64_t>(steps.size());
  std::vector<torch::Tensor> cells(static_cast<std::size_t>(rows * columns));
  for (int64_t c = 0; c < columns; ++c) {
    const torch::Tensor states = sampler.gibbs(starts, steps[static_cast<std::size_t>(c)]).view(starts.sizes());
    for (int64_t r = 0; r < rows; ++r) cells[static_cast<std::size_t>(r * columns + c)] = states[r];
  }
  const torch::Tensor shown = enlarged(torch::stack(cells));
  const torch::Tensor grid = image_grid(shown, columns, /*normalise_each=*/false);
  std::vector<std::string> captions;
  for (const int64_t s : steps) captions.push_back(std::to_string(s));
  return caption_columns(grid, shown.size(3), captions);
}

torch::Tensor caption_columns(const torch::Tensor& grid, int64_t width, const std::vector<std::string>& texts) {
  TORCH_CHECK(grid.dim() == 3 && grid.scalar_type() == torch::kUInt8, "caption_columns: expected a grid uint8 [H, W, C]");
  const int64_t strip = 14;
  cv::Mat header(static_cast<int>(strip), static_cast<int>(grid.size(1)), CV_8UC(static_cast<int>(grid.size(2))),
                 cv::Scalar::all(255));
  for (std::size_t c = 0; c < texts.size(); ++c) {
    int baseline = 0;
    const double scale = width >= 24 ? 0.7 : 0.5;
    const cv::Size size = cv::getTextSize(texts[c], cv::FONT_HERSHEY_PLAIN, scale, 1, &baseline);
    const int x = static_cast<int>(1 + static_cast<int64_t>(c) * (width + 1) + (width - size.width) / 2);
    cv::putText(header, texts[c], cv::Point(std::max(0, x), static_cast<int>(strip) - 3), cv::FONT_HERSHEY_PLAIN,
                scale, cv::Scalar::all(0), 1, cv::LINE_AA);
  }
  const torch::Tensor top = torch::from_blob(header.data, {strip, grid.size(1), grid.size(2)}, torch::kUInt8).clone();
  return torch::cat({top, grid.cpu()});
}

namespace {

// Ticks at 1, 2 or 5 times a power of ten, about `target` of them, and the range widened to them.
std::vector<double> nice_ticks(double& lo, double& hi, int target = 5, double least_step = 0.0) {
  const double raw = std::max((hi - lo) / target, least_step);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw * 0.999) {
      step = m * power;
      break;
    }
  }
  lo = std::floor(lo / step + 1e-9) * step;
  hi = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (double t = lo; t <= hi + step * 1e-6; t += step) ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

// Where a plot's data goes: the axes' ranges (y in log10 units on a log axis) and their ticks,
// shared by the PNG and the SVG drawings.
struct PlotLayout {
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  std::vector<double> x_ticks, y_ticks;  // y_ticks in axis units (log10 on a log axis)
  bool log_y = false;
  int left = 78, right = 20, top = 52, bottom = 50, width = 0, height = 0, legend = 220;

  double y_of(double v) const { return log_y ? std::log10(v) : v; }
  bool drawn(double x, double y) const { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); }
  double px(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * (width - left - right); }
  double py(double y) const { return top + (height - top - bottom) * (1.0 - (y_of(y) - y_lo) / (y_hi - y_lo)); }
  std::string y_tick_text(double t) const {
    return log_y ? fmt::format("{:g}", std::pow(10.0, t)) : fmt::format("{:.3g}", t);
  }
};

PlotLayout layout_of(const Plot& plot, int64_t size) {
  PlotLayout l;
  l.log_y = plot.log_y;
  l.width = static_cast<int>(size);
  l.height = static_cast<int>(size);
  bool any = false;
  double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 0;
  for (const auto& s : plot.series) {
    TORCH_CHECK(s.x.size() == s.y.size(), "plot: series \"", s.name, "\" has ", s.x.size(), " x and ", s.y.size(), " y");
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!l.drawn(s.x[i], s.y[i])) continue;
      const double y = l.y_of(s.y[i]);
      x_lo = any ? std::min(x_lo, s.x[i]) : s.x[i];
      x_hi = any ? std::max(x_hi, s.x[i]) : s.x[i];
      y_lo = any ? std::min(y_lo, y) : y;
      y_hi = any ? std::max(y_hi, y) : y;
      any = true;
    }
  }
  if (plot.unit_range && any && x_lo >= 0 && x_hi <= 1) x_lo = 0, x_hi = 1;
  if (plot.unit_range && any && !l.log_y && y_lo >= 0 && y_hi <= 1) y_lo = 0, y_hi = 1;
  if (!any || x_hi <= x_lo) x_hi = x_lo + 1;
  if (!any || y_hi <= y_lo) y_hi = y_lo + (l.log_y ? 1 : std::max(1e-12, std::abs(y_lo) * 0.1 + 1e-12));
  // Whole x values (epochs) get whole ticks.
  bool whole = true;
  for (const auto& s : plot.series) {
    for (const double x : s.x) whole = whole && (!std::isfinite(x) || x == std::round(x));
  }
  l.x_ticks = nice_ticks(x_lo, x_hi, 5, whole ? 1.0 : 0.0);
  if (l.log_y) {
    y_lo = std::floor(y_lo);
    y_hi = std::ceil(y_hi);
    if (y_hi <= y_lo) y_hi = y_lo + 1;
    // Whole decades; with few of them, 2 and 5 times each as well.
    for (double t = y_lo; t <= y_hi; t += 1) {
      l.y_ticks.push_back(t);
      if (y_hi - y_lo <= 2 && t < y_hi) {
        for (const double m : {2.0, 5.0}) l.y_ticks.push_back(t + std::log10(m));
      }
    }
  } else {
    l.y_ticks = nice_ticks(y_lo, y_hi);
  }
  l.x_lo = x_lo, l.x_hi = x_hi, l.y_lo = y_lo, l.y_hi = y_hi;
  return l;
}

// A polyline of `points`, dashed when asked: 8 pixels drawn, 6 left out.
void draw_line(cv::Mat& image, const std::vector<cv::Point2d>& points, const cv::Scalar& colour, int thickness,
               bool dashed) {
  auto at = [](const cv::Point2d& p) { return cv::Point(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y))); };
  double phase = 0.0;
  for (std::size_t i = 1; i < points.size(); ++i) {
    if (!dashed) {
      cv::line(image, at(points[i - 1]), at(points[i]), colour, thickness, cv::LINE_AA);
      continue;
    }
    const cv::Point2d d = points[i] - points[i - 1];
    const double length = std::hypot(d.x, d.y);
    for (double t = 0; t < length;) {
      const double cycle = std::fmod(phase + t, 14.0);
      const double run = cycle < 8.0 ? 8.0 - cycle : 14.0 - cycle;
      const double end = std::min(length, t + run);
      if (cycle < 8.0) cv::line(image, at(points[i - 1] + d * (t / length)), at(points[i - 1] + d * (end / length)), colour, thickness, cv::LINE_AA);
      t = end;
    }
    phase = std::fmod(phase + length, 14.0);
  }
}

cv::Scalar colour_of(const PlotSeries& s, std::size_t k) {
  const auto& colours = palette();
  return colours[static_cast<std::size_t>(s.colour >= 0 ? s.colour : static_cast<int>(k)) % colours.size()];
}

}  // namespace

std::string markup_escaped(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

torch::Tensor render_plot(const Plot& plot, int64_t size) {
  const PlotLayout l = layout_of(plot, size);
  cv::Mat image(l.height, l.width + l.legend, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Scalar black(0, 0, 0), grey(215, 215, 215), dark(110, 110, 110);
  const int x0 = l.left, x1 = l.width - l.right, y0 = l.top, y1 = l.height - l.bottom;
  auto ipx = [&](double x) { return static_cast<int>(std::lround(l.px(x))); };
  for (const double t : l.x_ticks) {
    cv::line(image, {ipx(t), y0}, {ipx(t), y1}, grey, 1);
    cv::line(image, {ipx(t), y1}, {ipx(t), y1 + 5}, black, 1);
    const std::string text = fmt::format("{:.3g}", t);
    int baseline = 0;
    const cv::Size sz = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline);
    cv::putText(image, text, {ipx(t) - sz.width / 2, y1 + 20}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1, cv::LINE_AA);
  }
  for (const double t : l.y_ticks) {
    const double v = l.log_y ? std::pow(10.0, t) : t;
    const int y = static_cast<int>(std::lround(l.py(v)));
    cv::line(image, {x0, y}, {x1, y}, grey, 1);
    cv::line(image, {x0 - 5, y}, {x0, y}, black, 1);
    const std::string text = l.y_tick_text(t);
    int baseline = 0;
    const cv::Size sz = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline);
    cv::putText(image, text, {x0 - 8 - sz.width, y + 5}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1, cv::LINE_AA);
  }
  cv::rectangle(image, {x0, y0}, {x1, y1}, black, 1);
  for (std::size_t m = 0; m < plot.markers.size(); ++m) {
    const int x = ipx(plot.markers[m].x);
    draw_line(image, {cv::Point2d(x, y0), cv::Point2d(x, y1)}, dark, 1, true);
    cv::putText(image, plot.markers[m].name, {x + 4, y0 + 14 + 14 * static_cast<int>(m % 2)}, cv::FONT_HERSHEY_SIMPLEX,
                0.4, dark, 1, cv::LINE_AA);
  }
  int baseline = 0;
  const cv::Size x_size = cv::getTextSize(plot.x_label, cv::FONT_HERSHEY_SIMPLEX, 0.55, 1, &baseline);
  cv::putText(image, plot.x_label, {(x0 + x1 - x_size.width) / 2, l.height - 10}, cv::FONT_HERSHEY_SIMPLEX, 0.55, black,
              1, cv::LINE_AA);
  cv::putText(image, plot.y_label + (l.log_y ? " (log scale)" : ""), {8, y0 - 10}, cv::FONT_HERSHEY_SIMPLEX, 0.5, black,
              1, cv::LINE_AA);
  cv::putText(image, plot.title, {8, 22}, cv::FONT_HERSHEY_SIMPLEX, 0.6, black, 1, cv::LINE_AA);
  for (std::size_t k = 0; k < plot.series.size(); ++k) {
    const PlotSeries& s = plot.series[k];
    const cv::Scalar colour = colour_of(s, k);
    std::vector<cv::Point2d> points;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (l.drawn(s.x[i], s.y[i])) points.emplace_back(l.px(s.x[i]), l.py(s.y[i]));
    }
    draw_line(image, points, colour, 2, s.dashed);
    if (points.size() <= 40) {
      for (const auto& p : points) cv::circle(image, {static_cast<int>(p.x), static_cast<int>(p.y)}, 3, colour, cv::FILLED, cv::LINE_AA);
    }
    const int y = l.top + 10 + 22 * static_cast<int>(k);
    draw_line(image, {cv::Point2d(l.width + 10, y), cv::Point2d(l.width + 40, y)}, colour, 3, s.dashed);
    cv::putText(image, s.name, {l.width + 48, y + 5}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1, cv::LINE_AA);
  }
  return torch::from_blob(image.data, {image.rows, image.cols, 3}, torch::kUInt8).clone();
}

std::string plot_svg(const Plot& plot, int64_t size) {
  const PlotLayout l = layout_of(plot, size);
  const int x0 = l.left, x1 = l.width - l.right, y0 = l.top, y1 = l.height - l.bottom;
  auto rgb = [](const cv::Scalar& c) { return fmt::format("rgb({},{},{})", c[0], c[1], c[2]); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"100%\" "
      "style=\"max-width:{}px;font-family:sans-serif\" role=\"img\" aria-label=\"{}\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      l.width + l.legend, l.height, l.width + l.legend, markup_escaped(plot.title));
  for (const double t : l.x_ticks) {
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" font-size=\"12\" text-anchor=\"middle\">{4:.3g}</text>\n",
                       l.px(t), y0, y1, y1 + 18, t);
  }
  for (const double t : l.y_ticks) {
    const double y = l.py(l.log_y ? std::pow(10.0, t) : t);
    svg += fmt::format("<line x1=\"{0}\" y1=\"{2:.1f}\" x2=\"{1}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" font-size=\"12\" text-anchor=\"end\">{5}</text>\n",
                       x0, x1, y, x0 - 6, y + 4, markup_escaped(l.y_tick_text(t)));
  }
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", x0, y0,
                     x1 - x0, y1 - y0);
  for (std::size_t m = 0; m < plot.markers.size(); ++m) {
    const double x = l.px(plot.markers[m].x);
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#666\" stroke-dasharray=\"6 4\"/>"
                       "<text x=\"{3:.1f}\" y=\"{4}\" font-size=\"11\" fill=\"#444\">{5}</text>\n",
                       x, y0, y1, x + 4, y0 + 14 + 14 * static_cast<int>(m % 2), markup_escaped(plot.markers[m].name));
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n", (x0 + x1) / 2,
                     l.height - 10, markup_escaped(plot.x_label));
  svg += fmt::format("<text x=\"8\" y=\"{}\" font-size=\"13\">{}</text>\n", y0 - 10,
                     markup_escaped(plot.y_label + (l.log_y ? " (log scale)" : "")));
  svg += fmt::format("<text x=\"8\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n", markup_escaped(plot.title));
  for (std::size_t k = 0; k < plot.series.size(); ++k) {
    const PlotSeries& s = plot.series[k];
    const std::string colour = rgb(colour_of(s, k));
    const std::string dash = s.dashed ? " stroke-dasharray=\"8 6\"" : "";
    std::string points;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (l.drawn(s.x[i], s.y[i])) points += fmt::format("{:.1f},{:.1f} ", l.px(s.x[i]), l.py(s.y[i]));
    }
    svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", points, colour,
                       dash);
    const int y = l.top + 10 + 22 * static_cast<int>(k);
    svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"{}/>"
                       "<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>\n",
                       l.width + 10, y, l.width + 40, y, colour, dash, l.width + 48, y + 4, markup_escaped(s.name));
  }
  return svg + "</svg>\n";
}

torch::Tensor line_plot(const std::vector<PlotSeries>& series, const std::string& x_label, const std::string& y_label,
                        const std::string& title, int64_t size) {
  Plot plot{series, title, x_label, y_label, false, {}};
  plot.unit_range = true;
  return render_plot(plot, size);
}

Plot training_curves(const std::filesystem::path& run_dir) {
  const std::filesystem::path file = run_dir / kMetricsFile;
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    throw Error(fmt::format("{}: no {} (the run has not completed an epoch)", run_dir.string(), kMetricsFile));
  }
  Plot plot;
  plot.x_label = "epoch (of the whole run)";
  plot.y_label = "loss";
  // A denoiser validated on corrupted inputs (train.validate_corrupted) says so: its validation
  // figures are the task's, not the clean inputs'. A stack's fine-tuning is validated on clean ones.
  std::string corrupted;
  if (std::filesystem::exists(run_dir / kConfigFile, ec)) {
    const Json config = load_json_file(run_dir / kConfigFile);
    if (config.value(Json::json_pointer("/train/validate_corrupted"), false)) {
      corrupted = config.value(Json::json_pointer("/model/family"), std::string()) == "stacked"
                      ? " (corrupted while pretraining)"
                      : " (corrupted)";
    }
  }
  // One colour per quantity; training solid, validation dashed in the same colour.
  std::vector<std::string> quantities{"loss"};
  std::map<std::string, std::pair<PlotSeries, PlotSeries>> lines;
  auto add = [&](const std::string& name, double x, double train, double val) {
    if (lines.count(name) == 0) {
      if (std::find(quantities.begin(), quantities.end(), name) == quantities.end()) quantities.push_back(name);
      const int colour = static_cast<int>(std::find(quantities.begin(), quantities.end(), name) - quantities.begin());
      lines[name] = {PlotSeries{"train " + name, {}, {}, false, colour}, PlotSeries{"val " + name + corrupted, {}, {}, true, colour}};
    }
    auto& [t, v] = lines[name];
    t.x.push_back(x), t.y.push_back(train);
    v.x.push_back(x), v.y.push_back(val);
  };
  int64_t x = 0;
  std::string stage;
  std::istringstream metrics(read_text(file));
  for (std::string text; std::getline(metrics, text);) {
    if (text.empty()) continue;
    const Json line = parse_json(text, file.string());
    ++x;
    std::string name = line.value("phase", "");
    if (line.contains("layer")) name += fmt::format(" layer {}", line["layer"].get<int64_t>());
    if (!name.empty() && name != stage) plot.markers.push_back({static_cast<double>(x) - 0.5, name});
    stage = name;
    add("loss", static_cast<double>(x), line.value("train_loss", std::nan("")), line.value("val_loss", std::nan("")));
    const Json train = line.value("train", Json::object()), val = line.value("val", Json::object());
    for (const auto& [term, value] : train.items()) {
      // A loss of one term is the loss itself: no second line for it.
      if (train.size() < 2 || !value.is_number()) continue;
      add(term, static_cast<double>(x), value.get<double>(),
          val.contains(term) && val[term].is_number() ? val[term].get<double>() : std::nan(""));
    }
  }
  if (x == 0) throw Error(fmt::format("{}: no epochs recorded yet", file.string()));
  double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
  bool positive = true;
  for (const auto& q : quantities) {
    for (const PlotSeries* s : {&lines[q].first, &lines[q].second}) {
      for (const double v : s->y) {
        if (!std::isfinite(v)) continue;
        positive = positive && v > 0;
        lo = std::min(lo, v), hi = std::max(hi, v);
      }
    }
    plot.series.push_back(lines[q].first);
    plot.series.push_back(lines[q].second);
  }
  // A decade or more between the smallest and largest value (a VAE's KL beside its reconstruction
  // term, a loss falling by 10x) reads on a log axis.
  plot.log_y = positive && hi > 0 && lo > 0 && hi / lo >= 10.0;
  plot.title = fmt::format("training curves: {}", run_dir.filename().empty() ? run_dir.parent_path().filename().string()
                                                                              : run_dir.filename().string());
  return plot;
}

torch::Tensor retrieval_curves(const std::filesystem::path& run_dir) {
  const std::filesystem::path file = run_dir / kEvalFile;
  std::error_code ec;
  const Json metrics = std::filesystem::exists(file, ec) ? load_json_file(file) : Json();
  const Json* retrieval = metrics.is_object() ? find_dotted(metrics, "retrieval.methods") : nullptr;
  if (!retrieval || !retrieval->is_object()) {
    throw Error(fmt::format("viz: {} has no retrieval metrics; run torchae eval --run {} --retrieval first",
                            file.string(), run_dir.string()));
  }
  std::vector<PlotSeries> series;
  for (const auto& [name, m] : retrieval->items()) {
    const Json* curve = find_dotted(m, "pr_curve");
    if (!curve) continue;
    PlotSeries s{name, {}, {}};
    for (std::size_t i = 0; i < curve->at("recall").size(); ++i) {
      const Json& p = curve->at("precision")[i];
      s.x.push_back(curve->at("recall")[i].get<double>());
      s.y.push_back(p.is_number() ? p.get<double>() : std::numeric_limits<double>::quiet_NaN());
    }
    series.push_back(std::move(s));
  }
  const int64_t bits = metrics["retrieval"].value("bits", int64_t{0});
  return line_plot(series, "recall", "precision",
                   fmt::format("Hamming ball retrieval, radius 0..{}, {} bits", bits, bits));
}

torch::Tensor enlarged(const torch::Tensor& images, int64_t at_least) {
  const int64_t side = std::max(images.size(2), images.size(3));
  const int64_t factor = std::max<int64_t>(1, (at_least + side - 1) / side);
  return factor == 1 ? images : images.repeat_interleave(factor, 2).repeat_interleave(factor, 3);
}

namespace {

int text_width(const std::string& text, double scale) {
  int baseline = 0;
  return cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline).width;
}

cv::Mat rgb_mat(const torch::Tensor& grid) {
  torch::Tensor g = grid.contiguous();
  if (g.size(2) == 1) g = g.expand({g.size(0), g.size(1), 3}).contiguous();
  return cv::Mat(static_cast<int>(g.size(0)), static_cast<int>(g.size(1)), CV_8UC3, g.data_ptr<uint8_t>()).clone();
}

torch::Tensor tensor_of(const cv::Mat& image) {
  return torch::from_blob(image.data, {image.rows, image.cols, 3}, torch::kUInt8).clone();
}

}  // namespace

torch::Tensor titled(const torch::Tensor& grid, const std::string& title, const std::vector<std::string>& notes,
                     const std::vector<std::string>& row_labels, int64_t row_pitch, int64_t first_row) {
  TORCH_CHECK(grid.dim() == 3 && grid.scalar_type() == torch::kUInt8, "titled: expected a grid uint8 [H, W, C]");
  const cv::Mat body = rgb_mat(grid.cpu());
  const double label_scale = 0.5, title_scale = 0.6, note_scale = 0.45;
  int margin = 0;
  for (const auto& label : row_labels) margin = std::max(margin, text_width(label, label_scale) + 16);
  const int band = 32 + 20 * static_cast<int>(notes.size());
  int width = margin + body.cols + 8;
  width = std::max(width, text_width(title, title_scale) + 16);
  for (const auto& note : notes) width = std::max(width, text_width(note, note_scale) + 16);
  cv::Mat image(band + body.rows + 8, width, CV_8UC3, cv::Scalar::all(255));
  body.copyTo(image(cv::Rect(margin, band, body.cols, body.rows)));
  const cv::Scalar black(0, 0, 0), dark(70, 70, 70);
  cv::putText(image, title, {8, 22}, cv::FONT_HERSHEY_SIMPLEX, title_scale, black, 1, cv::LINE_AA);
  for (std::size_t i = 0; i < notes.size(); ++i) {
    cv::putText(image, notes[i], {8, 22 + 20 * static_cast<int>(i + 1)}, cv::FONT_HERSHEY_SIMPLEX, note_scale, dark, 1,
                cv::LINE_AA);
  }
  for (std::size_t r = 0; r < row_labels.size(); ++r) {
    const int y = band + static_cast<int>(first_row + 1 + static_cast<int64_t>(r) * row_pitch + row_pitch / 2) + 5;
    cv::putText(image, row_labels[r], {margin - 8 - text_width(row_labels[r], label_scale), y}, cv::FONT_HERSHEY_SIMPLEX,
                label_scale, black, 1, cv::LINE_AA);
  }
  return tensor_of(image);
}

torch::Tensor signed_grid(const torch::Tensor& values, int64_t columns) {
  TORCH_CHECK(values.dim() == 4 && values.size(1) == 1, "signed_grid: expected [N, 1, H, W]");
  const torch::Tensor v = values.detach().cpu().to(torch::kFloat32);
  const double m = std::max(v.abs().max().item<double>(), 1e-12);
  // A diverging map (Moreland's cool-warm ends): white at 0, blue at -m, red at +m.
  const torch::Tensor t = (v / m).clamp(-1, 1);
  const torch::Tensor neg = (-t).clamp_min(0), pos = t.clamp_min(0);
  auto channel = [&](double cold, double warm) { return 1 - neg * (1 - cold) - pos * (1 - warm); };
  const torch::Tensor rgb = torch::cat({channel(59 / 255.0, 180 / 255.0), channel(76 / 255.0, 4 / 255.0),
                                        channel(192 / 255.0, 38 / 255.0)},
                                       1);
  const cv::Mat grid = rgb_mat(image_grid(rgb, columns, /*normalise_each=*/false));
  const int bar = 16, room = 80, pad = 10;
  cv::Mat image(grid.rows, grid.cols + room, CV_8UC3, cv::Scalar::all(255));
  grid.copyTo(image(cv::Rect(0, 0, grid.cols, grid.rows)));
  const int top = pad, bottom = grid.rows - pad, x = grid.cols + 10;
  for (int y = top; y <= bottom; ++y) {
    const double value = 1.0 - 2.0 * (y - top) / std::max(1, bottom - top);  // +1 at the top
    const double n = std::max(0.0, -value), p = std::max(0.0, value);
    const cv::Scalar c(255 * (1 - n * (1 - 59 / 255.0) - p * (1 - 180 / 255.0)),
                       255 * (1 - n * (1 - 76 / 255.0) - p * (1 - 4 / 255.0)),
                       255 * (1 - n * (1 - 192 / 255.0) - p * (1 - 38 / 255.0)));
    cv::line(image, {x, y}, {x + bar, y}, c, 1);
  }
  cv::rectangle(image, {x, top}, {x + bar, bottom}, cv::Scalar::all(0), 1);
  for (const double f : {1.0, 0.5, 0.0, -0.5, -1.0}) {
    const int y = top + static_cast<int>(std::lround((1.0 - f) / 2.0 * (bottom - top)));
    cv::line(image, {x + bar, y}, {x + bar + 4, y}, cv::Scalar::all(0), 1);
    cv::putText(image, f == 0.0 ? std::string("0") : fmt::format("{:+.2g}", f * m), {x + bar + 6, y + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
                cv::Scalar::all(0), 1, cv::LINE_AA);
  }
  return tensor_of(image);
}

int64_t default_viz_count(const std::string& what) {
  static const std::vector<std::pair<std::string, int64_t>> kinds{
      {"filters", 100}, {"recon", 10}, {"maximize", 16}, {"samples", 100}, {"interp", 8}, {"latent", 5000}, {"chains", 10},
      {"pr", 1},        {"curves", 1}};
  std::vector<std::string> names;
  for (const auto& [name, count] : kinds) {
    if (name == what) return count;
    names.push_back(name);
  }
  throw Error(fmt::format("viz: --what {}: expected one of {}", what, fmt::join(names, ", ")));
}

void viz_run(const std::filesystem::path& run_dir, const std::string& what, const std::filesystem::path& out,
             int64_t unit, int64_t count, int64_t gibbs_steps) {
  write_png(out, viz_picture(run_dir, what, unit, count, gibbs_steps, out));
}

torch::Tensor viz_picture(const std::filesystem::path& run_dir, const std::string& what, int64_t unit, int64_t count,
                          int64_t gibbs_steps, const std::filesystem::path& out) {
  default_viz_count(what);  // refuses an unknown kind by name
  if (!out.empty()) check_output_path(out, "--out");
  if (count < 1) throw Error("viz: --count must be at least 1");
  if (what == "pr") return retrieval_curves(run_dir);
  if (what == "curves") return render_plot(training_curves(run_dir));
  Run run = load_run(run_dir, /*with_test=*/true, "cpu");  // drawn on the CPU, wherever it was trained
  Autoencoder& model = *run.model.model;
  const auto& shape = run.data.spec.shape;
  // Pictures of data show it as it was before centring.
  auto uncentre = [&](const torch::Tensor& x) {
    const torch::Tensor scaled = run.data.deviation.defined() ? x * run.data.deviation : x;
    return run.data.mean.defined() ? scaled + run.data.mean : scaled;
  };
  const std::string family = run.config["model"].value("family", "?");
  const std::filesystem::path name = run_dir.filename().empty() ? run_dir.parent_path().filename() : run_dir.filename();
  const std::string model_text = fmt::format("{}, code {} (run {})", family, model.code_size(), name.string());
  if (what == "filters") {
    const torch::Tensor filters = first_layer_filters(model, shape);
    const int64_t n = std::min(count, filters.size(0));
    const torch::Tensor shown = enlarged(filters.narrow(0, 0, n));
    const bool conv = filters.sizes().slice(1) != at::IntArrayRef(shape);
    const std::string which = n < filters.size(0) ? fmt::format("{} of {}", n, filters.size(0))
                                                   : fmt::format("all {}", filters.size(0));
    const std::string what_text =
        conv ? fmt::format("the first layer's kernels ({}, {}x{}), each divided by its norm", which, filters.size(2),
                           filters.size(3))
             : fmt::format("first-layer filters W_i of units 0-{} ({}), each divided by its norm", n - 1, which);
    if (shown.size(1) == 1) {
      return titled(signed_grid(shown, 10), "filters: " + model_text,
                    {what_text, "colour: the weight on one scale (bar), blue negative, white 0, red positive"});
    }
    return titled(image_grid(shown, 10, /*normalise_each=*/true), "filters: " + model_text,
                  {what_text, "colour channels as the input's, each kernel scaled to its own range"});
  }
  if (what == "recon") {
    const torch::Tensor inputs = run.data.test.inputs.narrow(0, 0, std::min(count, run.data.test.size()));
    std::vector<torch::Tensor> rows;
    for (const auto& row : reconstruction_rows(model, inputs)) rows.push_back(enlarged(uncentre(row)));
    std::vector<std::string> labels{"input"};
    if (rows.size() == 3) labels.push_back("corrupted");
    labels.push_back("reconstruction");
    return titled(image_grid(torch::cat(rows), inputs.size(0), /*normalise_each=*/false), "reconstructions: " + model_text,
                  {fmt::format("the first {} test images; eval mode{}", inputs.size(0),
                               rows.size() == 3 ? "; corrupted as in training, and reconstructed from that" : "")},
                  labels, rows[0].size(2) + 1);
  }
  if (what == "samples") {
    auto* generative = dynamic_cast<Generative*>(&model);
    if (generative == nullptr) {
      throw Error(fmt::format("viz: samples need a generative family (vae, wae, rbm, dbm); this run is {}", family));
    }
    model.module().eval();
    torch::NoGradGuard no_grad;
    auto* sampler = dynamic_cast<GibbsSampler*>(&model);
    const bool gibbs = sampler && gibbs_steps > 0;
    const torch::Tensor samples =
        gibbs ? sampler->gibbs(sampler->random_visible(count), gibbs_steps) : generative->sample(count);
    return titled(image_grid(enlarged(uncentre(samples)), 10, /*normalise_each=*/false), "samples: " + model_text,
                  {gibbs ? fmt::format("{} draws: {} steps of block Gibbs sampling from random states, visible means",
                                       count, gibbs_steps)
                         : fmt::format("{} draws from the model's prior, decoded", count)});
  }
  if (what == "chains") {
    auto* sampler = dynamic_cast<GibbsSampler*>(&model);
    if (sampler == nullptr) {
      throw Error(fmt::format("viz: chains need a Boltzmann machine (rbm, dbm); this run is {}", family));
    }
    model.module().eval();
    const int64_t from_data = std::min(count / 2, run.data.test.size());
    const torch::Tensor starts =
        torch::cat({sampler->random_visible(count - from_data), run.data.test.inputs.narrow(0, 0, from_data)});
    const int64_t most = gibbs_steps > 0 ? gibbs_steps : sampler->sample_steps();
    std::vector<std::string> labels(static_cast<std::size_t>(count - from_data), "random");
    labels.resize(static_cast<std::size_t>(count), "test image");
    const torch::Tensor grid = gibbs_chain_grid(*sampler, starts, chain_steps(most));
    const int64_t pitch = enlarged(starts.narrow(0, 0, 1)).size(2) + 1;
    // The rows of chains lie under the strip of step counts.
    return titled(grid, "Gibbs chains: " + model_text,
                  {"a row per chain; above each column, the Gibbs steps taken (visible means)"}, labels, pitch,
                  grid.size(0) - count * pitch - 1);
  }
  if (what == "interp") {
    const int64_t pairs = std::min(count, run.data.test.size() / 2);
    const torch::Tensor a = run.data.test.inputs.narrow(0, 0, pairs);
    const torch::Tensor b = run.data.test.inputs.narrow(0, pairs, pairs);
    const int64_t steps = 10;
    const torch::Tensor cells = enlarged(uncentre(interpolation_rows(model, a, b, steps)));
    std::vector<std::string> captions{"a"};
    for (int64_t i = 0; i < steps; ++i) captions.push_back(fmt::format("t={:.2g}", static_cast<double>(i) / (steps - 1)));
    captions.push_back("b");
    const torch::Tensor grid = caption_columns(image_grid(cells, steps + 2, /*normalise_each=*/false), cells.size(3), captions);
    return titled(grid, "interpolation: " + model_text,
                  {fmt::format("a row per pair of test images (a: 1-{}, b: {}-{}): decoded points of the straight line "
                               "from a's code to b's, eval mode",
                               pairs, pairs + 1, 2 * pairs)});
  }
  if (what == "latent") {
    const int64_t n = std::min(count, run.data.test.size());
    model.module().eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor codes = model.encode(run.data.test.inputs.narrow(0, 0, n)).flatten(1);
    const torch::Tensor labels =
        run.data.test.labels.defined() ? run.data.test.labels.narrow(0, 0, n) : torch::Tensor();
    static const std::vector<std::string> fashion{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    const bool is_fashion = run.data_options.dataset == "fashion-mnist";
    return titled(scatter_plot(codes_to_plane(codes), labels, is_fashion ? fashion : std::vector<std::string>{}),
                  "codes of test images: " + model_text,
                  {fmt::format("{} test images, coloured by label; {}", n, projection_note(codes))});
  }
  if (model.code_size() < 1) {
    throw Error("viz: maximize needs a code of units; this model's code is a feature map (code_size 0)");
  }
  if (unit >= model.code_size()) {
    throw Error(fmt::format("viz: --unit {}: the code has {} units", unit, model.code_size()));
  }
  const double norm = run.data.test.inputs.narrow(0, 0, std::min<int64_t>(1000, run.data.test.size()))
                          .flatten(1).norm(2, {1}).mean().item<double>();
  std::vector<torch::Tensor> optima;
  const int64_t first = unit >= 0 ? unit : 0;
  const int64_t last = unit >= 0 ? unit + 1 : std::min(count, model.code_size());
  for (int64_t u = first; u < last; ++u) optima.push_back(maximize_unit(model, u, shape, norm));
  return titled(image_grid(enlarged(torch::cat(optima)), 8, /*normalise_each=*/true), "maximising inputs: " + model_text,
                {last - first == 1 ? fmt::format("the input of norm {:.3g} that maximises code unit {}", norm, first)
                                   : fmt::format("the inputs of norm {:.3g} that maximise code units {}-{}, in rows of 8",
                                                 norm, first, last - 1),
                 "activation maximisation (Erhan et al. 2009); each image scaled to its own range"});
}

std::string projection_note(const torch::Tensor& codes) {
  const int64_t d = codes.size(1);
  if (d <= 2) return fmt::format("the {}-d codes as they are", d);
  const torch::Tensor c = codes.detach().cpu().to(torch::kDouble);
  const double total = c.var(0, /*unbiased=*/true).sum().item<double>();
  const PCA pca = PCA::fit(c.to(torch::kFloat32), 2);
  const double kept = pca.variances.to(torch::kDouble).sum().item<double>();
  return fmt::format("PCA of the {}-d codes: components 1-2 of {}, {:.1f}% of the variance", d, d,
                     total > 0 ? 100.0 * kept / total : 0.0);
}

}  // namespace torchae
