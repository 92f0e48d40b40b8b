#pragma once

#include "torchae/core/config.h"

#include <torch/script.h>
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace torchae {

/// How `run_tiled` takes an image of any size through a network.
struct TileOptions {
  /// Side of the square of output each window contributes (rounded up to `multiple`).
  int64_t tile = 256;
  /// Context on each side of a tile whose output is discarded (rounded up to `multiple`). At
  /// least the network's receptive radius, tiling changes nothing.
  int64_t margin = 32;
  /// The network takes sides that are multiples of this (its total stride).
  int64_t multiple = 1;
  /// {H, W} for a network that takes one size only (an MLP, a dense code); empty: any size.
  std::vector<int64_t> window;
  /// Self-ensemble (Timofte, Rothe & Van Gool, CVPR 2016): each window also goes through the
  /// network mirrored and turned by quarter turns, eight ways in all (four mirrorings where a
  /// fixed window is not square), and the outputs, turned back, are averaged: as many times
  /// the work.
  bool self_ensemble = false;
};

/// Runs `net` ([1, C, h, w] -> [1, C', h, w]) over `image` [C, H, W] of any size, and returns
/// its output [C', H, W]. The image is padded by reflection at the bottom and right to a
/// multiple of `multiple` (and to at least `window`), cut into tiles of `tile` with `margin`
/// of context (fixed windows shift inside the image), and the tiles' centres are stitched;
/// the padding is cropped off. Windows start at multiples of `multiple`, so a network whose
/// receptive radius is at most `margin` gives what it gives on the whole padded image.
/// `self_ensemble` averages each window over its mirrorings and quarter turns.
torch::Tensor run_tiled(const std::function<torch::Tensor(const torch::Tensor&)>& net, const torch::Tensor& image,
                        const TileOptions& options);

/// What `torchae restore` does with an image.
enum class RestoreTask {
  /// The network restores the image it is given.
  denoise,
  /// The pixels of a mask are set to 0 and the network fills them; known pixels are kept.
  inpaint,
  /// The image's luminance, in three channels, is given to the network, which colours it;
  /// the result keeps the input's luminance.
  colorize,
};

RestoreTask parse_restore_task(const std::string& name);
std::string to_string(RestoreTask task);

/// A restoration model: a TorchScript archive exported by torchae, with what its model card
/// says about its input.
///
///   Restorer model = Restorer::load("dae.pt");
///   torch::Tensor clean = model.restore(RestoreTask::denoise, read_image("noisy.png", model.channels()));
class Restorer {
 public:
  /// Loads the archive on the CPU. A missing file, a file that is not an archive, or one
  /// without a torchae model card is an Error.
  static Restorer load(const std::filesystem::path& archive);

  /// Input channels of the model (1 or 3).
  int64_t channels() const { return channels_; }
  /// The model card.
  const Json& card() const { return card_; }
  /// How images go through the model (from the archive's `size_multiple`: a fully
  /// convolutional model takes any size that is a multiple of it; other models their training
  /// size, from the card).
  TileOptions& tiling() { return tiling_; }
  const TileOptions& tiling() const { return tiling_; }
  /// Throws Error when the model cannot do `task` (colorize needs 3 channels).
  void require_task(RestoreTask task) const;
  /// The model's `forward` on a batch [1, C, h, w] of a size it takes.
  torch::Tensor forward(const torch::Tensor& batch) const;
  /// Whether the model is told where pixels are missing (its archive has `fill`, see
  /// `MaskAware`); `restore` then gives it the mask.
  bool takes_mask() const { return takes_mask_; }
  /// The model's `fill` on a batch [1, C, h, w] with `missing` [1, 1, h, w] (1 = missing).
  torch::Tensor fill(const torch::Tensor& batch, const torch::Tensor& missing) const;
  /// Whether the model is told how much noise there is (its archive has `denoise`, see
  /// `NoiseAware`); `restore` then gives it the level.
  bool takes_noise_level() const { return takes_noise_level_; }
  /// The model's `denoise` on a batch [1, C, h, w] with `level` [1, 1, h, w] (the noise's
  /// standard deviation, in [0, 1] units).
  torch::Tensor denoise(const torch::Tensor& batch, const torch::Tensor& level) const;
  /// Whether the model is a colouriser by classes (model.chroma_bins: its archive has
  /// `net_forward`, the class scores, and `chroma_kernel`, the cells' centres), whose scores can
  /// be decoded at another temperature.
  bool decodes_classes() const { return decodes_classes_; }
  /// colorize: the temperature the class scores are decoded at (> 0; `colours_of_scores` of the
  /// archive's scores and cells), or std::nullopt for the model's own (its `forward`). Only for a
  /// model that `decodes_classes`.
  void set_temperature(std::optional<double> temperature);
  /// The colours of a batch [1, 3, h, w] of gray images at `temperature`, from the class scores.
  torch::Tensor colours_at(const torch::Tensor& batch, double temperature) const;
  /// `image` [C, H, W] in [0, 1] restored by `task`; `mask` [H, W] (bool, true = missing) for
  /// inpaint. `noise_level`: for a model that takes one, the noise's standard deviation in [0,
  /// 1] units; when not given, `estimate_noise_sigma` of the whole image. colorize decodes at
  /// the temperature set (`set_temperature`), if any. Output in [0, 1].
  torch::Tensor restore(RestoreTask task, const torch::Tensor& image, const torch::Tensor& mask = {},
                        std::optional<double> noise_level = std::nullopt) const;

 private:
  mutable torch::jit::Module module_;
  Json card_;
  int64_t channels_ = 1;
  TileOptions tiling_;
  torch::Tensor input_mean_;
  bool takes_mask_ = false;
  bool takes_noise_level_ = false;
  bool decodes_classes_ = false;
  std::optional<double> temperature_;

  /// The archive's method `method_name`(batch, side), for fill and denoise.
  torch::Tensor with_side_channel(const std::string& method_name, const torch::Tensor& batch,
                                  const torch::Tensor& side) const;
  /// `method_name` over `image` [C, H, W] of any size, window by window (`run_tiled`), with
  /// `side` [1, H, W] travelling through the tiling as one more channel.
  torch::Tensor tiled_with_side_channel(const std::string& method_name, const torch::Tensor& image,
                                        const torch::Tensor& side) const;
};

/// The luminance of colour images [..., 3, H, W] (ITU-R BT.601), in three channels.
torch::Tensor gray_in_three_channels(const torch::Tensor& images);

/// A corruption of `torchae restore --noise`: "S" is Gaussian noise of standard deviation S in
/// 0-255 units, "salt_pepper:P" sets a fraction P of the values to 0 or 1. The result is
/// clipped and rounded to 8 bits, as an image file holds it. Draws from LibTorch's default
/// generator.
torch::Tensor add_noise(const torch::Tensor& image, const std::string& noise);

/// A mask for `torchae restore --mask`: an image file (nonzero = missing, resized to
/// nothing: it must be `height` x `width`), or "KIND[:FRACTION]" with KIND one of random,
/// scratches, blocks, text (`random_mask`, FRACTION 0.15 by default).
torch::Tensor make_mask(const std::string& spec, int64_t height, int64_t width);

/// What `restore_file`, `restore_folder` and `restore_eval` tell the model beyond the image,
/// checked against the model and the task before anything is written (an Error names the option).
struct TaskSettings {
  /// denoise, a model told the noise level (`Restorer::takes_noise_level`): its standard
  /// deviation in 0-255 units (`--noise-level`); estimated from each image when not given.
  std::optional<double> noise_level;
  /// colorize, a colouriser by classes (`Restorer::decodes_classes`): the temperature its scores
  /// are decoded at (`--temperature`; lower is more vivid, 1 the mean); its own when not given.
  std::optional<double> temperature;
};

/// The restoration tasks a model card says its model was trained for (`restoration_tasks` of the
/// configuration it records, so archives from before the card's "trained_for" are read alike).
std::vector<RestoreTask> trained_tasks(const Json& card);

/// `torchae restore`: restores `in` with `archive` by `task` and writes `out`, encoded as its
/// name says (`format_of_name`, checked first). Demo inputs are written next to `out` as
/// <stem>_noisy.png (with `noise`), <stem>_mask.png and <stem>_masked.png (inpaint),
/// <stem>_gray.png (colorize). A model trained for other tasks (`trained_tasks`) is refused;
/// `warn` is told, in one line, when the model was trained without corruption, or on small
/// images of a fixed size (Fashion-MNIST) and is given a large or colour photograph. `tiling`:
/// where given, its tile (> 0) and margin (>= 0) replace the model's (`Restorer::tiling`: a
/// fixed-size model's margin is an eighth of its side), and its self_ensemble is used.
/// `settings`: see TaskSettings; each is refused for a model or task it is not for. Returns the
/// paths written.
std::vector<std::filesystem::path> restore_file(const std::filesystem::path& archive, RestoreTask task,
                                                const std::filesystem::path& in, const std::filesystem::path& out,
                                                const std::string& noise, const std::string& mask,
                                                const TileOptions* tiling = nullptr,
                                                const std::function<void(const std::string&)>& warn = {},
                                                const TaskSettings& settings = {});

/// What `restore_folder` did: the paths written, the images restored, and one line for each
/// image it could not restore ("NAME: why"), in the folder's order.
struct FolderRestore {
  std::vector<std::filesystem::path> written;
  int64_t restored = 0;
  std::vector<std::string> failed;
};

/// `torchae restore --in DIR --out DIR`: every image of the folder `in` (`list_images`, sorted)
/// restored as `restore_file` restores one, the model loaded once, each written to `out` (made
/// if missing) under its own name, or its stem with .png when restore does not write its format,
/// with its demo inputs beside it. Refused before anything is written: `out` that is `in` (the
/// originals would be replaced), or a file; an inpainting mask file (a folder takes a drawn mask,
/// drawn for each image in turn from LibTorch's generator). An image that cannot be read or
/// restored is reported in `failed` and the others are restored. `written` is told each path as
/// soon as its image is done (the command line prints them as they come).
FolderRestore restore_folder(const std::filesystem::path& archive, RestoreTask task, const std::filesystem::path& in,
                             const std::filesystem::path& out, const std::string& noise, const std::string& mask,
                             const TileOptions* tiling = nullptr,
                             const std::function<void(const std::string&)>& warn = {},
                             const TaskSettings& settings = {},
                             const std::function<void(const std::filesystem::path&)>& written = {});

/// `torchae restore-eval`: PSNR and SSIM of the model against the classical baselines on the
/// same corrupted images.
struct RestoreEvalOptions {
  RestoreTask task = RestoreTask::denoise;
  /// "fashion-mnist" (its test images), or a folder of images (its held-out images: those of
  /// the model card's data.test_images, or every tenth file).
  std::string data = "fashion-mnist";
  /// A folder: the files scored, by name, instead of its held-out images (to score a model on
  /// images it was trained on, or on a few); validation crops are cut from the other files as
  /// always. Names not in the folder are an Error; Fashion-MNIST takes `n` instead.
  std::vector<std::string> images;
  /// As `add_noise` (denoise).
  std::string noise = "51";
  /// As `make_mask` without a file (inpaint).
  std::string mask = "random";
  /// Fashion-MNIST test images scored (the first n).
  int64_t n = 2000;
  /// Seed of the corruptions.
  uint64_t seed = 0;
  /// A PNG of the first images: clean, corrupted, restored and the baselines side by side.
  std::filesystem::path picture;
  /// The picture shows each image's centre crop of this side (the whole image when it is no
  /// larger), enlarged by the largest whole factor that keeps it within 192 pixels (nearest
  /// neighbour: pixels stay pixels), so that what tells the methods apart can be seen.
  int64_t picture_crop = 96;
  /// inpaint: also frequency-selective reconstruction's best profile (`INPAINT_FSR_BEST`),
  /// minutes an image where the fast one takes seconds.
  bool fsr_best = false;
  /// false: the model (and the corrupted input) only, none of the classical methods: what
  /// checking a shipped model's figure needs, in seconds.
  bool baselines = true;
  /// The model self-ensembled (`TileOptions::self_ensemble`): eight times the model's work.
  bool self_ensemble = false;
  /// What the model is told: a denoiser's noise level (when not given, each image's own
  /// estimate), a colouriser's temperature.
  TaskSettings settings;
};

/// Scores the model in `archive` and the baselines (denoise: OpenCV's fastNlMeansDenoising,
/// or fastNlMeansDenoisingColored for colour, and cv::xphoto::dctDenoising, their strengths
/// chosen on validation images; inpaint: cv::inpaint Telea and Navier-Stokes, radius 3, and
/// cv::xphoto::inpaint's frequency-selective reconstruction; colorize: the gray input itself).
/// JSON: {task, data, n, corruption, methods: {name: {psnr_db, ssim, colourfulness
/// (colorize)}}, nlm_h and dct_sigma (denoise), truth_colourfulness and validation (colorize: the
/// model and the gray input scored on the validation crops too)}. An archive may be
/// given as "zoo:NAME" (`resolve_archive`).
Json restore_eval(const std::filesystem::path& archive, const RestoreEvalOptions& options);

}  // namespace torchae
