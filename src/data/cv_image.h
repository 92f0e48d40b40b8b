#pragma once

// Conversions between torchae's images and OpenCV's, for the sources that call OpenCV (OpenCV
// stays out of the public headers).

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>

namespace torchae {

/// An image [C, H, W] (C 1 or 3, RGB) as an 8-bit matrix (BGR for colour), values clipped to
/// [0, 1] and rounded.
cv::Mat to_mat8(const torch::Tensor& image);

/// An 8-bit matrix (gray, or BGR colour) as an image [C, H, W] in [0, 1], RGB.
torch::Tensor from_mat8(const cv::Mat& mat);

/// `read_image` as OpenCV decodes it: 8-bit, gray or BGR, checked the same way (an Error naming
/// an unreadable or truncated file).
cv::Mat read_image_mat(const std::filesystem::path& path, int64_t channels);

/// Whether an 8-bit image is gray: one channel, or three equal to within 2 of 255 (a gray
/// picture stored as colour, through JPEG).
bool is_gray(const cv::Mat& mat);

/// Writes an 8-bit matrix as a PNG file, atomically (`write_atomically`).
void write_png_mat(const std::filesystem::path& path, const cv::Mat& mat);

}  // namespace torchae
