#include "torchae/data/idx.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"

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

// An open IDX file, gzip-compressed or raw (zlib reads plain files through the same calls).
using GzFile = std::unique_ptr<gzFile_s, decltype(&gzclose)>;

// Reads up to `size` bytes; fewer only at the end of the file. A corrupt gzip stream is an
// error, not a short read.
std::size_t read_some(gzFile file, void* into, std::size_t size, const std::string& name) {
  auto* p = static_cast<char*>(into);
  std::size_t done = 0;
  while (done < size) {
    const auto want = static_cast<unsigned>(std::min<std::size_t>(size - done, std::size_t{1} << 30));
    const int n = gzread(file, p + done, want);
    if (n < 0) {
      int code = 0;
      throw Error(fmt::format("{}: corrupt or truncated: {}", name, gzerror(file, &code)));
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  if (code != Z_OK) throw Error(fmt::format("{}: corrupt or truncated: {}", name, message));
  return done;
}

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Deflate's best ratio is about 1032:1, so a gzip file of n bytes inflates to at most this.
constexpr uint64_t kMaxInflation = 1100;

}  // namespace

// The header is read and checked first, and the data read up to the size it announces and no
// further: a small file that inflates without end (a gzip bomb) is refused after its header.
torch::Tensor read_idx(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(fmt::format("{}: no such file", name));
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  GzFile file(gzopen(path.c_str(), "rb"), &gzclose);
  if (!file) throw Error(fmt::format("{}: cannot open: {}", name, std::strerror(errno)));
  gzbuffer(file.get(), 1 << 20);

  unsigned char magic[4];
  if (read_some(file.get(), magic, 4, name) < 4 || magic[0] != 0 || magic[1] != 0) {
    throw Error(fmt::format("{}: not an IDX file (bad magic number)", name));
  }
  const IdxType* type = nullptr;
  for (const auto& t : kIdxTypes) type = t.code == magic[2] ? &t : type;
  if (type == nullptr) throw Error(fmt::format("{}: unknown IDX element type 0x{:02x}", name, magic[2]));
  const int64_t ndim = magic[3];
  if (ndim == 0) throw Error(fmt::format("{}: IDX file with no dimensions", name));
  std::vector<unsigned char> sizes(4 * static_cast<std::size_t>(ndim));
  if (read_some(file.get(), sizes.data(), sizes.size(), name) < sizes.size()) {
    throw Error(fmt::format("{}: truncated IDX header", name));
  }

  std::vector<int64_t> shape;
  int64_t count = 1;
  for (int64_t d = 0; d < ndim; ++d) {
    const int64_t size = big_endian_u32(sizes.data() + 4 * d);
    shape.push_back(size);
    if (size != 0 && count > (int64_t{1} << 40) / size) {
      throw Error(fmt::format("{}: implausible IDX sizes", name));
    }
    count *= size;
  }
  const auto expected = static_cast<std::size_t>(count * type->bytes);
  const uint64_t header = 4 + sizes.size();
  // Checked before anything is allocated: a raw file holds exactly header + data, a gzip one
  // cannot inflate beyond kMaxInflation times its size.
  const bool raw = gzdirect(file.get()) == 1;
  if (raw ? header + expected > file_size : expected > kMaxInflation * file_size) {
    throw Error(fmt::format("{}: truncated: the header announces {} bytes of data, the file holds {}", name, expected,
                            raw ? std::to_string(file_size - header) : fmt::format("at most {}", kMaxInflation * file_size)));
  }

  torch::Tensor tensor = torch::empty(shape, torch::TensorOptions().dtype(type->dtype));
  const std::size_t found = read_some(file.get(), tensor.data_ptr(), expected, name);
  if (found < expected) {
    throw Error(fmt::format("{}: truncated: the header announces {} bytes of data, the file holds {}", name, expected,
                            found));
  }
  unsigned char more = 0;
  if (read_some(file.get(), &more, 1, name) > 0) {
    throw Error(fmt::format("{}: trailing bytes: the header announces {} bytes of data, the file holds more", name,
                            expected));
  }
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
  write_text_atomically(path, bytes);
}

}  // namespace torchae
