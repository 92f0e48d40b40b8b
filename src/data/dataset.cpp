#include "torchae/data/dataset.h"

#include "torchae/core/error.h"
#include "torchae/data/idx.h"
#include "torchae/data/images.h"
#include "torchae/data/stream.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>

namespace torchae {

const char* const kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

int64_t DataSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Dataset Dataset::select(const torch::Tensor& index) const {
  return {inputs.index_select(0, index), labels.defined() ? labels.index_select(0, index) : labels};
}

Dataset Dataset::to(const torch::Device& device) const {
  return {inputs.to(device), labels.defined() ? labels.to(device) : labels};
}

DataOptions DataOptions::from(OptionReader& r) {
  DataOptions o;
  o.dataset = r.choice("dataset", o.dataset, {"fashion-mnist", "idx", "images"});
  o.path = r.string("path", o.path);
  r.require(o.dataset != "idx" || !o.path.empty(), "path",
            "data.dataset \"idx\" needs data.path (a directory of MNIST-format files)");
  o.limit = r.integer("limit", o.limit, at_least(0));
  if (o.dataset == "images") {
    o.patch = r.integer("patch", o.patch, at_least(1));
    o.patches = r.integer("patches", o.patches, at_least(2));
    o.channels = r.integer("channels", o.channels, between(1, 3));
    r.require(o.channels != 2, "channels", "must be 1 (gray) or 3 (colour)");
    if (const Json* names = r.raw("test_images")) {
      r.require(names->is_array() && std::all_of(names->begin(), names->end(), [](const Json& v) { return v.is_string(); }),
                "test_images", "expected a list of file names");
      o.test_images = names->get<std::vector<std::string>>();
    }
    r.resolve("test_images", o.test_images);
    o.skip_gray = r.boolean("skip_gray", o.skip_gray);
    r.require(!o.skip_gray || o.channels == 3, "skip_gray", "leaves gray images out of colour data: needs channels 3");
  }
  o.validation_fraction = r.number("validation_fraction", o.validation_fraction, between(0, 0.9));
  o.center = r.boolean("center", o.center);
  o.source = r.choice("source", o.source, {"auto", "memory", "stream"});
  r.require(!(o.center && o.source == "stream"), "center",
            "centring needs the training split in memory; set data.source \"memory\"");
  o.standardize = r.boolean("standardize", o.standardize);
  r.require(!(o.standardize && o.source == "stream"), "standardize",
            "standardising needs the training split in memory; set data.source \"memory\"");
  r.require(!(o.standardize && o.center), "standardize", "standardising centres the data too; leave data.center off");
  o.workers = r.integer("workers", o.workers, between(0, 256));
  o.prefetch = r.integer("prefetch", o.prefetch, between(1, 1024));
  if (o.dataset == "images") {
    o.cache_mb = r.integer("cache_mb", o.cache_mb, at_least(1));
    o.on_error = r.choice("on_error", o.on_error, {"skip", "stop"});
  }
  r.finish();
  return o;
}

Json DataOptions::to_json() const {
  Json j{{"dataset", dataset}, {"path", path}, {"limit", limit}};
  if (dataset == "images") {
    j.update({{"patch", patch}, {"patches", patches}, {"channels", channels}, {"test_images", test_images},
              {"skip_gray", skip_gray}});
  }
  j.update({{"validation_fraction", validation_fraction}, {"center", center}, {"source", source},
            {"standardize", standardize}, {"workers", workers}, {"prefetch", prefetch}});
  if (dataset == "images") j.update({{"cache_mb", cache_mb}, {"on_error", on_error}});
  return j;
}

namespace {

std::filesystem::path find_part(const std::filesystem::path& dir, const std::string& stem) {
  for (const char* suffix : {".gz", ""}) {
    const auto candidate = dir / (stem + suffix);
    std::error_code ec;
    if (std::filesystem::exists(candidate, ec)) return candidate;
  }
  throw Error(fmt::format("{}: no {} or {}.gz{}", dir.string(), stem, stem,
                          dir == kFashionMnistDir ? " (install Debian's dataset-fashion-mnist)" : ""));
}

// Images uint8 [N, H, W] (read, or mapped when `mapped`), labels int64 [N], checked.
Dataset read_split_u8(const std::filesystem::path& dir, const std::string& prefix, bool mapped) {
  const auto images_path = find_part(dir, prefix + "-images-idx3-ubyte");
  const auto labels_path = find_part(dir, prefix + "-labels-idx1-ubyte");
  torch::Tensor images = mapped ? map_idx(images_path) : read_idx(images_path);
  torch::Tensor labels = read_idx(labels_path);
  if (images.dim() != 3 || images.scalar_type() != torch::kUInt8) {
    throw Error(fmt::format("{}: expected uint8 images [N, H, W], got {} with {} dimensions",
                            images_path.string(), c10::toString(images.scalar_type()), images.dim()));
  }
  if (labels.dim() != 1 || labels.size(0) != images.size(0)) {
    throw Error(fmt::format("{}: {} labels for {} images", labels_path.string(),
                            labels.numel(), images.size(0)));
  }
  if (!c10::isIntegralType(labels.scalar_type(), /*includeBool=*/false)) {
    throw Error(fmt::format("{}: expected integer labels, got {}", labels_path.string(),
                            c10::toString(labels.scalar_type())));
  }
  if (labels.numel() > 0 && labels.min().item<int64_t>() < 0) {
    throw Error(fmt::format("{}: label {} is negative; labels number the classes from 0", labels_path.string(),
                            labels.min().item<int64_t>()));
  }
  return {images, labels.to(torch::kInt64)};
}

// Images as float in [0, 1], shape [N, 1, H, W]; labels as int64 [N].
Dataset read_split(const std::filesystem::path& dir, const std::string& prefix) {
  Dataset d = read_split_u8(dir, prefix, /*mapped=*/false);
  return {d.inputs.unsqueeze(1).to(torch::kFloat32).div_(255.0f), d.labels};
}

// The images of uint8 [N, H, W] `images` at `rows`, as float [n, 1, H, W] in [0, 1] (x / 255, as
// in memory). By hand rather than by index_select and div_: a loader thread opens no parallel
// region, and each value is read and converted in one pass.
torch::Tensor gather_images(const torch::Tensor& images, const torch::Tensor& rows) {
  const torch::Tensor r = rows.to(torch::kLong).contiguous();
  const int64_t n = r.numel(), features = images.size(1) * images.size(2);
  torch::Tensor out = torch::empty({n, 1, images.size(1), images.size(2)});
  const uint8_t* from = images.data_ptr<uint8_t>();
  float* to = out.data_ptr<float>();
  const int64_t* row = r.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* image = from + row[i] * features;
    for (int64_t k = 0; k < features; ++k) to[i * features + k] = static_cast<float>(image[k]) / 255.0f;
  }
  return out;
}

// The training examples of a uint8 IDX file read through a memory map (`map_idx`), converted
// per batch: the training split of an IDX data set streamed rather than held in memory. Example
// k is the k-th training example in file order, as in memory, so both give the same batches.
class MappedIdxSource : public BatchSource {
 public:
  MappedIdxSource(torch::Tensor images, torch::Tensor labels, torch::Tensor index)
      : images_(std::move(images)), labels_(std::move(labels)), index_(std::move(index)) {}
  int64_t size() const override { return index_.numel(); }
  bool shuffled() const override { return true; }
  LoadResult load(uint64_t, int64_t, const torch::Tensor& positions) const override {
    const torch::Tensor rows = index_.index_select(0, positions.to(torch::kLong));
    return {{gather_images(images_, rows), labels_.index_select(0, rows)}, {}};
  }

