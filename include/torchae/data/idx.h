#pragma once

#include <torch/types.h>

#include <filesystem>

namespace torchae {

/// Reads an IDX file (the MNIST format: big-endian header `0 0 type ndim`, ndim sizes, data),
/// gzip-compressed or raw (told apart by content, not by name). The tensor has the file's
/// element type (uint8, int8, int16, int32, float32, float64) and shape. A bad magic number,
/// an unknown type, or a data length that does not match the sizes (truncated or trailing
/// bytes) is refused with an Error naming the file.
///
///   torch::Tensor images = read_idx("train-images-idx3-ubyte.gz");  // uint8 [60000, 28, 28]
torch::Tensor read_idx(const std::filesystem::path& path);

/// Writes a tensor as a raw (uncompressed) IDX file; for tests and for exporting data.
void write_idx(const std::filesystem::path& path, const torch::Tensor& tensor);

}  // namespace torchae
