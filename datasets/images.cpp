#include "torchae/data/images.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
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

std::vector<fs::path> held_out_images(const fs::path& dir, const std::vector<std::string>& names) {
  const std::vector<fs::path> files = list_images(dir);
  std::vector<fs::path> held;
  if (names.empty()) {
    for (std::size_t i = 9; i < files.size(); i += 10) held.push_back(files[i]);
    return held;
  }
  for (const std::string& name : names) {
    const auto it = std::find_if(files.begin(), files.end(), [&](const fs::path& f) { return f.filename() == name; });
    if (it == files.end()) throw Error(fmt::format("config: data.test_images: no image \"{}\" in {}", name, dir.string()));
    held.push_back(*it);
  }
  return held;
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
  // Read at training time too: a folder whose test split would be empty is refused before training.
  std::vector<torch::Tensor> tiles;
  for (const fs::path& file : held) tiles.push_back(tile_patches(read_image(file, options.channels), options.patch));
  const torch::Tensor test = torch::cat(tiles);
  if (test.size(0) == 0) {
    throw Error(fmt::format("{}: the held-out images are all smaller than a {}x{} patch", dir.string(), options.patch,
                            options.patch));
  }
  std::vector<torch::Tensor> train_images;
  for (const fs::path& file : list_images(dir)) {
    if (std::find(held.begin(), held.end(), file) != held.end()) continue;
    torch::Tensor image = read_image(file, options.channels);
    // Images smaller than a patch cannot give one; they are skipped rather than padded.
    if (image.size(1) >= options.patch && image.size(2) >= options.patch) train_images.push_back(std::move(image));
  }
  if (train_images.empty()) {
    throw Error(fmt::format("{}: no training image of at least {}x{} pixels", dir.string(), options.patch, options.patch));
  }
  DataSplits splits;
  const int64_t n = options.limit > 0 ? std::min(options.limit, options.patches) : options.patches;
  const auto n_val = static_cast<int64_t>(static_cast<double>(n) * options.validation_fraction);
  splits.train = {random_patches(train_images, options.patch, n - n_val, kPatchSeed), {}};
  splits.validation = {random_patches(train_images, options.patch, n_val, kValidationPatchSeed), {}};
  if (with_test) splits.test = {test, {}};
  splits.spec.shape = {options.channels, options.patch, options.patch};
  return splits;
}

}  // namespace torchae
