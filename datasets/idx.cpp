#include "torchae/data/idx.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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

namespace {

// An IDX file opened and its header read and checked: the data follows, `bytes` of it.
struct IdxHeader {
  GzFile file{nullptr, &gzclose};
  const IdxType* type = nullptr;
  std::vector<int64_t> shape;
  int64_t count = 1;
  std::size_t bytes = 0;
  uint64_t header_bytes = 0;
  uint64_t file_size = 0;
  bool raw = false;
};

// The header is read and checked first, and the data read up to the size it announces and no
// further: a small file that inflates without end (a gzip bomb) is refused after its header.
IdxHeader open_idx(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(fmt::format("{}: no such file", name));
  IdxHeader h;
  h.file_size = std::filesystem::file_size(path, ec);
  h.file.reset(gzopen(path.c_str(), "rb"));
  if (!h.file) throw Error(fmt::format("{}: cannot open: {}", name, std::strerror(errno)));
  gzbuffer(h.file.get(), 1 << 20);

  unsigned char magic[4];
  if (read_some(h.file.get(), magic, 4, name) < 4 || magic[0] != 0 || magic[1] != 0) {
    throw Error(fmt::format("{}: not an IDX file (bad magic number)", name));
  }
  for (const auto& t : kIdxTypes) h.type = t.code == magic[2] ? &t : h.type;
  if (h.type == nullptr) throw Error(fmt::format("{}: unknown IDX element type 0x{:02x}", name, magic[2]));
  const int64_t ndim = magic[3];
  if (ndim == 0) throw Error(fmt::format("{}: IDX file with no dimensions", name));
  std::vector<unsigned char> sizes(4 * static_cast<std::size_t>(ndim));
  if (read_some(h.file.get(), sizes.data(), sizes.size(), name) < sizes.size()) {
    throw Error(fmt::format("{}: truncated IDX header", name));
  }
  for (int64_t d = 0; d < ndim; ++d) {
    const int64_t size = big_endian_u32(sizes.data() + 4 * d);
    h.shape.push_back(size);
    if (size != 0 && h.count > (int64_t{1} << 40) / size) {
      throw Error(fmt::format("{}: implausible IDX sizes", name));
    }
    h.count *= size;
  }
  h.bytes = static_cast<std::size_t>(h.count * h.type->bytes);
  h.header_bytes = 4 + sizes.size();
  // Checked before anything is allocated: a raw file holds exactly header + data, a gzip one
  // cannot inflate beyond kMaxInflation times its size.
  h.raw = gzdirect(h.file.get()) == 1;
  if (h.raw ? h.header_bytes + h.bytes > h.file_size : h.bytes > kMaxInflation * h.file_size) {
    throw Error(fmt::format("{}: truncated: the header announces {} bytes of data, the file holds {}", name, h.bytes,
                            h.raw ? std::to_string(h.file_size - h.header_bytes)
                                  : fmt::format("at most {}", kMaxInflation * h.file_size)));
  }
  return h;
}

// Refuses a file that holds more than its header announces.
void check_no_trailing_bytes(IdxHeader& h, const std::string& name) {
  unsigned char more = 0;
  if (read_some(h.file.get(), &more, 1, name) > 0) {
    throw Error(fmt::format("{}: trailing bytes: the header announces {} bytes of data, the file holds more", name,
                            h.bytes));
  }
}

}  // namespace

std::vector<int64_t> idx_shape(const std::filesystem::path& path) { return open_idx(path).shape; }

torch::Tensor read_idx(const std::filesystem::path& path) {
  const std::string name = path.string();
  IdxHeader h = open_idx(path);
  torch::Tensor tensor = torch::empty(h.shape, torch::TensorOptions().dtype(h.type->dtype));
  const std::size_t found = read_some(h.file.get(), tensor.data_ptr(), h.bytes, name);
  if (found < h.bytes) {
    throw Error(fmt::format("{}: truncated: the header announces {} bytes of data, the file holds {}", name, h.bytes,
                            found));
  }
  check_no_trailing_bytes(h, name);
  if (h.type->bytes > 1) {
    // IDX stores multi-byte values big-endian; swap each element's bytes in place.
    auto* p = static_cast<unsigned char*>(tensor.data_ptr());
    for (int64_t i = 0; i < h.count; ++i) std::reverse(p + i * h.type->bytes, p + (i + 1) * h.type->bytes);
  }
  return tensor;
}

torch::Tensor map_idx(const std::filesystem::path& path) {
  const std::string name = path.string();
  IdxHeader h = open_idx(path);
  if (h.type->dtype != torch::kUInt8) {
    throw Error(fmt::format("{}: only uint8 IDX files are mapped, this one holds {}", name,
                            c10::toString(h.type->dtype)));
  }
  int fd = -1;
  uint64_t offset = h.header_bytes;
  if (h.raw) {
    if (h.header_bytes + h.bytes < h.file_size) {
      throw Error(fmt::format("{}: trailing bytes: the header announces {} bytes of data, the file holds more", name,
                              h.bytes));
    }
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(fmt::format("{}: cannot open: {}", name, std::strerror(errno)));
  } else {
    // A gzip stream has no random access: it is inflated once, in pieces, into an unnamed file
    // of the temporary directory (gone when closed), and that file is mapped.
    const std::string dir = std::filesystem::temp_directory_path().string();
    fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      // A file system without O_TMPFILE: a named file, unlinked at once.
      std::string named = (std::filesystem::path(dir) / "torchae-idx-XXXXXX").string();
      fd = ::mkostemp(named.data(), O_CLOEXEC);
      if (fd >= 0) ::unlink(named.c_str());
    }
    if (fd < 0) {
      throw Error(fmt::format("{}: cannot make a temporary file in {} to inflate it into: {}", name, dir,
                              std::strerror(errno)));
    }
    std::vector<char> piece(std::size_t{1} << 22);
    std::size_t done = 0;
    while (done < h.bytes) {
      const std::size_t want = std::min(piece.size(), h.bytes - done);
      const std::size_t got = read_some(h.file.get(), piece.data(), want, name);
      if (got < want) {
        ::close(fd);
        throw Error(fmt::format("{}: truncated: the header announces {} bytes of data, the file holds {}", name,
                                h.bytes, done + got));
      }
      for (std::size_t written = 0; written < got;) {
        const ssize_t n = ::write(fd, piece.data() + written, got - written);
        if (n < 0) {
          const int error = errno;
          ::close(fd);
          throw Error(fmt::format("{}: cannot inflate it into {}: {}", name, dir, std::strerror(error)));
        }
        written += static_cast<std::size_t>(n);
      }
      done += got;
    }
    check_no_trailing_bytes(h, name);
    offset = 0;
  }
  const std::size_t length = static_cast<std::size_t>(offset) + h.bytes;
  void* map = length > 0 ? ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0) : nullptr;
  const int map_error = errno;
  ::close(fd);  // the mapping keeps the file
  if (map == MAP_FAILED) throw Error(fmt::format("{}: cannot map it: {}", name, std::strerror(map_error)));
  // Examples are read in a random order: no read-ahead of neighbours that will not be used.
  if (map) ::madvise(map, length, MADV_RANDOM);
  auto* data = static_cast<unsigned char*>(map) + (map ? offset : 0);
  return torch::from_blob(
      data, h.shape, [map, length](void*) { if (map) ::munmap(map, length); }, torch::TensorOptions().dtype(torch::kUInt8));
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
