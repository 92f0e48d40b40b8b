#include "torchae/hashing/index.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/core/parallel.h"
#include "torchae/data/dataset.h"
#include "torchae/data/idx.h"
#include "torchae/data/image_io.h"
#include "torchae/data/images.h"
#include "torchae/eval/retrieval.h"
#include "torchae/export/export.h"
#include "torchae/viz/pictures.h"
#include "src/nn/kernels.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace torchae {

namespace fs = std::filesystem;

namespace {

constexpr char kIndexMagic[8] = {'T', 'A', 'E', 'H', 'A', 'S', 'H', '\0'};
constexpr int64_t kHeaderBytes = 40;
constexpr int64_t kMaxBits = 1024;

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(const void* data, std::size_t size, uint64_t hash = kFnvOffset) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * kFnvPrime;
  return hash;
}

// Little-endian fields appended to, and read from, a byte string (x86 and ARM Linux are
// little-endian; a big-endian host would need byte swaps here).
template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

class Reader {
 public:
  Reader(const std::string& bytes, const fs::path& path) : bytes_(bytes), path_(path) {}
  template <typename T>
  T get(const char* what) {
    T value;
    need(sizeof value, what);
    std::memcpy(&value, bytes_.data() + at_, sizeof value);
    at_ += sizeof value;
    return value;
  }
  const char* take(std::size_t size, const char* what) {
    need(size, what);
    const char* p = bytes_.data() + at_;
    at_ += size;
    return p;
  }
  std::size_t position() const { return at_; }
  std::size_t left() const { return bytes_.size() - at_; }

 private:
  void need(std::size_t size, const char* what) const {
    if (size > bytes_.size() - at_) {
      throw Error(
          fmt::format("{}: truncated index ({} bytes; it ends inside the {})", path_.string(), bytes_.size(), what));
    }
  }
  const std::string& bytes_;
  const fs::path& path_;
  std::size_t at_ = 0;
};

int64_t words_of(int64_t bits) { return (bits + 63) / 64; }

}  // namespace

uint64_t model_fingerprint(const torch::jit::Module& module) {
  uint64_t hash = kFnvOffset;
  auto add = [&](const std::string& name, const torch::Tensor& tensor) {
    hash = fnv1a(name.data(), name.size(), hash);
    const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    for (const int64_t d : t.sizes()) hash = fnv1a(&d, sizeof d, hash);
    hash = fnv1a(t.data_ptr(), t.nbytes(), hash);
  };
  for (const auto& p : module.named_parameters(/*recurse=*/true)) add(p.name, p.value);
  for (const auto& b : module.named_buffers(/*recurse=*/true)) add(b.name, b.value);
  return hash;
}

HashModel HashModel::load(const fs::path& path) {
  const Json card = read_model_card(path);
  HashModel m;
  m.path = path;
  m.module = load_torchscript(path);
  if (!m.module.find_method("hash") || !card.contains("hash_bits") || !card["hash_bits"].is_number_integer()) {
    throw Error(
        fmt::format("{}: the model has no binary code (no hash method); export a model trained with "
                    "model.binary_code noise or sign",
                    path.string()));
  }
  m.bits = card["hash_bits"].get<int64_t>();
  m.input_shape = card_image_shape(card, path);
  if (m.bits < 1 || m.bits > kMaxBits)
    throw Error(fmt::format("{}: hash_bits {} is not in [1, {}]", path.string(), m.bits, kMaxBits));
  m.fingerprint = model_fingerprint(m.module);
  return m;
}

torch::Tensor HashModel::hash(const torch::Tensor& images) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor mean = module.hasattr("input_mean") ? module.attr("input_mean").toTensor() : torch::Tensor();
  const torch::Tensor deviation =
      module.hasattr("input_deviation") ? module.attr("input_deviation").toTensor() : torch::Tensor();
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += 1000) {
    torch::Tensor x = images.narrow(0, start, std::min<int64_t>(1000, images.size(0) - start)).to(torch::kFloat32);
    if (mean.defined()) x = x - mean.view_as(x[0]);
    if (deviation.defined()) x = x / deviation.view_as(x[0]);
    torch::Tensor bits = module.get_method("hash")({x}).toTensor();
    if (bits.dim() != 2 || bits.size(1) != this->bits) {
      throw Error(
          fmt::format("{}: hash returned [{}], not [N, {}]", path.string(), fmt::join(bits.sizes(), ", "), this->bits));
    }
    parts.push_back(bits.to(torch::kUInt8));
  }
  return parts.empty() ? torch::empty({0, bits}, torch::kUInt8) : torch::cat(parts);
}

