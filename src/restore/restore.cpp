#include "torchae/restore/restore.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/data/corruption.h"
#include "torchae/data/dataset.h"
#include "torchae/data/images.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/nn/chroma.h"
#include "torchae/viz/pictures.h"
#include "src/data/cv_image.h"

#include <torch/nn/functional/padding.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/photo.hpp>
#include <opencv2/xphoto.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <set>

namespace torchae {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// The standard deviation of an image's [C, H, W] noise, estimated (`estimate_noise_sigma`), in its units.
double estimated_noise_level(const torch::Tensor& image) {
  if (image.size(1) < 2 || image.size(2) < 2) {
    throw Error(fmt::format("denoise: the noise level of a {}x{} image cannot be estimated (it takes 2 pixels a side); "
                            "give it with --noise-level",
                            image.size(2), image.size(1)));
  }
  return estimate_noise_sigma(image.unsqueeze(0).to(torch::kFloat)).item<double>();
}

// Pads [1, C, H, W] at the bottom and right to `height` x `width`: by reflection where the
// image is large enough to mirror, by repeating its edge otherwise.
torch::Tensor pad_to(const torch::Tensor& x, int64_t height, int64_t width) {
  const int64_t dh = height - x.size(2), dw = width - x.size(3);
  if (dh == 0 && dw == 0) return x;
  const bool reflect = dh < x.size(2) && dw < x.size(3);
  F::PadFuncOptions options({0, dw, 0, dh});
  if (reflect) {
    options.mode(torch::kReflect);
  } else {
    options.mode(torch::kReplicate);
  }
  return F::pad(x, options);
}

// The window starts and the core spans [begin, end) along one side of length `n` (already a
// multiple of the stride): cores of `tile`, windows of `window` shifted to stay inside.
struct Span {
  int64_t begin, end, window_begin;
};

std::vector<Span> spans(int64_t n, int64_t tile, int64_t margin, int64_t window) {
  std::vector<Span> out;
  for (int64_t begin = 0; begin < n; begin += tile) {
    const int64_t end = std::min(begin + tile, n);
    const int64_t start = std::clamp(begin - margin, int64_t{0}, n - window);
    out.push_back({begin, end, start});
  }
  return out;
}

// net(x) averaged over the dihedral group of the square: x mirrored (or not) left to right,
// then turned k quarter turns; each output is turned and mirrored back. `turns` false: the
// four mirrorings only, which keep the window's sides.
torch::Tensor self_ensembled(const std::function<torch::Tensor(const torch::Tensor&)>& net, const torch::Tensor& x,
                             bool turns) {
  torch::Tensor sum;
  int64_t n = 0;
  for (int64_t k = 0; k < 4; ++k) {
    if (!turns && k % 2 == 1) continue;
    for (const bool mirror : {false, true}) {
      torch::Tensor t = mirror ? x.flip({3}) : x;
      if (k > 0) t = torch::rot90(t, k, {2, 3});
      torch::Tensor y = net(t.contiguous());
      if (k > 0) y = torch::rot90(y, -k, {2, 3});
      if (mirror) y = y.flip({3});
      sum = sum.defined() ? sum.add_(y) : y.clone();  // a copy: the network may return its input
      ++n;
    }
  }
  return sum.div_(static_cast<double>(n));
}

}  // namespace

torch::Tensor run_tiled(const std::function<torch::Tensor(const torch::Tensor&)>& net, const torch::Tensor& image,
                        const TileOptions& o) {
  TORCH_CHECK(image.dim() == 3, "run_tiled: expected an image [C, H, W], got ", image.sizes());
  TORCH_CHECK(o.multiple >= 1 && o.tile >= 1 && o.margin >= 0, "run_tiled: bad tiling options");
  TORCH_CHECK(o.window.empty() || o.window.size() == 2, "run_tiled: window is {H, W}");
  const int64_t h = image.size(1), w = image.size(2);
  const bool fixed = !o.window.empty();
  const int64_t hp = std::max(round_up(h, o.multiple), fixed ? o.window[0] : 0);
  const int64_t wp = std::max(round_up(w, o.multiple), fixed ? o.window[1] : 0);
  const torch::Tensor padded = pad_to(image.unsqueeze(0), hp, wp);

  std::vector<Span> axes[2];
  int64_t windows[2];
  for (std::size_t axis = 0; axis < 2; ++axis) {
    const int64_t n = axis == 0 ? hp : wp;
    int64_t tile, margin;
    if (fixed) {
      // A fixed window of side W: cores of W - 2m, with m small enough to leave one stride.
      windows[axis] = o.window[axis];
      margin = std::min(round_up(o.margin, o.multiple), (windows[axis] - o.multiple) / 2 / o.multiple * o.multiple);
      tile = windows[axis] - 2 * margin;
    } else {
      tile = round_up(o.tile, o.multiple);
      margin = round_up(o.margin, o.multiple);
      windows[axis] = std::min(tile + 2 * margin, n);
    }
    axes[axis] = spans(n, tile, margin, windows[axis]);
  }
  const std::vector<Span>& rows = axes[0];
  const std::vector<Span>& cols = axes[1];
  const int64_t wh = windows[0], ww = windows[1];

  // A fixed window that is not square cannot be turned a quarter.
  const bool turns = !fixed || wh == ww;

  torch::NoGradGuard no_grad;
  torch::Tensor out;
  for (const Span& r : rows) {
    for (const Span& c : cols) {
      const torch::Tensor window = padded.narrow(2, r.window_begin, wh).narrow(3, c.window_begin, ww);
      const torch::Tensor y = o.self_ensemble ? self_ensembled(net, window, turns) : net(window);
      TORCH_CHECK(y.dim() == 4 && y.size(0) == 1 && y.size(2) == wh && y.size(3) == ww,
                  "run_tiled: the network changed the window's size from ", window.sizes(), " to ", y.sizes());
      if (!out.defined()) out = torch::empty({1, y.size(1), hp, wp}, y.options());
      TORCH_CHECK(y.size(1) == out.size(1), "run_tiled: the network's channels changed between windows");
      out.narrow(2, r.begin, r.end - r.begin)
          .narrow(3, c.begin, c.end - c.begin)
          .copy_(y.narrow(2, r.begin - r.window_begin, r.end - r.begin).narrow(3, c.begin - c.window_begin, c.end - c.begin));
    }
  }
  return out[0].narrow(1, 0, h).narrow(2, 0, w);
}

