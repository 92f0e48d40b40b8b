#include "torchae/data/idx.h"

#include "torchae/core/error.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

namespace torchae {
namespace {

struct IdxType {
  uint8_t code;
  torch::ScalarType dtype;
  int64_t bytes;
};

// The type codes of the IDX format (LeCun et al., "THE MNIST DATABASE").
constexpr std::array<IdxType, 6> kIdxTypes{{
    {0x08, torch::kUInt8, 1},
    {0x09, torch::kInt8, 1},
    {0x0B, torch::kInt16, 2},
    {0x0C, torch::kInt32, 4},
    {0x0D, torch::kFloat32, 4},
    {0x0E, torch::kFloat64, 8},
}};

// Reads the whole file, inflating it if it is gzip (zlib reads plain files through the same
// calls). A truncated or corrupt gzip stream is an error, not a short read.
std::string read_maybe_gzip(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error(fmt::format("{}: no such file", path.string()));
  }
  std::unique_ptr<gzFile_s, decltype(&gzclose)> file(gzopen(path.c_str(), "rb"), &gzclose);
  if (!file) throw Error(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  gzbuffer(file.get(), 1 << 20);
  std::string bytes;
  std::array<char, 1 << 20> chunk;
  while (true) {
    const int n = gzread(file.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file.get(), &code);
      throw Error(fmt::format("{}: corrupt or truncated: {}", path.string(), message));
    }
    if (n == 0) break;
    bytes.append(chunk.data(), static_cast<std::size_t>(n));
  }
  int code = Z_OK;
  const char* message = gzerror(file.get(), &code);
  if (code != Z_OK) {
    throw Error(fmt::format("{}: corrupt or truncated: {}", path.string(), message));
  }
  return bytes;
}

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

torch::Tensor read_idx(const std::filesystem::path& path) {
  const std::string bytes = read_maybe_gzip(path);
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::string name = path.string();
  if (bytes.size() < 4 || data[0] != 0 || data[1] != 0) {
    throw Error(fmt::format("{}: not an IDX file (bad magic number)", name));
  }
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes) type = t.code == data[2] ? &t : type;
  if (type == nullptr) throw Error(fmt::format("{}: unknown IDX element type 0x{:02x}", name, data[2]));
  const int64_t ndim = data[3];
  if (ndim == 0) throw Error(fmt::format("{}: IDX file with no dimensions", name));
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(ndim);
  if (bytes.size() < header) throw Error(fmt::format("{}: truncated IDX header", name));

  std::vector<int64_t> shape;
  int64_t count = 1;
  for (int64_t d = 0; d < ndim; ++d) {
    const int64_t size = big_endian_u32(data + 4 + 4 * d);
    shape.push_back(size);
    if (size != 0 && count > (int64_t{1} << 40) / size) {
      throw Error(fmt::format("{}: implausible IDX sizes", name));
    }
    count *= size;
  }
  const std::size_t expected = static_cast<std::size_t>(count * type->bytes);
  const std::size_t found = bytes.size() - header;
  if (found != expected) {
    throw Error(fmt::format("{}: {}: the header announces {} bytes of data, the file holds {}", name,
                            found < expected ? "truncated" : "trailing bytes", expected, found));
  }

  torch::Tensor tensor = torch::empty(shape, torch::TensorOptions().dtype(type->dtype));
  std::memcpy(tensor.data_ptr(), data + header, expected);
  if (type->bytes > 1) {
    // IDX stores multi-byte values big-endian; swap each element's bytes in place.
    auto* p = static_cast<unsigned char*>(tensor.data_ptr());
    for (int64_t i = 0; i < count; ++i) std::reverse(p + i * type->bytes, p + (i + 1) * type->bytes);
  }
  return tensor;
}

void write_idx(const std::filesystem::path& path, const torch::Tensor& tensor) {
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes) type = t.dtype == tensor.scalar_type() ? &t : type;
  TORCH_CHECK(type != nullptr, "write_idx: no IDX type for ", tensor.scalar_type());
  TORCH_CHECK(tensor.dim() > 0 && tensor.dim() < 256, "write_idx: bad rank ", tensor.dim());
  std::string bytes = {0, 0, static_cast<char>(type->code), static_cast<char>(tensor.dim())};
  for (int64_t size : tensor.sizes()) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((size >> shift) & 0xFF));
  }
  const torch::Tensor flat = tensor.contiguous().cpu();
  const auto* p = static_cast<const char*>(flat.data_ptr());
  for (int64_t i = 0; i < flat.numel(); ++i) {
    for (int64_t b = type->bytes - 1; b >= 0; --b) bytes.push_back(p[i * type->bytes + b]);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw Error(fmt::format("cannot write {}", path.string()));
}

}  // namespace torchae