void write_index(const HashIndex& index, const fs::path& path) {
  const int64_t n = index.size(), words = words_of(index.bits);
  TORCH_CHECK(index.bits >= 1 && index.bits <= kMaxBits, "write_index: bits must be in [1, ", kMaxBits, "]");
  TORCH_CHECK(index.codes.dim() == 2 && index.codes.size(1) == words && index.labels.numel() == n &&
                  static_cast<int64_t>(index.names.size()) == n,
              "write_index: codes [N, words], labels [N] and N names");
  std::string bytes(kIndexMagic, sizeof kIndexMagic);
  put<uint32_t>(bytes, kIndexVersion);
  put<uint32_t>(bytes, static_cast<uint32_t>(index.bits));
  put<uint64_t>(bytes, static_cast<uint64_t>(n));
  put<uint32_t>(bytes, static_cast<uint32_t>(words));
  put<uint32_t>(bytes, 0);
  put<uint64_t>(bytes, index.model_fingerprint);
  const torch::Tensor codes = index.codes.to(torch::kCPU, torch::kInt64).contiguous();
  const torch::Tensor labels = index.labels.to(torch::kCPU, torch::kInt64).contiguous();
  if (n > 0) {
    bytes.append(static_cast<const char*>(codes.data_ptr()), codes.nbytes());
    bytes.append(static_cast<const char*>(labels.data_ptr()), labels.nbytes());
  }
  for (const std::string& name : index.names) {
    put<uint32_t>(bytes, static_cast<uint32_t>(name.size()));
    bytes += name;
  }
  put<uint64_t>(bytes, fnv1a(bytes.data(), bytes.size()));
  write_atomically(path,
                   [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

HashIndex read_index(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(fmt::format("{}: no such index file", path.string()));
  const std::string bytes = read_text(path);
  Reader r(bytes, path);
  const char* magic = r.take(sizeof kIndexMagic, "header");
  if (std::memcmp(magic, kIndexMagic, sizeof kIndexMagic) != 0) {
    throw Error(fmt::format("{}: not a torchae index (no TAEHASH magic; write one with torchae index)", path.string()));
  }
  const auto version = r.get<uint32_t>("header");
  if (version != kIndexVersion) {
    throw Error(
        fmt::format("{}: index version {}, this torchae reads version {}", path.string(), version, kIndexVersion));
  }
  HashIndex index;
  index.bits = r.get<uint32_t>("header");
  const auto count = r.get<uint64_t>("header");
  const auto words = r.get<uint32_t>("header");
  (void)r.get<uint32_t>("header");
  index.model_fingerprint = r.get<uint64_t>("header");
  if (index.bits < 1 || index.bits > kMaxBits || words != words_of(index.bits)) {
    throw Error(fmt::format("{}: corrupt index header ({} bits in {} words a code)", path.string(), index.bits, words));
  }
  // Each item takes at least its code, its label and a name's length: a count beyond what the
  // file can hold is corrupt, and is refused before anything is allocated for it.
  const uint64_t per_item = 8ull * words + 8 + 4;
  if (count > r.left() / per_item) {
    throw Error(fmt::format("{}: truncated index (its header announces {} codes, the file holds at most {})",
                            path.string(), count, r.left() / per_item));
  }
  const auto n = static_cast<int64_t>(count);
  index.codes = torch::empty({n, static_cast<int64_t>(words)}, torch::kInt64);
  index.labels = torch::empty({n}, torch::kInt64);
  // An empty index has no codes: its tensors hold no memory to copy to (memcpy takes no null).
  if (n > 0) {
    std::memcpy(index.codes.data_ptr(), r.take(static_cast<std::size_t>(index.codes.nbytes()), "codes"),
                index.codes.nbytes());
    std::memcpy(index.labels.data_ptr(), r.take(static_cast<std::size_t>(index.labels.nbytes()), "labels"),
                index.labels.nbytes());
  }
  index.names.reserve(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto length = r.get<uint32_t>("names");
    index.names.emplace_back(r.take(length, "names"), length);
  }
  const std::size_t body = r.position();
  const auto checksum = r.get<uint64_t>("checksum");
  if (r.left() != 0) throw Error(fmt::format("{}: corrupt index ({} bytes after its end)", path.string(), r.left()));
  if (checksum != fnv1a(bytes.data(), body)) {
    throw Error(fmt::format("{}: corrupt index (its checksum does not match its contents)", path.string()));
  }
  if (index.bits % 64 != 0 && n > 0) {
    const uint64_t unused = ~uint64_t{0} << (index.bits % 64);
    const auto last = index.codes.select(1, words - 1);
    if (last.bitwise_and(static_cast<int64_t>(unused)).ne(0).any().item<bool>()) {
      throw Error(fmt::format("{}: corrupt index (codes with bits beyond its {})", path.string(), index.bits));
    }
  }
  return index;
}

torch::Tensor read_model_image(const fs::path& path, const std::vector<int64_t>& shape) {
  TORCH_CHECK(shape.size() == 3, "read_model_image: expected a shape {C, H, W}");
  const torch::Tensor image = read_image(path, 0);
  if (image.size(0) != shape[0]) {
    const auto kind = [](int64_t c) {
      return c == 1 ? std::string("gray (1 channel)") : fmt::format("colour ({} channels)", c);
    };
    throw Error(
        fmt::format("{}: a {} image; the model takes {} images", path.string(), kind(image.size(0)), kind(shape[0])));
  }
  if (image.size(1) != shape[1] || image.size(2) != shape[2]) {
    throw Error(fmt::format("{}: {}x{} pixels; the model takes {}x{} images", path.string(), image.size(2),
                            image.size(1), shape[2], shape[1]));
  }
  return image;
}

namespace {

// "fashion-mnist:train" and "fashion-mnist:test": the IDX files of Debian's package.
std::pair<fs::path, fs::path> fashion_files(const std::string& split) {
  const std::string prefix = split == "test" ? "t10k" : "train";
  auto part = [&](const std::string& stem) {
    const fs::path gz = fs::path(kFashionMnistDir) / (stem + ".gz");
    std::error_code ec;
    return fs::exists(gz, ec) ? gz : fs::path(kFashionMnistDir) / stem;
  };
  return {part(prefix + "-images-idx3-ubyte"), part(prefix + "-labels-idx1-ubyte")};
}

torch::Tensor idx_images(const fs::path& file, const std::vector<int64_t>& shape) {
  const torch::Tensor images = read_idx(file);
  if (images.dim() != 3 || images.scalar_type() != torch::kUInt8) {
    throw Error(fmt::format("{}: expected uint8 images [N, H, W]", file.string()));
  }
  if (shape[0] != 1 || images.size(1) != shape[1] || images.size(2) != shape[2]) {
    throw Error(fmt::format("{}: {}x{} gray images; the model takes [{}, {}, {}]", file.string(), images.size(2),
                            images.size(1), shape[0], shape[1], shape[2]));
  }
  return images.unsqueeze(1).to(torch::kFloat32).div_(255.0f);
}

}  // namespace

ImageCollection read_collection(const std::string& data, const std::vector<int64_t>& shape) {
  ImageCollection c;
  if (data == "fashion-mnist" || data == "fashion-mnist:train" || data == "fashion-mnist:test") {
    const std::string split = data == "fashion-mnist:test" ? "test" : "train";
    const auto [images, labels] = fashion_files(split);
    c.images = idx_images(images, shape);
    c.labels = read_idx(labels).to(torch::kInt64);
    if (c.labels.numel() != c.images.size(0)) throw Error(fmt::format("{}: not one label per image", labels.string()));
    for (int64_t i = 0; i < c.images.size(0); ++i) c.names.push_back(fmt::format("fashion-mnist:{}:{}", split, i));
    return c;
  }
  std::error_code ec;
  const fs::path path(data);
  if (fs::is_directory(path, ec)) {
    std::vector<torch::Tensor> images;
    for (const fs::path& file : list_images(path)) {
      images.push_back(read_model_image(file, shape));
      c.names.push_back(fs::absolute(file).lexically_normal().string());
    }
    c.images = torch::stack(images);
    c.labels = torch::full({c.images.size(0)}, -1, torch::kInt64);
    return c;
  }
  if (fs::is_regular_file(path, ec)) {
    c.images = idx_images(path, shape);
    c.labels = torch::full({c.images.size(0)}, -1, torch::kInt64);
    const std::string name = fs::absolute(path).lexically_normal().string();
    for (int64_t i = 0; i < c.images.size(0); ++i) c.names.push_back(fmt::format("{}:{}", name, i));
    return c;
  }
  throw Error(
      fmt::format("--data: {}: no such file or folder (fashion-mnist, fashion-mnist:test, an IDX image file "
                  "or a folder of images)",
                  data));
}

std::optional<torch::Tensor> read_item_image(const std::string& name, const std::vector<int64_t>& shape) {
  try {
    const std::size_t colon = name.rfind(':');
    if (colon != std::string::npos && colon + 1 < name.size() &&
        name.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      const int64_t i = std::stoll(name.substr(colon + 1));
      const std::string source = name.substr(0, colon);
      torch::Tensor images;
      if (source == "fashion-mnist:train" || source == "fashion-mnist:test") {
        images = idx_images(fashion_files(source.substr(source.find(':') + 1)).first, shape);
      } else {
        images = idx_images(source, shape);
      }
      if (i < images.size(0)) return images[i];
      return std::nullopt;
    }
    return read_model_image(name, shape);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::vector<Neighbour> hamming_search(const torch::Tensor& query, const torch::Tensor& codes, int64_t k,
                                      int64_t radius) {
  TORCH_CHECK(codes.dim() == 2 && query.numel() == codes.size(1) && k >= 1,
              "hamming_search: a packed query [W] and codes [N, W]");
  // As hamming_distances checked it for the search until now: distances are kept in 16 bits.
  TORCH_CHECK(codes.size(1) >= 1 && codes.size(1) * 64 <= kMaxBits, "hamming_search: codes of 1 to ", kMaxBits,
              " bits");
  const torch::Tensor q = query.to(torch::kCPU, torch::kInt64).contiguous();
  const torch::Tensor db = codes.to(torch::kCPU, torch::kInt64).contiguous();
  const auto* query_words = reinterpret_cast<const uint64_t*>(q.data_ptr<int64_t>());
  const auto* code_words = reinterpret_cast<const uint64_t*>(db.data_ptr<int64_t>());
  const int64_t n = db.size(0), words = db.size(1), buckets = words * 64 + 1;
  // The codes in pieces of 64 K, spread over LibTorch's threads: each piece's distances, then
  // their histogram while they are in cache.
  constexpr int64_t kPiece = int64_t{1} << 16;
  const int64_t pieces = at::divup(n, kPiece);
  std::vector<int16_t> distance(static_cast<std::size_t>(n));
  std::vector<int64_t> histograms(static_cast<std::size_t>(pieces * buckets), 0);
  const auto piece_range = [&](int64_t p) { return std::make_pair(p * kPiece, std::min(n, (p + 1) * kPiece)); };
  parallel_for(0, pieces, 1, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      const auto [begin, end] = piece_range(p);
      kernels::hamming_distances(query_words, code_words, words, begin, end, distance.data());
      int64_t* histogram = histograms.data() + p * buckets;
      for (int64_t j = begin; j < end; ++j) ++histogram[distance[static_cast<std::size_t>(j)]];
    }
  });
  std::vector<int64_t> histogram(static_cast<std::size_t>(buckets), 0);
  for (int64_t p = 0; p < pieces; ++p) {
    for (int64_t d = 0; d < buckets; ++d) histogram[d] += histograms[p * buckets + d];
  }
  // A counting selection: `cut`, the distance of the k-th neighbour (or the radius, when fewer
  // lie within it), all items nearer than it and the first `at_cut` at it, in index order.
  const int64_t limit = radius >= 0 ? std::min(radius, buckets - 1) : buckets - 1;
  int64_t cut = 0, below = 0;
  while (cut <= limit && below + histogram[cut] < k) below += histogram[cut++];
  int64_t at_cut = k - below;
  if (cut > limit) {  // fewer than k within the radius: all of them
    cut = limit;
    at_cut = histogram[limit];
  }
  // Each piece's share of the items at `cut`: what the pieces before it leave.
  std::vector<int64_t> take(static_cast<std::size_t>(pieces));
  for (int64_t p = 0, left = at_cut; p < pieces; ++p) {
    take[p] = std::min(left, histograms[p * buckets + cut]);
    left -= take[p];
  }
  std::vector<std::vector<Neighbour>> found(static_cast<std::size_t>(pieces));
  parallel_for(0, pieces, 1, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      const auto [begin, end] = piece_range(p);
      int64_t left = take[p];
      for (int64_t j = begin; j < end; ++j) {
        const int64_t d = distance[static_cast<std::size_t>(j)];
        if (d < cut) {
          found[p].push_back({j, d});
        } else if (d == cut && left > 0) {
          found[p].push_back({j, d});
          --left;
        }
      }
    }
  });
  std::vector<Neighbour> out;
  for (const auto& piece : found) out.insert(out.end(), piece.begin(), piece.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const Neighbour& a, const Neighbour& b) { return a.distance < b.distance; });
  return out;
}