RestoreTask parse_restore_task(const std::string& name) {
  return static_cast<RestoreTask>(index_of_name({"denoise", "inpaint", "colorize"}, name, "task"));
}

std::string to_string(RestoreTask task) {
  switch (task) {
    case RestoreTask::denoise: return "denoise";
    case RestoreTask::inpaint: return "inpaint";
    case RestoreTask::colorize: return "colorize";
  }
  return "?";
}

Restorer Restorer::load(const fs::path& archive) {
  Restorer r;
  r.card_ = read_model_card(archive);
  r.module_ = load_torchscript(archive);
  const std::vector<int64_t> dims = card_image_shape(r.card_, archive);
  r.channels_ = dims[0];
  if (r.channels_ != 1 && r.channels_ != 3) {
    throw Error(fmt::format("{}: the model takes {} channels; restore works with 1 or 3", archive.string(), dims[0]));
  }
  // A fully convolutional model takes any multiple of its stride, as the archive records;
  // every other model takes its training size only.
  const int64_t multiple = r.module_.hasattr("size_multiple") ? r.module_.attr("size_multiple").toInt() : 0;
  if (multiple > 0) {
    r.tiling_.multiple = multiple;
  } else {
    r.tiling_.window = {dims[1], dims[2]};
    r.tiling_.margin = std::min<int64_t>(dims[1], dims[2]) / 8;
  }
  if (r.module_.hasattr("input_mean")) r.input_mean_ = r.module_.attr("input_mean").toTensor();
  r.takes_mask_ = r.module_.find_method("fill").has_value();
  r.takes_noise_level_ = r.module_.find_method("denoise").has_value();
  r.decodes_classes_ = r.module_.find_method("net_forward").has_value() && r.module_.hasattr("chroma_kernel");
  return r;
}

void Restorer::require_task(RestoreTask task) const {
  if (task == RestoreTask::colorize && channels_ != 3) {
    throw Error("colorize needs a colour model (3 input channels); this one takes 1");
  }
}

torch::Tensor Restorer::forward(const torch::Tensor& batch) const {
  torch::NoGradGuard no_grad;
  if (input_mean_.defined()) return module_.forward({batch - input_mean_}).toTensor() + input_mean_;
  return module_.forward({batch}).toTensor();
}

torch::Tensor Restorer::with_side_channel(const std::string& method_name, const torch::Tensor& batch,
                                          const torch::Tensor& side) const {
  torch::NoGradGuard no_grad;
  torch::jit::Method method = module_.get_method(method_name);
  if (input_mean_.defined()) return method({batch - input_mean_, side}).toTensor() + input_mean_;
  return method({batch, side}).toTensor();
}

torch::Tensor Restorer::tiled_with_side_channel(const std::string& method_name, const torch::Tensor& image,
                                                const torch::Tensor& side) const {
  const int64_t c = channels_;
  return run_tiled(
      [&](const torch::Tensor& x) { return with_side_channel(method_name, x.narrow(1, 0, c), x.narrow(1, c, 1)); },
      torch::cat({image, side.to(image.dtype())}, 0), tiling_);
}

namespace {
constexpr const char* kNotByClasses = "restore: this model does not decode classes (no net_forward and chroma_kernel)";
}  // namespace

torch::Tensor Restorer::fill(const torch::Tensor& batch, const torch::Tensor& missing) const {
  TORCH_CHECK(takes_mask_, "restore: this model does not take a mask (it has no fill method)");
  return with_side_channel("fill", batch, missing);
}

torch::Tensor Restorer::denoise(const torch::Tensor& batch, const torch::Tensor& level) const {
  TORCH_CHECK(takes_noise_level_, "restore: this model does not take a noise level (it has no denoise method)");
  return with_side_channel("denoise", batch, level);
}

void Restorer::set_temperature(std::optional<double> temperature) {
  if (temperature) {
    TORCH_CHECK(decodes_classes_, kNotByClasses);
    TORCH_CHECK(*temperature > 0, "restore: the temperature must be positive, got ", *temperature);
  }
  temperature_ = temperature;
}

torch::Tensor Restorer::colours_at(const torch::Tensor& batch, double temperature) const {
  TORCH_CHECK(decodes_classes_, kNotByClasses);
  torch::NoGradGuard no_grad;
  // As the archive's forward: the luma, in three channels, scored; its colours on that luma.
  const torch::Tensor y = luma(batch).unsqueeze(1);
  const torch::Tensor scores = module_.get_method("net_forward")({y.expand({-1, 3, -1, -1}).contiguous()}).toTensor();
  return colours_of_scores(scores, module_.attr("chroma_kernel").toTensor(), y, temperature);
}

torch::Tensor gray_in_three_channels(const torch::Tensor& images) {
  const int64_t c = images.dim() - 3;
  TORCH_CHECK(images.dim() >= 3 && images.size(c) == 3, "gray_in_three_channels: expected colour images");
  return luma(images).unsqueeze(c).expand_as(images).contiguous();
}