 private:
  torch::Tensor images_, labels_, index_;
};

// A fixed seed for the validation split, independent of train.seed (see DataSplits).
constexpr uint64_t kSplitSeed = 20130712;

DataSplits load_idx(const DataOptions& options, bool with_test) {
  const std::filesystem::path dir = options.path.empty() ? kFashionMnistDir : options.path;
  // Decided from the header, before anything is read: the examples kept, as float32.
  const std::vector<int64_t> file_shape = idx_shape(find_part(dir, "train-images-idx3-ubyte"));
  int64_t floats = file_shape.empty() ? 0 : (options.limit > 0 ? std::min(options.limit, file_shape[0]) : file_shape[0]);
  for (std::size_t d = 1; d < file_shape.size(); ++d) floats *= file_shape[d];
  const bool stream = streams(options, floats * 4);
  // uint8 [N, H, W]: mapped when streamed, read whole otherwise.
  Dataset full = read_split_u8(dir, "train", /*mapped=*/stream);
  // Of the whole training file, not of the examples data.limit keeps.
  const int64_t classes = full.size() > 0 ? full.labels.max().item<int64_t>() + 1 : 0;
  if (options.limit > 0 && options.limit < full.size()) {
    full = {full.inputs.narrow(0, 0, options.limit), full.labels.narrow(0, 0, options.limit).clone()};
  }
  const int64_t n = full.size();
  const auto n_val = static_cast<int64_t>(static_cast<double>(n) * options.validation_fraction);
  if (n - n_val < 1) throw Error(fmt::format("data: {} training examples leave none to train on", n));

  DataSplits splits;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(kSplitSeed);
  const torch::Tensor order = torch::randperm(n, generator, torch::kLong);
  // Keep the training examples in file order: the split is a choice of examples, not a shuffle.
  const torch::Tensor train_index = std::get<0>(order.narrow(0, n_val, n - n_val).sort());
  const torch::Tensor val_index = std::get<0>(order.narrow(0, 0, n_val).sort());
  splits.validation = {gather_images(full.inputs, val_index), full.labels.index_select(0, val_index)};
  if (stream) {
    splits.stream = std::make_shared<MappedIdxSource>(full.inputs, full.labels, train_index);
  } else {
    splits.train = {gather_images(full.inputs, train_index), full.labels.index_select(0, train_index)};
  }
  if (with_test) {
    splits.test = read_split(dir, "t10k");
    const auto test_shape = splits.test.inputs.sizes().slice(2), train_shape = full.inputs.sizes().slice(1);
    if (test_shape != train_shape) {
      throw Error(fmt::format("{}: the test images are {}x{}, the training images {}x{}; they must be the same size",
                              find_part(dir, "t10k-images-idx3-ubyte").string(), test_shape[0], test_shape[1],
                              train_shape[0], train_shape[1]));
    }
    if (splits.test.size() > 0 && splits.test.labels.max().item<int64_t>() >= classes) {
      throw Error(fmt::format("{}: label {} is not a class of the training labels (0 to {})",
                              find_part(dir, "t10k-labels-idx1-ubyte").string(),
                              splits.test.labels.max().item<int64_t>(), classes - 1));
    }
  }
  splits.spec.shape = {1, full.inputs.size(1), full.inputs.size(2)};
  return splits;
}

}  // namespace

