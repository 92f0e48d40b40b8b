#include "torchae/data/images.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "src/data/cv_image.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <set>

namespace torchae {

namespace fs = std::filesystem;

const char* const kOpenCvSampleDir = "/usr/share/doc/opencv-doc/examples/data";

cv::Mat to_mat8(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3), "expected an image [1|3, H, W], got ",
              image.sizes());
  const torch::Tensor hwc = image.detach()
                                .to(torch::kCPU, torch::kFloat32)
                                .clamp(0, 1)
                                .mul(255.0)
                                .round_()
                                .to(torch::kUInt8)
                                .permute({1, 2, 0})
                                .contiguous();
  const int c = static_cast<int>(image.size(0));
  const cv::Mat view(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC(c), hwc.data_ptr<uint8_t>());
  cv::Mat mat;
  if (c == 3) {
    cv::cvtColor(view, mat, cv::COLOR_RGB2BGR);
  } else {
    mat = view.clone();
  }
  return mat;
}

torch::Tensor from_mat8(const cv::Mat& mat) {
  TORCH_CHECK(mat.depth() == CV_8U && (mat.channels() == 1 || mat.channels() == 3), "expected an 8-bit gray or BGR image");
  cv::Mat rgb;
  if (mat.channels() == 3) {
    cv::cvtColor(mat, rgb, cv::COLOR_BGR2RGB);
  } else {
    rgb = mat;
  }
  const int64_t c = rgb.channels();
  return torch::from_blob(rgb.data, {rgb.rows, rgb.cols, c}, {static_cast<int64_t>(rgb.step1()), c, 1}, torch::kUInt8)
      .permute({2, 0, 1})
      .to(torch::kFloat32)
      .div_(255.0f)
      .contiguous();
}

torch::Tensor read_image(const fs::path& path, int64_t channels) {
  TORCH_CHECK(channels == 1 || channels == 3, "read_image: channels must be 1 or 3");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(fmt::format("{}: no such image file", path.string()));
  const cv::Mat image = cv::imread(path.string(), channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  if (image.empty()) throw Error(fmt::format("{}: not an image OpenCV can read", path.string()));
  return from_mat8(image);
}

torch::Tensor quantize_8bit(const torch::Tensor& image) { return image.clamp(0, 1).mul(255.0).round_().div_(255.0); }

void write_image(const fs::path& path, const torch::Tensor& image) {
  const cv::Mat mat = to_mat8(image);
  write_atomically(path, [&](const fs::path& tmp) {
    // OpenCV picks the codec from the extension, so the temporary name must end in .png.
    const fs::path png = tmp.string() + ".png";
    if (!cv::imwrite(png.string(), mat)) throw Error(fmt::format("cannot write {}", path.string()));
    fs::rename(png, tmp);
  });
}

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
  if (with_test) {
    std::vector<torch::Tensor> tiles;
    for (const fs::path& file : held) tiles.push_back(tile_patches(read_image(file, options.channels), options.patch));
    splits.test = {torch::cat(tiles), {}};
    if (splits.test.size() == 0) {
      throw Error(fmt::format("{}: the held-out images are all smaller than a {}x{} patch", dir.string(),
                              options.patch, options.patch));
    }
  }
  splits.spec.shape = {options.channels, options.patch, options.patch};
  return splits;
}

}  // namespace torchae