torch::Tensor Restorer::restore(RestoreTask task, const torch::Tensor& image, const torch::Tensor& mask,
                                std::optional<double> noise_level) const {
  TORCH_CHECK(image.dim() == 3 && image.size(0) == channels_, "restore: expected an image [", channels_,
              ", H, W], got ", image.sizes());
  require_task(task);
  auto net = [this](const torch::Tensor& x) { return forward(x); };
  switch (task) {
    case RestoreTask::denoise: {
      if (!takes_noise_level_) return run_tiled(net, image, tiling_).clamp(0, 1);
      // One level for the whole image (a tile's own estimate would vary from tile to tile); it
      // travels through the tiling as one more channel and is handed to denoise().
      const double sigma = noise_level ? *noise_level : estimated_noise_level(image);
      return tiled_with_side_channel("denoise", image, torch::full({1, image.size(1), image.size(2)}, sigma))
          .clamp(0, 1);
    }
    case RestoreTask::inpaint: {
      TORCH_CHECK(mask.defined() && mask.dim() == 2 && mask.size(0) == image.size(1) && mask.size(1) == image.size(2),
                  "restore: inpaint needs a mask [H, W] of the image's size");
      const torch::Tensor missing = mask.unsqueeze(0).expand_as(image);
      const torch::Tensor holed = image.masked_fill(missing, 0.0);
      torch::Tensor filled;
      if (takes_mask_) {
        // The mask travels through the tiling as one more channel and is handed to fill().
        filled = tiled_with_side_channel("fill", holed, mask.unsqueeze(0));
      } else {
        filled = run_tiled(net, holed, tiling_);
      }
      return torch::where(missing, filled.clamp(0, 1), image);
    }
    case RestoreTask::colorize: {
      const torch::Tensor gray = gray_in_three_channels(image);
      const torch::Tensor colour =
          temperature_ ? run_tiled([&](const torch::Tensor& x) { return colours_at(x, *temperature_); }, gray, tiling_)
                       : run_tiled(net, gray, tiling_);
      // The luminance is known: keep the input's and take only the colour from the model.
      // Luma weights sum to 1, so adding the difference to every channel moves the luma to
      // the input's and leaves the chroma (B - Y, R - Y) as the model made it.
      return (colour + (gray - gray_in_three_channels(colour))).clamp(0, 1);
    }
  }
  return image;
}