torch::Tensor orient_images(const torch::Tensor& images, const torch::Tensor& orientations) {
  TORCH_CHECK(images.dim() == 4 && orientations.dim() == 1 && orientations.size(0) == images.size(0),
              "orient_images: images [B, C, H, W] and one orientation an image");
  const torch::Tensor code = orientations.to(images.device(), torch::kLong).view({-1, 1, 1, 1});
  const auto has = [&](int64_t bit) { return code.bitwise_and(bit).ne(0); };
  torch::Tensor out = torch::where(has(1), images.flip(-1), images);
  out = torch::where(has(2), out.flip(-2), out);
  if (has(4).any().item<bool>()) {
    TORCH_CHECK(images.size(2) == images.size(3), "orient_images: a transposed image must be square");
    out = torch::where(has(4), out.transpose(-1, -2), out);
  }
  return out.contiguous();
}

bool orientable(const std::string& augment, c10::IntArrayRef example) {
  return augment == "none" || (example.size() == 3 && (augment != "dihedral" || example[1] == example[2]));
}

bool streams(const DataOptions& options, int64_t float_bytes) {
  return options.source == "stream" || (options.source == "auto" && float_bytes > kInMemoryBytes);
}

int64_t DataSplits::train_size() const { return stream ? stream->size() : train.size(); }

Dataset DataSplits::train_sample(int64_t limit) const {
  if (!stream) return train;
  return stream->load(0, 0, torch::arange(std::min(limit, stream->size()))).data;
}

DataSplits load_data(const DataOptions& options, bool with_test) {
  DataSplits splits = options.dataset == "images" ? load_image_folder(options, with_test) : load_idx(options, with_test);
  splits.spec.min = 0.0;
  splits.spec.max = 1.0;
  splits.spec.peak = 1.0;
  if (options.center) {
    splits.mean = splits.train.inputs.mean(0, /*keepdim=*/true);
    for (Dataset* d : {&splits.train, &splits.validation, &splits.test}) {
      if (d->inputs.defined()) d->inputs.sub_(splits.mean);
    }
    splits.spec.min = -splits.mean.max().item<double>();
    splits.spec.max = 1.0 - splits.mean.min().item<double>();
  }
  if (options.standardize) {
    splits.mean = splits.train.inputs.mean(0, /*keepdim=*/true);
    const torch::Tensor deviation = splits.train.inputs.std(0, /*unbiased=*/false, /*keepdim=*/true);
    splits.deviation = torch::where(deviation > 1e-6, deviation, torch::ones_like(deviation));
    for (Dataset* d : {&splits.train, &splits.validation, &splits.test}) {
      if (d->inputs.defined()) d->inputs.sub_(splits.mean).div_(splits.deviation);
    }
    splits.spec.min = (-splits.mean / splits.deviation).min().item<double>();
    splits.spec.max = ((1.0 - splits.mean) / splits.deviation).max().item<double>();
    splits.spec.standardized = true;
  }
  return splits;
}

Batches::Batches(const Dataset& data, int64_t batch_size, torch::Tensor order)
    : data_(data), batch_size_(batch_size), order_(std::move(order)) {
  TORCH_CHECK(batch_size_ > 0, "batch size must be positive");
  count_ = (order_.numel() + batch_size_ - 1) / batch_size_;
}

std::pair<int64_t, int64_t> shard_of(int64_t n, int part, int parts) {
  const int64_t base = n / parts, extra = n % parts;
  const int64_t start = part * base + std::min<int64_t>(part, extra);
  return {start, base + (part < extra ? 1 : 0)};
}

int64_t Batches::count(int64_t i) const { return std::min(batch_size_, order_.numel() - i * batch_size_); }

torch::Tensor Batches::indices(int64_t i, int part, int parts) const {
  const auto [start, length] = shard_of(count(i), part, parts);
  return order_.narrow(0, i * batch_size_ + start, length);
}

torch::Tensor Batches::inputs(int64_t i, int part, int parts) const {
  return data_.inputs.index_select(0, indices(i, part, parts));
}

Dataset Batches::at(int64_t i, int part, int parts) const { return data_.select(indices(i, part, parts)); }

}  // namespace torchae
