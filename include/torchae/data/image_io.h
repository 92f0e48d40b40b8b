#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>

namespace torchae {

/// Reads any image OpenCV reads as float [channels, H, W] in [0, 1], colour in RGB order;
/// `channels` 1 converts to gray, 3 to colour (a gray file is replicated), 0 keeps the file's
/// own (1 for a gray file, 3 for a colour one). A missing or unreadable file is an Error naming it.
torch::Tensor read_image(const std::filesystem::path& path, int64_t channels);

/// Writes an image [C, H, W] (C 1 or 3, RGB, values clipped to [0, 1]) as 8 bits, atomically,
/// encoded as its name says (`format_of_name`).
void write_image(const std::filesystem::path& path, const torch::Tensor& image);

/// The format a file named `path` is written in: ".png", ".jpg" (also .jpeg), ".bmp", ".tif"
/// (also .tiff) or ".webp", by its extension in any case; any other name is an Error that lists
/// these (an image written under a name that says another format is read wrongly later).
std::string format_of_name(const std::filesystem::path& path);

/// `format_of_name`'s format, or nothing for a name that says none of them.
std::optional<std::string> known_format(const std::filesystem::path& path);

/// An image as an 8-bit file holds it: clipped to [0, 1] and rounded to multiples of 1/255.
torch::Tensor quantize_8bit(const torch::Tensor& image);

/// The luma of colour images [..., 3, H, W] in RGB order (ITU-R BT.601, the weights of
/// OpenCV's RGB2GRAY): [..., H, W].
torch::Tensor luma(const torch::Tensor& images);

}  // namespace torchae