torch::Tensor add_noise(const torch::Tensor& image, const std::string& noise) {
  CorruptionOptions o;
  const std::string salt = "salt_pepper:";
  try {
    std::size_t used = 0;
    if (noise.rfind(salt, 0) == 0) {
      o.kind = CorruptionKind::salt_pepper;
      o.level = std::stod(noise.substr(salt.size()), &used);
      used += salt.size();
      if (!(o.level >= 0 && o.level <= 1)) throw std::invalid_argument("range");  // NaN too
    } else {
      o.kind = CorruptionKind::gaussian;
      o.level = std::stod(noise, &used) / 255.0;
      if (!(o.level >= 0 && o.level <= 1)) throw std::invalid_argument("range");
    }
    if (used != noise.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw Error(fmt::format("--noise \"{}\": expected SIGMA (in [0, 255], 0-255 units) or salt_pepper:P (P in [0, 1])",
                            noise));
  }
  const bool single = image.dim() == 3;
  const torch::Tensor batch = single ? image.unsqueeze(0) : image;
  const torch::Tensor noisy = quantize_8bit(corrupt(batch, o).input);
  return single ? noisy[0] : noisy;
}

torch::Tensor make_mask(const std::string& spec, int64_t height, int64_t width) {
  std::error_code ec;
  if (fs::is_regular_file(spec, ec)) {
    const torch::Tensor m = read_image(spec, 1)[0].gt(0.5);
    if (m.size(0) != height || m.size(1) != width) {
      throw Error(fmt::format("--mask {}: {}x{} pixels, the image has {}x{}", spec, m.size(1), m.size(0), width, height));
    }
    return m;
  }
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  double fraction = 0.15;
  const auto& kinds = mask_kind_names();
  bool ok = std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  if (ok && colon != std::string::npos) {
    try {
      std::size_t used = 0;
      fraction = std::stod(spec.substr(colon + 1), &used);
      ok = used == spec.size() - colon - 1 && fraction > 0 && fraction < 1;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  if (!ok) {
    throw Error(fmt::format("--mask \"{}\": no such file, and not random, scratches, blocks or text[:FRACTION in (0, 1)]", spec));
  }
  return random_mask(height, width, parse_mask_kind(kind), fraction);
}

std::vector<RestoreTask> trained_tasks(const Json& card) {
  std::vector<RestoreTask> tasks;
  for (const std::string& name : restoration_tasks(card.value("config", Json::object()).value("model", Json::object()))) {
    tasks.push_back(parse_restore_task(name));
  }
  return tasks;
}

namespace {

// --noise-level (0-255 units) of restore and restore-eval, checked (for a model told the level,
// denoising) and in the images' [0, 1] units, as `Restorer::restore` takes it.
std::optional<double> told_noise_level(std::optional<double> level, const Restorer& model, RestoreTask task,
                                       const fs::path& archive) {
  if (!level) return std::nullopt;
  if (task != RestoreTask::denoise || !model.takes_noise_level()) {
    throw Error(fmt::format("--noise-level is for --task denoise with a model told the noise level (model.noise_map); "
                            "{} is not",
                            archive.string()));
  }
  if (!(*level >= 0 && *level <= 255)) {
    throw Error(fmt::format("--noise-level: expected a standard deviation in 0-255 units, got {}", *level));
  }
  return *level / 255.0;
}

// --temperature of restore and restore-eval, checked (colorize, a colouriser by classes) and set.
void set_told_temperature(std::optional<double> temperature, Restorer& model, RestoreTask task,
                          const fs::path& archive) {
  if (!temperature) return;
  if (task != RestoreTask::colorize || !model.decodes_classes()) {
    throw Error(fmt::format("--temperature is for --task colorize with a colouriser by classes (model.chroma_bins); "
                            "{} is not",
                            archive.string()));
  }
  if (!(*temperature > 0 && std::isfinite(*temperature))) {
    throw Error(fmt::format("--temperature: expected a positive number, got {}", *temperature));
  }
  model.set_temperature(temperature);
}

// `settings` checked against the model and the task, its temperature set on the model; returns
// its noise level (`told_noise_level`).
std::optional<double> apply_settings(const TaskSettings& settings, Restorer& model, RestoreTask task,
                                     const fs::path& archive) {
  const std::optional<double> level = told_noise_level(settings.noise_level, model, task, archive);
  set_told_temperature(settings.temperature, model, task, archive);
  return level;
}

}  // namespace

namespace {

// The model of `archive` loaded for `task`, with `tiling` applied: restore_file's and
// restore_folder's checks before any image is read (the mask's first, before the model is
// loaded), and the warnings about the model itself.
struct TaskModel {
  Restorer model;
  std::vector<std::string> warnings;
  std::optional<double> level;
};

TaskModel load_for_task(const fs::path& archive, RestoreTask task, const std::string& mask_spec,
                        const TileOptions* tiling, const TaskSettings& settings) {
  if (task != RestoreTask::inpaint && !mask_spec.empty()) throw Error("--mask is for --task inpaint");
  if (task == RestoreTask::inpaint && mask_spec.empty()) {
    throw Error("inpaint needs --mask (an image, or random, scratches, blocks or text)");
  }
  TaskModel loaded{Restorer::load(archive), {}, {}};
  Restorer& model = loaded.model;
  if (tiling) {
    if (tiling->tile > 0) model.tiling().tile = tiling->tile;
    if (tiling->margin >= 0) model.tiling().margin = tiling->margin;
    model.tiling().self_ensemble = tiling->self_ensemble;
  }
  const std::vector<RestoreTask> tasks = trained_tasks(model.card());
  const Json model_config = model.card().value("config", Json::object()).value("model", Json::object());
  if (!tasks.empty() && std::find(tasks.begin(), tasks.end(), task) == tasks.end()) {
    std::vector<std::string> names;
    for (const RestoreTask t : tasks) names.push_back("--task " + to_string(t));
    throw Error(fmt::format("--task {}: {} was trained with corruption \"{}\", for {}, not to {}", to_string(task),
                            archive.string(), model_config.value("corruption", ""), fmt::join(names, " or "),
                            to_string(task)));
  }
  if (tasks.empty()) {
    loaded.warnings.push_back(fmt::format("{} was trained without corruption (family {}): it reconstructs what it sees "
                                          "rather than restoring it",
                                          archive.string(), model_config.value("family", "?")));
  }
  model.require_task(task);  // before anything is written
  loaded.level = apply_settings(settings, model, task, archive);
  return loaded;
}

// One image restored by a loaded model, its demo inputs written beside `out`. Warnings are given
// once the image has been read, just before the model runs.
std::vector<fs::path> restore_image(const Restorer& model, RestoreTask task, const fs::path& in, const fs::path& out,
                                    const std::string& noise, const std::string& mask_spec,
                                    std::optional<double> level, std::vector<std::string> warnings,
                                    const std::function<void(const std::string&)>& warn) {
  torch::Tensor image = read_image(in, model.channels());
  const auto& window = model.tiling().window;
  if (!window.empty()) {
    const int64_t file_channels = read_image(in, 0).size(0);
    const bool large = image.size(1) > 4 * window[0] || image.size(2) > 4 * window[1];
    if (large || file_channels != model.channels()) {
      const std::string data = model.card().value("config", Json::object()).value("data", Json::object()).value(
          "dataset", "its data");
      warnings.push_back(fmt::format(
          "{} is a {}x{} {} image; the model was trained on {}x{} {} images of {} and sees it as {}x{} windows: "
          "expect a poor restoration (train a conv model on image patches for photographs)",
          in.string(), image.size(2), image.size(1), file_channels == 3 ? "colour" : "gray", window[1], window[0],
          model.channels() == 3 ? "colour" : "gray", data, window[1], window[0]));
    }
  }
  const fs::path dir = out.parent_path();
  const std::string stem = out.stem().string();
  auto beside = [&](const std::string& suffix) { return dir / (stem + suffix); };
  std::vector<fs::path> written;
  torch::Tensor mask;
  if (!noise.empty()) {
    image = add_noise(image, noise);
    write_image(beside("_noisy.png"), image);
    written.push_back(beside("_noisy.png"));
  }
  if (task == RestoreTask::inpaint) {
    mask = make_mask(mask_spec, image.size(1), image.size(2));
    write_image(beside("_mask.png"), mask.unsqueeze(0).to(torch::kFloat32));
    write_image(beside("_masked.png"), image.masked_fill(mask.unsqueeze(0).expand_as(image), 0.0));
    written.push_back(beside("_mask.png"));
    written.push_back(beside("_masked.png"));
  }
  if (task == RestoreTask::colorize) {
    write_image(beside("_gray.png"), gray_in_three_channels(image));
    written.push_back(beside("_gray.png"));
  }
  if (warn) {
    for (const auto& warning : warnings) warn(warning);
  }
  write_image(out, model.restore(task, image, mask, level));
  written.push_back(out);
  return written;
}

}  // namespace

std::vector<fs::path> restore_file(const fs::path& archive, RestoreTask task, const fs::path& in, const fs::path& out,
                                   const std::string& noise, const std::string& mask_spec, const TileOptions* tiling,
                                   const std::function<void(const std::string&)>& warn,
                                   const TaskSettings& settings) {
  check_output_path(out, "--out");
  format_of_name(out);
  const TaskModel loaded = load_for_task(archive, task, mask_spec, tiling, settings);
  return restore_image(loaded.model, task, in, out, noise, mask_spec, loaded.level, loaded.warnings, warn);
}

FolderRestore restore_folder(const fs::path& archive, RestoreTask task, const fs::path& in, const fs::path& out,
                             const std::string& noise, const std::string& mask_spec, const TileOptions* tiling,
                             const std::function<void(const std::string&)>& warn, const TaskSettings& settings,
                             const std::function<void(const fs::path&)>& written) {
  std::error_code ec;
  const std::vector<fs::path> files = list_images(in);
  if (fs::exists(out, ec) || fs::is_symlink(out, ec)) {
    if (!fs::is_directory(out, ec)) {
      throw Error(fmt::format("--out {}: is not a folder; a folder given to --in is restored into a folder",
                              out.string()));
    }
    if (fs::equivalent(in, out, ec)) {
      throw Error(fmt::format("--out {}: is the folder --in names; its images would be replaced by their "
                              "restorations: write them elsewhere",
                              out.string()));
    }
  } else if (known_format(out)) {
    // A missing --out named like an image (x.png) is a single image's output given by mistake,
    // not the name of a folder to make.
    throw Error(fmt::format("--out {}: names an image; a folder given to --in is restored into a folder "
                            "(made when missing): give it a folder's name",
                            out.string()));
  }
  if (task == RestoreTask::inpaint && !mask_spec.empty() && fs::exists(mask_spec, ec)) {
    throw Error(fmt::format("--mask {}: a mask file fits one image; a folder takes a drawn mask (random, scratches, "
                            "blocks or text[:FRACTION]), one for each image",
                            mask_spec));
  }
  const TaskModel loaded = load_for_task(archive, task, mask_spec, tiling, settings);
  if (warn) {
    for (const auto& warning : loaded.warnings) warn(warning);
  }
  fs::create_directories(out, ec);
  if (ec) throw Error(fmt::format("--out {}: cannot create the folder: {}", out.string(), ec.message()));
  FolderRestore result;
  std::set<fs::path> outputs;
  for (const fs::path& file : files) {
    // The input's name, when restore writes its format; else the same stem as a PNG.
    fs::path name = file.filename();
    if (!known_format(name)) name.replace_extension(".png");
    const fs::path target = out / name;
    try {
      if (!outputs.insert(target).second) {
        throw Error(fmt::format("another image of the folder was written as {}", target.string()));
      }
      check_output_path(target, "--out");
      for (const auto& path : restore_image(loaded.model, task, file, target, noise, mask_spec, loaded.level, {}, warn)) {
        result.written.push_back(path);
        if (written) written(path);
      }
      ++result.restored;
    } catch (const Error& e) {
      result.failed.push_back(fmt::format("{}: {}", file.filename().string(), e.what()));
    }
  }
  return result;
}

namespace {

// The classical methods take and give 8-bit images (`to_mat8`), as a file would hold them, and
// call OpenCV alone, so that they can run on threads of their own (`for_each_on_every_core`).

cv::Mat nlm(const cv::Mat& noisy, double h) {
  cv::Mat out;
  if (noisy.channels() == 3) {
    cv::fastNlMeansDenoisingColored(noisy, out, static_cast<float>(h), static_cast<float>(h), 7, 21);
  } else {
    cv::fastNlMeansDenoising(noisy, out, static_cast<float>(h), 7, 21);
  }
  return out;
}

// OpenCV's DCT filter (Yu & Sapiro, IPOL 2011) on 16x16 blocks. Its borders come out worse
// than the noisy input (4 dB under it on 40x40 images at sigma 4, where it should change
// little): the image is padded by reflection first, by one block, and cropped after.
cv::Mat dct_denoise(const cv::Mat& noisy, double sigma) {
  constexpr int kBlock = 16;
  cv::Mat padded, out;
  cv::copyMakeBorder(noisy, padded, kBlock, kBlock, kBlock, kBlock, cv::BORDER_REFLECT_101);
  cv::xphoto::dctDenoising(padded, out, sigma, kBlock);
  return out(cv::Rect(kBlock, kBlock, noisy.cols, noisy.rows)).clone();
}

// `missing`: 255 where a pixel is missing.
cv::Mat cv_inpaint(const cv::Mat& image, const cv::Mat& missing, int flags) {
  cv::Mat out;
  cv::inpaint(image, missing, out, 3.0, flags);
  return out;
}

// Frequency-selective reconstruction (Seiler et al., TIP 2015; Genser et al., PCS 2018), whose
// mask marks the known pixels: `known` is 255 there.
cv::Mat fsr_inpaint(const cv::Mat& image, const cv::Mat& known, int profile) {
  cv::Mat out;
  cv::xphoto::inpaint(image, known, out, profile);
  return out;
}

// Calls work(i) for each i in [0, n), an i a task on OpenCV's own threads (its parallel
// framework's pool, which lives as long as the process), or on this thread alone when LibTorch
// has one (restore-eval gives it every core): OpenCV's classical methods run an image on one
// core for most of their time, and the photographs differ in size. OpenCV's own parallel loops
// within `work` run serially, as nested loops do. `work` must not use torch: LibTorch's parallel
// loops, called from threads it did not start, would each start threads of their own. The first
// exception thrown is rethrown here, once every task has stopped; the tasks not yet begun are
// skipped.
void for_each_on_every_core(std::size_t n, const std::function<void(std::size_t)>& work) {
  std::atomic<bool> failed{false};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  const auto run = [&](const cv::Range& range) {
    for (int i = range.start; i < range.end && !failed; ++i) {
      try {
        work(static_cast<std::size_t>(i));
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        failed = true;
      }
    }
  };
  const cv::Range all(0, static_cast<int>(n));
  if (at::get_num_threads() > 1 && n > 1) {
    // OpenCV 4.6 fills its tables for the Lab conversion (which non-local means in colour makes)
    // on first use, unguarded: two threads converting at once for the first time each fill them,
    // one's are lost (LeakSanitizer found 1.7 MB a table) and either may read the other's half
    // filled. One pixel converted here, before any thread starts, fills them.
    static std::once_flag lab_tables;
    std::call_once(lab_tables, [] {
      cv::Mat lab, bgr;
      cv::cvtColor(cv::Mat(1, 1, CV_8UC3, cv::Scalar::all(128)), lab, cv::COLOR_BGR2Lab);
      cv::cvtColor(lab, bgr, cv::COLOR_Lab2BGR);
    });
    cv::parallel_for_(all, run, static_cast<double>(n));
  } else {
    run(all);
  }
  if (failure) std::rethrow_exception(failure);
}

std::vector<cv::Mat> to_mats8(const std::vector<torch::Tensor>& images) {
  std::vector<cv::Mat> mats;
  for (const torch::Tensor& image : images) mats.push_back(to_mat8(image));
  return mats;
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }

// PSNR and SSIM against the clean image, and, for colourisation, the result's colourfulness.
struct Scores {
  std::vector<double> psnr, ssim, colour;
  static double psnr_of(const torch::Tensor& result, const torch::Tensor& clean) {
    return torchae::psnr(result.unsqueeze(0), clean.unsqueeze(0))[0].item<double>();
  }
  void add(const torch::Tensor& result, const torch::Tensor& clean, bool colourfulness) {
    psnr.push_back(psnr_of(result, clean));
    ssim.push_back(torchae::ssim(result.unsqueeze(0), clean.unsqueeze(0))[0].item<double>());
    if (colourfulness) colour.push_back(torchae::colourfulness(result));
  }
  Json json() const {
    Json j = {{"psnr_db", mean(psnr)}, {"ssim", mean(ssim)}};
    if (!colour.empty()) j["colourfulness"] = mean(colour);
    return j;
  }
  Json image(std::size_t i) const {
    Json j = {{"psnr_db", psnr[i]}, {"ssim", ssim[i]}};
    if (!colour.empty()) j["colourfulness"] = colour[i];
    return j;
  }
};

// The images a restoration is scored on, and the validation images NLM's h is chosen on.
struct EvalImages {
  std::vector<torch::Tensor> test, validation;
  std::vector<std::string> names;
};

EvalImages eval_images(const Restorer& model, const RestoreEvalOptions& o) {
  EvalImages images;
  if (o.data == "fashion-mnist") {
    if (!o.images.empty()) throw Error("--images names files of a folder; Fashion-MNIST's test images are chosen by --n");
    if (model.channels() != 1) throw Error("Fashion-MNIST is gray; this model takes colour images");
    DataOptions data;
    const DataSplits splits = load_data(data, /*with_test=*/true);
    const int64_t n = std::min(o.n, splits.test.size());
    for (int64_t i = 0; i < n; ++i) images.test.push_back(splits.test.inputs[i]);
    // NLM's h is chosen on the first min(300, n) validation images (the training file's fixed
    // split, never the test file).
    for (int64_t i = 0; i < std::min<int64_t>({300, n, splits.validation.size()}); ++i) {
      images.validation.push_back(splits.validation.inputs[i]);
    }
    images.names.push_back("fashion-mnist test");
    return images;
  }
  const fs::path dir = o.data;
  const Json data = model.card().value("config", Json::object()).value("data", Json::object());
  const bool trained_there = data.value("path", "") == o.data || (data.value("path", "").empty() && o.data == kOpenCvSampleDir);
  const auto names = !o.images.empty() ? o.images
                     : trained_there   ? data.value("test_images", std::vector<std::string>{})
                                       : std::vector<std::string>{};
  const auto held = held_out_images(dir, names, o.images.empty() ? "config: data.test_images" : "--images");
  for (const auto& file : held) {
    images.test.push_back(read_image(file, model.channels()));
    images.names.push_back(file.filename().string());
  }
  // h is chosen on centre crops (128x128 at most) of every fifth of the other images (of the
  // colour ones, for colorize).
  const auto files = list_images(dir);
  int64_t k = 0;
  for (const auto& file : files) {
    if (std::find(held.begin(), held.end(), file) != held.end() || k++ % 5 != 0) continue;
    const cv::Mat mat = read_image_mat(file, model.channels());
    if (o.task == RestoreTask::colorize && is_gray(mat)) continue;  // a colouriser is not judged on gray pictures
    const torch::Tensor image = from_mat8(mat);
    const int64_t h = std::min<int64_t>(128, image.size(1)), w = std::min<int64_t>(128, image.size(2));
    images.validation.push_back(image.narrow(1, (image.size(1) - h) / 2, h).narrow(2, (image.size(2) - w) / 2, w).contiguous());
  }
  return images;
}

// The rows of the demo picture: each image's columns, centre-cropped to `crop` and enlarged by
// a whole factor (nearest neighbour) to at most 192 pixels.
void write_picture(const fs::path& path, const std::vector<std::vector<torch::Tensor>>& rows, int64_t crop) {
  std::vector<torch::Tensor> cells;
  for (const auto& row : rows) {
    for (torch::Tensor cell : row) {
      const int64_t h = std::min<int64_t>(crop, cell.size(1)), w = std::min<int64_t>(crop, cell.size(2));
      cell = cell.narrow(1, (cell.size(1) - h) / 2, h).narrow(2, (cell.size(2) - w) / 2, w);
      const int64_t zoom = std::max<int64_t>(1, 192 / std::max(h, w));
      if (zoom > 1) {
        cell = cell.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2);
      }
      cells.push_back(cell.contiguous());
    }
  }
  write_png(path, image_grid(torch::stack(cells), static_cast<int64_t>(rows.front().size()), false));
}

// The test images corrupted for `o.task`, with the inpainting masks (seeded by `o.seed`).
struct CorruptedImages {
  std::vector<torch::Tensor> corrupted, masks;
};

CorruptedImages corrupt_for_task(const std::vector<torch::Tensor>& test, const RestoreEvalOptions& o) {
  torch::manual_seed(o.seed);
  CorruptedImages c;
  for (const torch::Tensor& clean : test) {
    if (o.task == RestoreTask::denoise) {
      c.corrupted.push_back(add_noise(clean, o.noise));
    } else if (o.task == RestoreTask::inpaint) {
      c.masks.push_back(make_mask(o.mask, clean.size(1), clean.size(2)));
      c.corrupted.push_back(clean.masked_fill(c.masks.back().unsqueeze(0).expand_as(clean), 0.0));
    } else {
      c.corrupted.push_back(gray_in_three_channels(clean));
    }
  }
  return c;
}

// A classical denoiser's strength (NLM's h, the DCT filter's sigma), chosen on the validation
// images by PSNR over `grid` (0-255 units): the defaults suit only light noise. What was tried
// goes into `result` as <key> and <key's method>_validation_psnr_db.
double choose_on_validation(const std::string& method, const std::string& key, const std::vector<double>& grid,
                            const std::function<cv::Mat(const cv::Mat&, double)>& denoise,
                            const std::vector<torch::Tensor>& validation, const RestoreEvalOptions& o, Json& result) {
  if (validation.empty()) throw Error(fmt::format("{}: no images left to choose {}'s parameter on", o.data, method));
  torch::manual_seed(o.seed + 1);
  std::vector<torch::Tensor> noisy;
  for (const auto& v : validation) noisy.push_back(add_noise(v, o.noise));
  // Every value on every image at once; then PSNR alone, which is all the choice needs.
  const std::vector<cv::Mat> noisy8 = to_mats8(noisy);
  const std::size_t n = validation.size();
  std::vector<cv::Mat> denoised(grid.size() * n);
  for_each_on_every_core(denoised.size(), [&](std::size_t k) { denoised[k] = denoise(noisy8[k % n], grid[k / n]); });
  double chosen = grid.front(), best = -1e9;
  Json tried = Json::object();
  for (std::size_t v = 0; v < grid.size(); ++v) {
    const double value = grid[v];
    std::vector<double> psnr;
    for (std::size_t i = 0; i < n; ++i) psnr.push_back(Scores::psnr_of(from_mat8(denoised[v * n + i]), validation[i]));
    const double p = mean(psnr);
    tried[fmt::format("{:g}", value)] = p;
    if (p > best) best = p, chosen = value;
  }
  result[key] = chosen;
  result[method + "_validation_psnr_db"] = tried;
  result[method + "_validation_images"] = validation.size();
  return chosen;
}

}  // namespace

Json restore_eval(const fs::path& archive, const RestoreEvalOptions& o) {
  if (o.picture_crop < 1) throw Error(fmt::format("restore-eval: the picture's crop side must be at least 1, got {}", o.picture_crop));
  Restorer model = Restorer::load(archive);
  model.tiling().self_ensemble = o.self_ensemble;
  model.require_task(o.task);  // before the images are read
  const std::optional<double> level = apply_settings(o.settings, model, o.task, archive);
  const bool told_level = o.task == RestoreTask::denoise && model.takes_noise_level();
  const EvalImages images = eval_images(model, o);
  const CorruptedImages corruption = corrupt_for_task(images.test, o);
  const std::vector<torch::Tensor>& corrupted = corruption.corrupted;
  const std::vector<torch::Tensor>& masks = corruption.masks;

  Json result = {{"task", to_string(o.task)}, {"data", o.data}, {"n", images.test.size()}, {"seed", o.seed}};
  if (o.self_ensemble) result["self_ensemble"] = true;
  if (told_level && o.settings.noise_level) result["noise_level"] = *o.settings.noise_level;
  if (o.settings.temperature) result["temperature"] = *o.settings.temperature;
  // What the model is told when no level is given: each image's own estimate, made once here
  // (the JSON lists them in 0-255 units, for a few images).
  std::vector<double> estimates;
  if (told_level && !o.settings.noise_level) {
    for (const torch::Tensor& x : corrupted) estimates.push_back(estimated_noise_level(x));
    if (images.test.size() <= 16) {
      result["noise_level_estimates"] = Json::array();
      for (const double sigma : estimates) result["noise_level_estimates"].push_back(255.0 * sigma);
    }
  }
  std::map<std::string, Scores> scores;
  std::vector<std::vector<torch::Tensor>> rows;
  const std::size_t shown = std::min<std::size_t>(images.test.size(), o.data == "fashion-mnist" ? 8 : 5);
  rows.resize(shown);
  for (std::size_t i = 0; i < shown; ++i) rows[i] = {images.test[i], corrupted[i]};

  // The methods scored, in the order of the picture's columns: each a restoration of image i,
  // by torch (the model, on this thread with every core for its operations) or by OpenCV alone
  // (the classical methods, an image a core, on the 8-bit images).
  struct Method {
    std::string name;
    std::function<torch::Tensor(std::size_t)> run;
    std::function<cv::Mat(std::size_t)> classical;
  };
  std::deque<Method> methods;
  methods.push_back({"model", [&](std::size_t i) {
                       return model.restore(o.task, o.task == RestoreTask::inpaint ? images.test[i] : corrupted[i],
                                            masks.empty() ? torch::Tensor() : masks[i],
                                            estimates.empty() ? level : estimates[i]);
                     }, nullptr});
  std::vector<cv::Mat> corrupted8, missing8, known8;
  if (o.baselines && o.task != RestoreTask::colorize) corrupted8 = to_mats8(corrupted);
  if (o.baselines && o.task == RestoreTask::inpaint) {
    for (const torch::Tensor& mask : masks) {
      missing8.push_back(to_mat8(mask.unsqueeze(0).to(torch::kFloat32)));
      known8.push_back(to_mat8(mask.logical_not().unsqueeze(0).to(torch::kFloat32)));
    }
  }
  if (o.task == RestoreTask::denoise) {
    result["corruption"] = o.noise;
  } else if (o.task == RestoreTask::inpaint) {
    result["corruption"] = o.mask;
  } else {
    result["corruption"] = "gray";
    // Colourfulness (Hasler & Suesstrunk 2003) of the truth, beside each method's.
    std::vector<double> truth;
    for (const auto& clean : images.test) truth.push_back(colourfulness(clean));
    result["truth_colourfulness"] = mean(truth);
    result["truth_colourfulness_per_image"] = truth;
  }
  if (o.baselines && o.task == RestoreTask::denoise) {
    // NLM's h on a grid about 12% apart from 3 to 90; the DCT filter's sigma about 20% apart
    // from 4 to 125 (each of its runs costs about ten of NLM's).
    const double best_h = choose_on_validation(
        "nlm", "nlm_h",
        {3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.5, 14.0, 16.0, 18.0, 20.0, 22.5, 25.0, 28.0, 31.5, 35.5,
         40.0, 45.0, 50.0, 56.0, 63.0, 71.0, 80.0, 90.0},
        nlm, images.validation, o, result);
    methods.push_back({model.channels() == 3 ? "fastNlMeansDenoisingColored" : "fastNlMeansDenoising", nullptr,
                       [&, best_h](std::size_t i) { return nlm(corrupted8[i], best_h); }});
    const double best_sigma = choose_on_validation(
        "dct", "dct_sigma", {4.0, 5.0, 6.0, 7.5, 9.0, 11.0, 13.0, 16.0, 19.0, 23.0, 28.0, 34.0, 40.0, 48.0, 58.0, 70.0, 84.0, 100.0, 125.0},
        dct_denoise, images.validation, o, result);
    methods.push_back(
        {"dctDenoising", nullptr, [&, best_sigma](std::size_t i) { return dct_denoise(corrupted8[i], best_sigma); }});
  } else if (o.baselines && o.task == RestoreTask::inpaint) {
    methods.push_back({"inpaint_telea", nullptr, [&](std::size_t i) {
                         return cv_inpaint(corrupted8[i], missing8[i], cv::INPAINT_TELEA);
                       }});
    methods.push_back(
        {"inpaint_ns", nullptr, [&](std::size_t i) { return cv_inpaint(corrupted8[i], missing8[i], cv::INPAINT_NS); }});
    methods.push_back({"inpaint_fsr_fast", nullptr, [&](std::size_t i) {
                         return fsr_inpaint(corrupted8[i], known8[i], cv::xphoto::INPAINT_FSR_FAST);
                       }});
    if (o.fsr_best) {
      methods.push_back({"inpaint_fsr_best", nullptr, [&](std::size_t i) {
                           return fsr_inpaint(corrupted8[i], known8[i], cv::xphoto::INPAINT_FSR_BEST);
                         }});
    }
  }
  const bool colour = o.task == RestoreTask::colorize;
  methods.push_back({"corrupted", [&](std::size_t i) { return corrupted[i]; }, nullptr});
  for (const Method& method : methods) {
    const std::string& name = method.name;
    std::vector<cv::Mat> classical(method.classical ? images.test.size() : 0);
    if (method.classical) {
      for_each_on_every_core(classical.size(), [&](std::size_t i) { classical[i] = method.classical(i); });
    }
    Scores& s = scores[name];
    for (std::size_t i = 0; i < images.test.size(); ++i) {
      const torch::Tensor restored = method.classical ? from_mat8(classical[i]) : method.run(i);
      s.add(restored, images.test[i], colour);
      if (i < shown && name != "corrupted") rows[i].push_back(restored);
    }
    result["methods"][name] = s.json();
    if (images.test.size() <= 16) {
      result["per_image"][name] = Json::array();
      for (std::size_t i = 0; i < images.test.size(); ++i) {
        Json entry = s.image(i);
        entry["image"] = images.names.size() == images.test.size() ? images.names[i] : std::to_string(i);
        result["per_image"][name].push_back(entry);
      }
    }
  }
  if (colour && !images.validation.empty()) {
    // The same on the validation crops, never scored above: where a colouriser's settings
    // (temperature, rebalancing) can be chosen without looking at the held-out images.
    Scores model_scores, gray_scores;
    std::vector<double> truth;
    for (const torch::Tensor& clean : images.validation) {
      const torch::Tensor gray = gray_in_three_channels(clean);
      model_scores.add(model.restore(o.task, gray), clean, true);
      gray_scores.add(gray, clean, true);
      truth.push_back(colourfulness(clean));
    }
    result["validation"] = {{"n", images.validation.size()},
                            {"truth_colourfulness", mean(truth)},
                            {"methods", {{"model", model_scores.json()}, {"corrupted", gray_scores.json()}}}};
  }
  if (!o.picture.empty()) {
    write_picture(o.picture, rows, o.picture_crop);
    result["picture"] = o.picture.string();
    std::vector<std::string> columns{"clean", "corrupted"};
    for (const Method& m : methods) {
      if (m.name != "corrupted") columns.push_back(m.name);
    }
    result["picture_columns"] = columns;
  }
  return result;
}

}  // namespace torchae
