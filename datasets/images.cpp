#include "torchae/data/images.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "src/data/cv_image.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <iostream>
#include <numeric>
#include <set>

namespace torchae {

namespace fs = std::filesystem;

const char* const kOpenCvSampleDir = "/usr/share/doc/opencv-doc/examples/data";

std::vector<fs::path> list_images(const fs::path& dir) {
  static const std::set<std::string> kExtensions{".png", ".jpg",  ".jpeg", ".bmp", ".tif",
                                                  ".tiff", ".webp", ".pgm",  ".ppm", ".pbm"};
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error(fmt::format("{}: no such directory{}", dir.string(),
                            dir == kOpenCvSampleDir ? " (install Debian's opencv-doc)" : ""));
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (entry.is_regular_file(ec) && kExtensions.count(ext)) files.push_back(entry.path());
  }
  if (files.empty()) throw Error(fmt::format("{}: no image files", dir.string()));
  std::sort(files.begin(), files.end());
  return files;
}

torch::Tensor random_patches(const std::vector<torch::Tensor>& images, int64_t patch, int64_t count, uint64_t seed) {
  TORCH_CHECK(!images.empty() && patch >= 1 && count >= 0, "random_patches: no images or a bad size");
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t c = images.front().size(0);
  torch::Tensor out = torch::empty({count, c, patch, patch});
  const torch::Tensor which = torch::randint(static_cast<int64_t>(images.size()), {count}, generator, torch::kLong);
  const torch::Tensor u = torch::rand({count, 2}, generator, torch::kDouble);
  for (int64_t i = 0; i < count; ++i) {
    const torch::Tensor& image = images[static_cast<std::size_t>(which[i].item<int64_t>())];
    const int64_t h = image.size(1), w = image.size(2);
    TORCH_CHECK(h >= patch && w >= patch, "random_patches: an image of ", h, "x", w, " is smaller than the patch");
    const auto y = static_cast<int64_t>(u[i][0].item<double>() * static_cast<double>(h - patch + 1));
    const auto x = static_cast<int64_t>(u[i][1].item<double>() * static_cast<double>(w - patch + 1));
    out[i].copy_(image.narrow(1, y, patch).narrow(2, x, patch));
  }
  return out;
}

torch::Tensor tile_patches(const torch::Tensor& image, int64_t patch) {
  TORCH_CHECK(image.dim() == 3 && patch >= 1, "tile_patches: expected [C, H, W] and a positive patch");
  const int64_t rows = image.size(1) / patch, cols = image.size(2) / patch;
  const torch::Tensor cropped = image.narrow(1, 0, rows * patch).narrow(2, 0, cols * patch);
  // [C, rows, patch, cols, patch] -> [rows, cols, C, patch, patch]
  return cropped.reshape({image.size(0), rows, patch, cols, patch})
      .permute({1, 3, 0, 2, 4})
      .reshape({rows * cols, image.size(0), patch, patch})
      .contiguous();
}

std::vector<fs::path> held_out_images(const fs::path& dir, const std::vector<std::string>& names,
                                      const std::string& given_by) {
  const std::vector<fs::path> files = list_images(dir);
  std::vector<fs::path> held;
  if (names.empty()) {
    for (std::size_t i = 9; i < files.size(); i += 10) held.push_back(files[i]);
    return held;
  }
  for (const std::string& name : names) {
    const auto it = std::find_if(files.begin(), files.end(), [&](const fs::path& f) { return f.filename() == name; });
    if (it == files.end()) throw Error(fmt::format("{}: no image \"{}\" in {}", given_by, name, dir.string()));
    held.push_back(*it);
  }
  return held;
}

namespace {

// SplitMix64 (Steele, Lea & Flood 2014): a counter-based stream, so that crop j of an epoch is
// drawn from its own seed without any shared generator state between loader threads.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

uint64_t crop_seed(uint64_t stream_seed, uint64_t seed, int64_t epoch, int64_t j) {
  SplitMix64 mix{stream_seed};
  mix.state ^= SplitMix64{seed}.next();
  mix.state ^= SplitMix64{static_cast<uint64_t>(epoch) * 0x632BE59BD9B4E019ull}.next();
  mix.state += static_cast<uint64_t>(j) * 0xD1B54A32D192ED03ull;
  return mix.next();
}

}  // namespace

ImageFolderStream::ImageFolderStream(std::vector<fs::path> files, int64_t channels, int64_t patch, int64_t count,
                                     uint64_t stream_seed, int64_t cache_bytes, OnBadFile on_error, bool skip_gray)
    : files_(std::move(files)),
      channels_(channels),
      patch_(patch),
      count_(count),
      stream_seed_(stream_seed),
      cache_bytes_(cache_bytes),
      on_error_(on_error),
      skip_gray_(skip_gray),
      state_(new std::atomic<uint8_t>[files_.size()]) {
  TORCH_CHECK(!files_.empty() && patch_ >= 1 && count_ >= 0, "ImageFolderStream: no files or a bad size");
  for (std::size_t f = 0; f < files_.size(); ++f) state_[f] = 0;
}

int64_t ImageFolderStream::cached_bytes() const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return held_bytes_;
}

