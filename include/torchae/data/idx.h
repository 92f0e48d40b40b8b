#pragma once

#include <torch/types.h>

#include <filesystem>
#include <vector>

namespace torchae {

/// Reads an IDX file (the MNIST format: big-endian header `0 0 type ndim`, ndim sizes, data),
/// gzip-compressed or raw (told apart by content, not by name). The tensor has the file's
/// element type (uint8, int8, int16, int32, float32, float64) and shape. A bad magic number,
/// an unknown type, or a data length that does not match the sizes (truncated or trailing
/// bytes) is refused with an Error naming the file.
///
///   torch::Tensor images = read_idx("train-images-idx3-ubyte.gz");  // uint8 [60000, 28, 28]
torch::Tensor read_idx(const std::filesystem::path& path);

/// The shape an IDX file's header announces, checked as `read_idx` checks it, without reading
/// the data.
std::vector<int64_t> idx_shape(const std::filesystem::path& path);

/// A uint8 IDX file as a tensor over a memory map, without reading it into memory: a raw file
/// is mapped where it is; a gzip one is inflated once, piece by piece, into an unnamed file of
/// the temporary directory, which is mapped. The tensor's pages are read from the file as they
/// are touched and can be dropped by the kernel when memory is short. The same checks as
/// `read_idx`; a file of another element type is an Error.
///
///   torch::Tensor images = map_idx("train-images-idx3-ubyte");  // uint8 [N, 28, 28], mapped
torch::Tensor map_idx(const std::filesystem::path& path);

/// Writes a tensor as a raw (uncompressed) IDX file; for tests and for exporting data.
void write_idx(const std::filesystem::path& path, const torch::Tensor& tensor);

}  // namespace torchae
