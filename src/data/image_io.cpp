#include "torchae/data/image_io.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "src/data/cv_image.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <string_view>

namespace torchae {

namespace fs = std::filesystem;

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

namespace {

// The formats torchae reads, as a file's first bytes tell.
enum class ImageFormat { kUnknown, kPng, kJpeg, kOther };

// Which of PNG, JPEG, BMP, TIFF, WebP or PNM a file starts as. OpenCV picks its decoder by
// content, and Debian's has more than those (DICOM, JPEG 2000, OpenEXR, ...): fuzzing found
// GDCM's DICOM reader aborting on an assertion. Only the formats torchae lists reach it.
ImageFormat image_format(const fs::path& path) {
  using namespace std::string_view_literals;
  std::array<char, 12> head{};
  std::ifstream in(path, std::ios::binary);
  in.read(head.data(), head.size());
  const std::string_view start(head.data(), static_cast<std::size_t>(in.gcount()));
  auto at = [&](std::size_t offset, std::string_view magic) {
    return start.substr(std::min(offset, start.size())).rfind(magic, 0) == 0;
  };
  if (at(0, "\x89PNG\r\n\x1a\n"sv)) return ImageFormat::kPng;
  if (at(0, "\xff\xd8\xff"sv)) return ImageFormat::kJpeg;
  const bool pnm = start.size() >= 2 && start[0] == 'P' && start[1] >= '1' && start[1] <= '6';
  return at(0, "BM"sv) || at(0, "II*\0"sv) || at(0, "MM\0*"sv) || (at(0, "RIFF"sv) && at(8, "WEBP"sv)) || pnm
             ? ImageFormat::kOther
             : ImageFormat::kUnknown;
}

// Whether a JPEG file ends as a whole one does, with the end-of-image marker (FF D9) among its
// last bytes. libjpeg decodes a truncated file into an image grey below the cut and only warns,
// so OpenCV would read it as whole. Some writers pad after the marker: a few bytes may follow.
bool jpeg_complete(const fs::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const std::streamoff size = in.tellg();
  const std::streamoff tail = std::min<std::streamoff>(size, 1024);
  std::string end(static_cast<std::size_t>(tail), '\0');
  in.seekg(size - tail);
  in.read(end.data(), tail);
  return in && end.find("\xff\xd9") != std::string::npos;
}

// Whether a PNG file is whole: every chunk's CRC right, up to the IEND chunk. libpng reports a
// damaged file on stderr itself before OpenCV sees the error; checked here, it never gets one.
bool png_complete(const std::string& bytes) {
  std::size_t at = 8;  // the signature, checked by image_format
  const auto u32 = [&](std::size_t i) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + i);
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
  };
  while (at + 12 <= bytes.size()) {
    const uint64_t length = u32(at);
    if (at + 12 + length > bytes.size()) return false;
    const auto* type = reinterpret_cast<const Bytef*>(bytes.data() + at + 4);
    if (crc32(crc32(0L, Z_NULL, 0), type, static_cast<uInt>(length + 4)) != u32(at + 8 + length)) return false;
    if (bytes.compare(at + 4, 4, "IEND") == 0) return true;
    at += 12 + length;
  }
  return false;
}

}  // namespace

cv::Mat read_image_mat(const fs::path& path, int64_t channels) {
  TORCH_CHECK(channels == 0 || channels == 1 || channels == 3, "read_image: channels must be 0, 1 or 3");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(fmt::format("{}: no such image file", path.string()));
  const ImageFormat format = image_format(path);
  if (format == ImageFormat::kUnknown) {
    throw Error(fmt::format("{}: not a PNG, JPEG, BMP, TIFF, WebP or PNM image", path.string()));
  }
  if (format == ImageFormat::kJpeg && !jpeg_complete(path)) {
    throw Error(fmt::format("{}: truncated JPEG (no end-of-image marker)", path.string()));
  }
  if (format == ImageFormat::kPng && !png_complete(read_text(path))) {
    throw Error(fmt::format("{}: truncated or damaged PNG (a chunk cut short, a CRC wrong, or no IEND)", path.string()));
  }
  // A file OpenCV cannot decode is torchae's one-line error below, not OpenCV's log lines too.
  static const bool quiet = [] {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    return true;
  }();
  (void)quiet;
  cv::Mat image;
  try {
    image = cv::imread(path.string(), channels == 1   ? cv::IMREAD_GRAYSCALE
                                      : channels == 3 ? cv::IMREAD_COLOR
                                                      : cv::IMREAD_ANYCOLOR);
  } catch (const cv::Exception& e) {
    // Found by fuzzing: a PNM header announcing a huge height fails an assertion in imread.
    throw Error(fmt::format("{}: not an image OpenCV can read ({})", path.string(), e.err));
  }
  if (image.empty()) throw Error(fmt::format("{}: not an image OpenCV can read", path.string()));
  return image;
}

bool is_gray(const cv::Mat& mat) {
  if (mat.channels() == 1) return true;
  cv::Mat planes[3], difference;
  cv::split(mat, planes);
  double first = 0, second = 0;
  cv::absdiff(planes[0], planes[1], difference);
  cv::minMaxLoc(difference, nullptr, &first);
  cv::absdiff(planes[1], planes[2], difference);
  cv::minMaxLoc(difference, nullptr, &second);
  return std::max(first, second) <= 2;
}

torch::Tensor read_image(const fs::path& path, int64_t channels) { return from_mat8(read_image_mat(path, channels)); }

torch::Tensor quantize_8bit(const torch::Tensor& image) { return image.clamp(0, 1).mul(255.0).round_().div_(255.0); }

void write_png_mat(const fs::path& path, const cv::Mat& mat) {
  // Encoded in memory, so that the bytes reach the file through the checked stream of
  // write_atomically (a full disk is an error, not a truncated PNG).
  std::vector<uchar> png;
  if (!cv::imencode(".png", mat, png)) throw Error(fmt::format("cannot encode {} as PNG", path.string()));
  write_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
  });
}

std::optional<std::string> known_format(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".jpeg") return ".jpg";
  if (ext == ".tiff") return ".tif";
  for (const char* known : {".png", ".jpg", ".bmp", ".tif", ".webp"}) {
    if (ext == known) return ext;
  }
  return std::nullopt;
}

std::string format_of_name(const fs::path& path) {
  if (auto format = known_format(path)) return *format;
  throw Error(fmt::format("{}: cannot tell the image format from the name; end it in .png, .jpg, .bmp, .tif or .webp",
                          path.string()));
}

void write_image(const fs::path& path, const torch::Tensor& image) {
  const std::string format = format_of_name(path);
  if (format == ".png") return write_png_mat(path, to_mat8(image));
  std::vector<uchar> bytes;
  if (!cv::imencode(format, to_mat8(image), bytes)) throw Error(fmt::format("cannot encode {} as {}", path.string(), format));
  write_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  });
}

torch::Tensor luma(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() >= 3 && images.size(-3) == 3, "luma: expected colour images [..., 3, H, W], got ",
              images.sizes());
  // ITU-R BT.601, as OpenCV's RGB2GRAY.
  return 0.299 * images.select(-3, 0) + 0.587 * images.select(-3, 1) + 0.114 * images.select(-3, 2);
}

}  // namespace torchae