void ImageFolderStream::warn(const std::string& line) const {
  std::lock_guard<std::mutex> lock(warn_mutex_);
  if (any_usable_) {
    std::cerr << line << std::flush;
  } else {
    pending_warnings_.push_back(line);
  }
}

void ImageFolderStream::found_usable() const {
  std::lock_guard<std::mutex> lock(warn_mutex_);
  if (any_usable_) return;
  any_usable_ = true;
  for (const std::string& line : pending_warnings_) std::cerr << line;
  std::cerr << std::flush;
  pending_warnings_.clear();
}

std::shared_ptr<const cv::Mat> ImageFolderStream::image(std::size_t f, std::vector<std::string>& skipped) const {
  if (state_[f] >= 2) {
    if (state_[f] == 2) skipped.push_back(files_[f].string());
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (auto it = cache_.find(f); it != cache_.end()) {
      recent_.splice(recent_.begin(), recent_, it->second.place);
      return it->second.image;
    }
  }
  // Decoded outside the lock, so that threads decode different files at once.
  std::shared_ptr<const cv::Mat> decoded;
  try {
    decoded = std::make_shared<const cv::Mat>(read_image_mat(files_[f], channels_));
  } catch (const Error& e) {
    if (on_error_ == OnBadFile::kStop) {
      throw Error(fmt::format("{} (data.on_error \"stop\"; \"skip\" would pass over it)", e.what()));
    }
    uint8_t unknown = 0;
    if (state_[f].compare_exchange_strong(unknown, 2)) {
      ++unusable_;
      warn(fmt::format("warning: {}; skipped\n", e.what()));
    }
    skipped.push_back(files_[f].string());
    return nullptr;
  }
  if (decoded->rows < patch_ || decoded->cols < patch_ || (skip_gray_ && is_gray(*decoded))) {
    uint8_t unknown = 0;
    if (state_[f].compare_exchange_strong(unknown, 3)) ++unusable_;
    return nullptr;
  }
  state_[f] = 1;
  found_usable();
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (auto it = cache_.find(f); it != cache_.end()) return it->second.image;  // another thread was first
  recent_.push_front(f);
  cache_[f] = {decoded, recent_.begin()};
  held_bytes_ += static_cast<int64_t>(decoded->total() * decoded->elemSize());
  // The newest image stays even when it alone is over the limit: it is in use.
  while (held_bytes_ > cache_bytes_ && recent_.size() > 1) {
    const std::size_t oldest = recent_.back();
    const cv::Mat& evicted = *cache_[oldest].image;
    held_bytes_ -= static_cast<int64_t>(evicted.total() * evicted.elemSize());
    cache_.erase(oldest);
    recent_.pop_back();
  }
  return decoded;
}

LoadResult ImageFolderStream::load(uint64_t seed, int64_t epoch, const torch::Tensor& positions) const {
  const int64_t n = positions.numel();
  const torch::Tensor where = positions.to(torch::kLong).contiguous();
  const int64_t* j = where.data_ptr<int64_t>();
  LoadResult result;
  torch::Tensor out = torch::empty({n, channels_, patch_, patch_});
  float* pixels = out.data_ptr<float>();
  // Each crop's first draw of a file; crops are cut file by file, so that a file is looked up
  // once for all its crops of the batch.
  std::vector<SplitMix64> draws;
  std::vector<std::size_t> first_file(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    draws.push_back({crop_seed(stream_seed_, seed, epoch, j[i])});
    first_file[static_cast<std::size_t>(i)] = static_cast<std::size_t>(draws.back().next() % files_.size());
  }
  std::vector<int64_t> by_file(static_cast<std::size_t>(n));
  std::iota(by_file.begin(), by_file.end(), 0);
  std::stable_sort(by_file.begin(), by_file.end(),
                   [&](int64_t a, int64_t b) { return first_file[static_cast<std::size_t>(a)] < first_file[static_cast<std::size_t>(b)]; });
  const int64_t plane = patch_ * patch_;
  for (int64_t i : by_file) {
    SplitMix64& draw = draws[static_cast<std::size_t>(i)];
    std::size_t f = first_file[static_cast<std::size_t>(i)];
    std::shared_ptr<const cv::Mat> picture;
    // An unusable file is passed over by drawing again from the crop's own generator: the same
    // draws whatever other threads have learnt about the folder, so the crop is too.
    while (!(picture = image(f, result.skipped))) {
      if (unusable_ >= files_.size()) {
        throw Error(fmt::format("{}: none of its {} training images can be read as a {}x{} crop",
                                files_.front().parent_path().string(), files_.size(), patch_, patch_));
      }
      f = static_cast<std::size_t>(draw.next() % files_.size());
    }
    const cv::Mat& m = *picture;
    const auto y = static_cast<int64_t>(draw.uniform() * static_cast<double>(m.rows - patch_ + 1));
    const auto x = static_cast<int64_t>(draw.uniform() * static_cast<double>(m.cols - patch_ + 1));
    float* crop = pixels + i * channels_ * plane;
    const int64_t step = channels_;
    for (int64_t c = 0; c < channels_; ++c) {
      // OpenCV holds colour as BGR; torchae's images are RGB.
      const int64_t from = channels_ == 3 ? 2 - c : 0;
      for (int64_t r = 0; r < patch_; ++r) {
        const uint8_t* row = m.ptr<uint8_t>(static_cast<int>(y + r)) + x * step + from;
        float* to = crop + c * plane + r * patch_;
        for (int64_t k = 0; k < patch_; ++k) to[k] = static_cast<float>(row[k * step]) / 255.0f;
      }
    }
  }
  std::sort(result.skipped.begin(), result.skipped.end());
  result.skipped.erase(std::unique(result.skipped.begin(), result.skipped.end()), result.skipped.end());
  result.data.inputs = out;
  return result;
}