Json build_index(const fs::path& model_path, const std::string& data, const fs::path& out) {
  check_output_path(out, "--out");
  const HashModel model = HashModel::load(model_path);
  const auto start = std::chrono::steady_clock::now();
  ImageCollection collection = read_collection(data, model.input_shape);
  HashIndex index;
  index.bits = model.bits;
  index.model_fingerprint = model.fingerprint;
  index.codes = pack_bits(model.hash(collection.images));
  index.labels = collection.labels;
  index.names = std::move(collection.names);
  write_index(index, out);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Json{{"index", out.string()}, {"model", model_path.string()}, {"bits", index.bits},
              {"items", index.size()}, {"bytes", fs::file_size(out)},  {"seconds", seconds}};
}

Json search_index(const fs::path& index_path, const fs::path& model_path, const fs::path& query, int64_t k,
                  int64_t radius, const fs::path& picture) {
  if (!picture.empty()) check_output_path(picture, "--picture");
  const HashModel model = HashModel::load(model_path);
  const HashIndex index = read_index(index_path);
  if (index.bits != model.bits) {
    throw Error(fmt::format("{}: an index of {}-bit codes; {} makes {}-bit codes (index it again with this model)",
                            index_path.string(), index.bits, model_path.string(), model.bits));
  }
  if (index.model_fingerprint != model.fingerprint) {
    throw Error(
        fmt::format("{}: built by another model than {} (fingerprints {:016x} and {:016x}; index it again "
                    "with this model)",
                    index_path.string(), model_path.string(), index.model_fingerprint, model.fingerprint));
  }
  if (k > index.size()) {
    throw Error(
        fmt::format("-k: {} neighbours asked of an index of {} items ({})", k, index.size(), index_path.string()));
  }
  const torch::Tensor image = read_model_image(query, model.input_shape);
  const torch::Tensor code = pack_bits(model.hash(image.unsqueeze(0)));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Neighbour> found = hamming_search(code[0], index.codes, k, radius);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Json neighbours = Json::array();
  for (std::size_t r = 0; r < found.size(); ++r) {
    const Neighbour& nb = found[r];
    const int64_t label = index.labels[nb.item].item<int64_t>();
    neighbours.push_back({{"rank", r + 1},
                          {"item", nb.item},
                          {"name", index.names[static_cast<std::size_t>(nb.item)]},
                          {"distance", nb.distance},
                          {"label", label >= 0 ? Json(label) : Json()}});
  }
  if (!picture.empty()) {
    std::vector<torch::Tensor> images{image};
    std::vector<std::string> captions{"q"};
    for (const Neighbour& nb : found) {
      const auto item = read_item_image(index.names[static_cast<std::size_t>(nb.item)], model.input_shape);
      images.push_back(item ? *item : torch::zeros_like(image));
      captions.push_back(item ? std::to_string(nb.distance) : "?");
    }
    const torch::Tensor grid = image_grid(torch::stack(images), static_cast<int64_t>(images.size()), false);
    write_png(picture, caption_columns(grid, image.size(2), captions));
  }
  return Json{{"query", query.string()},
              {"index", index_path.string()},
              {"bits", index.bits},
              {"k", k},
              {"radius", radius >= 0 ? Json(radius) : Json()},
              {"searched", index.size()},
              {"seconds", seconds},
              {"neighbours", neighbours}};
}

