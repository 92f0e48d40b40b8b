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
#include <numeric>

namespace torchae {

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
  static const std::vector<cv::Scalar> palette{
      {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
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
    cv::circle(image, centre, 2, palette[static_cast<std::size_t>(l[i]) % palette.size()], cv::FILLED, cv::LINE_AA);
  }
  const int64_t classes = label.numel() > 0 ? label.max().item<int64_t>() + 1 : 0;
  for (int64_t k = 0; k < classes; ++k) {
    const int y = margin + 24 * static_cast<int>(k);
    cv::circle(image, {side + 16, y}, 6, palette[static_cast<std::size_t>(k) % palette.size()], cv::FILLED, cv::LINE_AA);
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
  const torch::Tensor grid = image_grid(torch::stack(cells), columns, /*normalise_each=*/false);
  std::vector<std::string> captions;
  for (const int64_t s : steps) captions.push_back(std::to_string(s));
  return caption_columns(grid, starts.size(3), captions);
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

torch::Tensor line_plot(const std::vector<PlotSeries>& series, const std::string& x_label, const std::string& y_label,
                        const std::string& title, int64_t size) {
  static const std::vector<cv::Scalar> palette{
      {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 0;
  bool any = false;
  for (const auto& s : series) {
    TORCH_CHECK(s.x.size() == s.y.size(), "line_plot: series \"", s.name, "\" has ", s.x.size(), " x and ", s.y.size(), " y");
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = any ? std::min(x_lo, s.x[i]) : s.x[i];
      x_hi = any ? std::max(x_hi, s.x[i]) : s.x[i];
      y_lo = any ? std::min(y_lo, s.y[i]) : s.y[i];
      y_hi = any ? std::max(y_hi, s.y[i]) : s.y[i];
      any = true;
    }
  }
  // Data within [0, 1] (a precision, a recall) is drawn on [0, 1].
  if (any && x_lo >= 0 && x_hi <= 1) x_lo = 0, x_hi = 1;
  if (any && y_lo >= 0 && y_hi <= 1) y_lo = 0, y_hi = 1;
  if (!any || x_hi <= x_lo) x_hi = x_lo + 1;
  if (!any || y_hi <= y_lo) y_hi = y_lo + 1;
  const int side = static_cast<int>(size), legend = 220, left = 70, bottom = 50, top = 40, right = 20;
  cv::Mat image(side, side + legend, CV_8UC3, cv::Scalar(255, 255, 255));
  const int w = side - left - right, h = side - top - bottom;
  auto px = [&](double x) { return left + static_cast<int>(std::lround((x - x_lo) / (x_hi - x_lo) * w)); };
  auto py = [&](double y) { return top + h - static_cast<int>(std::lround((y - y_lo) / (y_hi - y_lo) * h)); };
  const cv::Scalar black(0, 0, 0), grey(200, 200, 200);
  for (int t = 0; t <= 4; ++t) {
    const double fx = x_lo + (x_hi - x_lo) * t / 4.0, fy = y_lo + (y_hi - y_lo) * t / 4.0;
    cv::line(image, {px(fx), top}, {px(fx), top + h}, grey, 1);
    cv::line(image, {left, py(fy)}, {left + w, py(fy)}, grey, 1);
    cv::putText(image, fmt::format("{:.3g}", fx), {px(fx) - 12, top + h + 18}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1,
                cv::LINE_AA);
    cv::putText(image, fmt::format("{:.3g}", fy), {8, py(fy) + 5}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1, cv::LINE_AA);
  }
  cv::rectangle(image, {left, top}, {left + w, top + h}, black, 1);
  cv::putText(image, x_label, {left + w / 2 - 30, side - 12}, cv::FONT_HERSHEY_SIMPLEX, 0.55, black, 1, cv::LINE_AA);
  cv::putText(image, y_label, {8, top - 12}, cv::FONT_HERSHEY_SIMPLEX, 0.55, black, 1, cv::LINE_AA);
  cv::putText(image, title, {left + 60, top - 12}, cv::FONT_HERSHEY_SIMPLEX, 0.55, black, 1, cv::LINE_AA);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = palette[k % palette.size()];
    std::vector<cv::Point> points;
    for (std::size_t i = 0; i < series[k].x.size(); ++i) {
      if (std::isfinite(series[k].x[i]) && std::isfinite(series[k].y[i])) points.emplace_back(px(series[k].x[i]), py(series[k].y[i]));
    }
    if (points.size() > 1) cv::polylines(image, points, false, colour, 2, cv::LINE_AA);
    for (const auto& p : points) cv::circle(image, p, 3, colour, cv::FILLED, cv::LINE_AA);
    const int y = top + 10 + 24 * static_cast<int>(k);
    cv::line(image, {side + 10, y}, {side + 34, y}, colour, 3, cv::LINE_AA);
    cv::putText(image, series[k].name, {side + 42, y + 5}, cv::FONT_HERSHEY_SIMPLEX, 0.5, black, 1, cv::LINE_AA);
  }
  return torch::from_blob(image.data, {image.rows, image.cols, 3}, torch::kUInt8).clone();
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

int64_t default_viz_count(const std::string& what) {
  static const std::vector<std::pair<std::string, int64_t>> kinds{
      {"filters", 100}, {"recon", 10}, {"maximize", 16}, {"samples", 100}, {"interp", 8}, {"latent", 5000}, {"chains", 10}, {"pr", 1}};
  std::vector<std::string> names;
  for (const auto& [name, count] : kinds) {
    if (name == what) return count;
    names.push_back(name);
  }
  throw Error(fmt::format("viz: --what {}: expected one of {}", what, fmt::join(names, ", ")));
}

void viz_run(const std::filesystem::path& run_dir, const std::string& what, const std::filesystem::path& out,
             int64_t unit, int64_t count, int64_t gibbs_steps) {
  default_viz_count(what);  // refuses an unknown kind by name
  check_output_path(out, "--out");
  if (count < 1) throw Error("viz: --count must be at least 1");
  if (what == "pr") {
    write_png(out, retrieval_curves(run_dir));
    return;
  }
  Run run = load_run(run_dir, /*with_test=*/true, "cpu");  // drawn on the CPU, wherever it was trained
  Autoencoder& model = *run.model.model;
  const auto& shape = run.data.spec.shape;
  // Pictures of data show it as it was before centring.
  auto uncentre = [&](const torch::Tensor& x) {
    const torch::Tensor scaled = run.data.deviation.defined() ? x * run.data.deviation : x;
    return run.data.mean.defined() ? scaled + run.data.mean : scaled;
  };
  torch::Tensor grid;
  if (what == "filters") {
    const torch::Tensor filters = first_layer_filters(model, shape);
    grid = image_grid(filters.narrow(0, 0, std::min(count, filters.size(0))), 10, /*normalise_each=*/true);
  } else if (what == "recon") {
    const torch::Tensor inputs = run.data.test.inputs.narrow(0, 0, std::min(count, run.data.test.size()));
    std::vector<torch::Tensor> rows;
    for (const auto& row : reconstruction_rows(model, inputs)) rows.push_back(uncentre(row));
    grid = image_grid(torch::cat(rows), inputs.size(0), /*normalise_each=*/false);
  } else if (what == "samples") {
    auto* generative = dynamic_cast<Generative*>(&model);
    if (generative == nullptr) {
      throw Error(fmt::format("viz: samples need a generative family (vae, wae, rbm, dbm); this run is {}",
                              run.config["model"].value("family", "?")));
    }
    model.module().eval();
    torch::NoGradGuard no_grad;
    auto* sampler = dynamic_cast<GibbsSampler*>(&model);
    const torch::Tensor samples = sampler && gibbs_steps > 0 ? sampler->gibbs(sampler->random_visible(count), gibbs_steps)
                                                             : generative->sample(count);
    grid = image_grid(uncentre(samples), 10, /*normalise_each=*/false);
  } else if (what == "chains") {
    auto* sampler = dynamic_cast<GibbsSampler*>(&model);
    if (sampler == nullptr) {
      throw Error(fmt::format("viz: chains need a Boltzmann machine (rbm, dbm); this run is {}",
                              run.config["model"].value("family", "?")));
    }
    model.module().eval();
    const int64_t from_data = std::min(count / 2, run.data.test.size());
    const torch::Tensor starts =
        torch::cat({sampler->random_visible(count - from_data), run.data.test.inputs.narrow(0, 0, from_data)});
    const int64_t most = gibbs_steps > 0 ? gibbs_steps : sampler->sample_steps();
    grid = gibbs_chain_grid(*sampler, starts, chain_steps(most));
  } else if (what == "interp") {
    const int64_t pairs = std::min(count, run.data.test.size() / 2);
    const torch::Tensor a = run.data.test.inputs.narrow(0, 0, pairs);
    const torch::Tensor b = run.data.test.inputs.narrow(0, pairs, pairs);
    const int64_t steps = 10;
    grid = image_grid(uncentre(interpolation_rows(model, a, b, steps)), steps + 2, /*normalise_each=*/false);
  } else if (what == "latent") {
    const int64_t n = std::min(count, run.data.test.size());
    model.module().eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor codes = model.encode(run.data.test.inputs.narrow(0, 0, n));
    const torch::Tensor labels =
        run.data.test.labels.defined() ? run.data.test.labels.narrow(0, 0, n) : torch::Tensor();
    static const std::vector<std::string> fashion{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    const bool is_fashion = run.data_options.dataset == "fashion-mnist";
    grid = scatter_plot(codes_to_plane(codes), labels, is_fashion ? fashion : std::vector<std::string>{});
  } else {
    if (unit >= model.code_size()) {
      throw Error(fmt::format("viz: --unit {}: the code has {} units", unit, model.code_size()));
    }
    const double norm = run.data.test.inputs.narrow(0, 0, std::min<int64_t>(1000, run.data.test.size()))
                            .flatten(1).norm(2, {1}).mean().item<double>();
    std::vector<torch::Tensor> optima;
    const int64_t first = unit >= 0 ? unit : 0;
    const int64_t last = unit >= 0 ? unit + 1 : std::min(count, model.code_size());
    for (int64_t u = first; u < last; ++u) optima.push_back(maximize_unit(model, u, shape, norm));
    grid = image_grid(torch::cat(optima), 8, /*normalise_each=*/true);
  }
  write_png(out, grid);
}

}  // namespace torchae