namespace {

// Seeds of the patch draws, fixed like the split of the IDX data sets (independent of
// train.seed, so that runs with different seeds see the same patches).
constexpr uint64_t kPatchSeed = 20100301;
constexpr uint64_t kValidationPatchSeed = 20100302;

}  // namespace

DataSplits load_image_folder(const DataOptions& options, bool with_test) {
  const fs::path dir = options.path.empty() ? kOpenCvSampleDir : options.path;
  const std::vector<fs::path> held = held_out_images(dir, options.test_images);
  if (held.empty()) {
    throw Error(fmt::format("config: data.path: {} has {} images, too few to hold out every tenth for the test split; "
                            "name the test images in data.test_images",
                            dir.string(), list_images(dir).size()));
  }
  std::vector<fs::path> train_files;
  int64_t train_file_bytes = 0;
  for (const fs::path& file : list_images(dir)) {
    if (std::find(held.begin(), held.end(), file) != held.end()) continue;
    train_files.push_back(file);
    std::error_code ec;
    train_file_bytes += static_cast<int64_t>(fs::file_size(file, ec));
  }
  if (train_files.empty()) {
    throw Error(fmt::format("{}: no training image of at least {}x{} pixels", dir.string(), options.patch, options.patch));
  }
  const int64_t n = options.limit > 0 ? std::min(options.limit, options.patches) : options.patches;
  const auto n_val = static_cast<int64_t>(static_cast<double>(n) * options.validation_fraction);
  const bool stream = streams(options, n * options.channels * options.patch * options.patch * 4) ||
                      (options.source == "auto" && train_file_bytes > kInMemoryFolderBytes);

  // Read at training time too: a folder whose test split would be empty is refused before
  // training. Streamed, the held-out images are only looked at, one at a time.
  DataSplits splits;
  int64_t test_tiles = 0;
  std::vector<torch::Tensor> tiles;
  for (const fs::path& file : held) {
    if (with_test || !stream) {
      tiles.push_back(tile_patches(read_image(file, options.channels), options.patch));
      test_tiles += tiles.back().size(0);
    } else {
      const cv::Mat image = read_image_mat(file, options.channels);
      test_tiles += (image.rows / options.patch) * (image.cols / options.patch);
    }
  }
  if (test_tiles == 0) {
    throw Error(fmt::format("{}: the held-out images are all smaller than a {}x{} patch", dir.string(), options.patch,
                            options.patch));
  }
  if (with_test) splits.test = {torch::cat(tiles), {}};
  tiles.clear();
  splits.spec.shape = {options.channels, options.patch, options.patch};

  if (stream) {
    auto crops = std::make_shared<ImageFolderStream>(train_files, options.channels, options.patch, n - n_val,
                                                     kPatchSeed, options.cache_mb << 20,
                                                     options.on_error == "stop" ? OnBadFile::kStop : OnBadFile::kSkip,
                                                     options.skip_gray);
    // The validation crops: drawn once, from a seed of their own, the same every epoch and run.
    BatchLoader validation(*crops, torch::arange(n_val), kValidationPatchSeed, /*epoch=*/-1, 256, 0, 1,
                           {options.workers, options.prefetch});
    std::vector<torch::Tensor> parts;
    for (int64_t i = 0; i < validation.size(); ++i) parts.push_back(validation.next().inputs);
    splits.validation = {parts.empty() ? torch::empty({0, options.channels, options.patch, options.patch})
                                       : torch::cat(parts),
                         {}};
    splits.stream = std::move(crops);
    return splits;
  }
  std::vector<torch::Tensor> train_images;
  for (const fs::path& file : train_files) {
    const cv::Mat mat = read_image_mat(file, options.channels);
    // Images smaller than a patch cannot give one; they are skipped rather than padded.
    if (mat.rows < options.patch || mat.cols < options.patch || (options.skip_gray && is_gray(mat))) continue;
    train_images.push_back(from_mat8(mat));
  }
  if (train_images.empty()) {
    throw Error(fmt::format("{}: no training image of at least {}x{} pixels{}", dir.string(), options.patch,
                            options.patch, options.skip_gray ? " in colour (data.skip_gray)" : ""));
  }
  splits.train = {random_patches(train_images, options.patch, n - n_val, kPatchSeed), {}};
  splits.validation = {random_patches(train_images, options.patch, n_val, kValidationPatchSeed), {}};
  return splits;
}

}  // namespace torchae