Json bench_hamming(int64_t items, int64_t bits, int64_t queries, int64_t threads) {
  TORCH_CHECK(items >= 10 && bits >= 1 && bits <= kMaxBits && queries >= 1, "bench --hamming: bad sizes");
  const int64_t before = at::get_num_threads();
  const int64_t all = threads > 0 ? threads : before;
  auto generator = at::detail::createCPUGenerator(1905);
  const torch::Tensor codes = pack_bits(torch::randint(0, 2, {items, bits}, generator, torch::kUInt8));
  const torch::Tensor query_codes = pack_bits(torch::randint(0, 2, {queries, bits}, generator, torch::kUInt8));
  const torch::Tensor vectors = torch::randn({items, bits}, generator, torch::kFloat32);
  const torch::Tensor query_vectors = torch::randn({queries, bits}, generator, torch::kFloat32);
  const torch::Tensor norms = vectors.pow(2).sum(1);
  torch::NoGradGuard no_grad;
  // Each timing repeats its queries until at least 0.3 s have passed; comparisons per second.
  auto rate = [&](const std::function<void(int64_t)>& one_query, int64_t per_call) {
    one_query(0);  // warm-up
    int64_t done = 0;
    const auto start = std::chrono::steady_clock::now();
    double seconds = 0;
    while (seconds < 0.3) {
      one_query(done % queries);
      done += per_call;
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return static_cast<double>(done) * static_cast<double>(items) / seconds;
  };
  auto hamming = [&](int64_t q) { (void)hamming_search(query_codes[q], codes, 10); };
  auto float_one = [&](int64_t q) {
    const torch::Tensor d = torch::addmv(norms, vectors, query_vectors[q], 1.0, -2.0);
    (void)torch::topk(d, 10, 0, /*largest=*/false);
  };
  auto float_batch = [&](int64_t) {
    const torch::Tensor d = torch::addmm(norms.unsqueeze(0), query_vectors, vectors.t(), 1.0, -2.0);
    (void)torch::topk(d, 10, 1, /*largest=*/false);
  };
  Json out{{"items", items}, {"bits", bits}, {"queries_batched", queries}, {"k", 10}};
  for (const int64_t t : {int64_t{1}, all}) {
    at::set_num_threads(static_cast<int>(t));
    const double h = rate(hamming, 1), f1 = rate(float_one, 1), fb = rate(float_batch, queries);
    out[fmt::format("threads_{}", t)] = {{"threads", t},
                                         {"hamming_comparisons_per_second", h},
                                         {"hamming_comparisons_per_second_per_core", h / static_cast<double>(t)},
                                         {"float_knn_comparisons_per_second", f1},
                                         {"float_knn_batched_comparisons_per_second", fb},
                                         {"hamming_over_float", h / f1},
                                         {"hamming_over_float_batched", h / fb}};
  }
  at::set_num_threads(static_cast<int>(before));
  out["float_knn"] = fmt::format(
      "{}-dimensional float32 vectors, squared Euclidean distance by addmv (one query) or "
      "addmm ({} queries), then topk",
      bits, queries);
  return out;
}

}  // namespace torchae
