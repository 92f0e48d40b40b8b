#pragma once

#include "torchae/core/config.h"

#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torchae {

class BatchSource;

/// Loader threads for the machine: half its cores, at least 1 and at most 4 (the rest train).
int64_t default_loader_workers();

/// What a model needs to know about its input: one example's shape and the range of values.
struct DataSpec {
  /// Shape of one example, e.g. {1, 28, 28}.
  std::vector<int64_t> shape;
  /// Bounds of the values a model sees (after centring, if any).
  double min = 0.0;
  double max = 1.0;
  /// Dynamic range of the original data (the peak in PSNR): 1 for images in [0, 1].
  double peak = 1.0;
  /// Whether each feature has zero mean and unit variance over the training split
  /// (`data.standardize`), as Gaussian units of unit variance assume.
  bool standardized = false;

  int64_t numel() const;
};

/// A data set held in memory: inputs [N, ...] as one float tensor, labels [N] (int64, may be
/// undefined). Batches are taken by `index_select`, never by per-example collation.
struct Dataset {
  torch::Tensor inputs;
  torch::Tensor labels;

  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
  /// The examples at `index` (an int64 tensor), in that order.
  Dataset select(const torch::Tensor& index) const;
  /// The same data on `device` (a no-op when already there).
  Dataset to(const torch::Device& device) const;
};

/// The `data` section of the configuration.
struct DataOptions {
  /// "fashion-mnist" (Debian's dataset-fashion-mnist), "idx" (MNIST-format files at `path`) or
  /// "images" (a folder of images at `path`, by default opencv-doc's samples, cut into patches).
  std::string dataset = "fashion-mnist";
  /// idx: directory of train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
  /// and t10k-labels-idx1-ubyte, each raw or with .gz. images: the folder. Empty: the data
  /// set's default location.
  std::string path;
  /// Use only the first `limit` training examples, or patches (0: all).
  int64_t limit = 0;
  /// images: side of the square patches.
  int64_t patch = 48;
  /// images: patches cut at random from the training images, validation included.
  int64_t patches = 20000;
  /// images: 1 (gray) or 3 (colour, RGB).
  int64_t channels = 3;
  /// images: the held-out images, by file name; empty: every tenth file in name order. Their
  /// non-overlapping patches are the test split.
  std::vector<std::string> test_images;
  /// Fraction of the (limited) training set held out for validation.
  double validation_fraction = 0.1;
  /// Subtract the training split's per-feature mean from every split (data in memory only).
  bool center = false;
  /// Subtract the training split's per-feature mean and divide by its standard deviation (1 for a
  /// constant feature), in every split (data in memory only): for Gaussian units of unit variance.
  bool standardize = false;
  /// Where the training split lives: "memory" (one tensor, batches by index_select), "stream"
  /// (read on demand by loader threads: an IDX file through a memory map, an image folder as
  /// fresh random crops each epoch), or "auto": in memory up to `kInMemoryBytes` of float
  /// training data (and, for image folders, `kInMemoryFolderBytes` of files), streamed beyond.
  std::string source = "auto";
  /// Streamed: loader threads (0: each batch loaded on the training thread when needed).
  int64_t workers = default_loader_workers();
  /// Streamed: batches loaded ahead of the training step, at most.
  int64_t prefetch = 4;
  /// Streamed images: MiB of decoded images kept between batches (as 8-bit pixels).
  int64_t cache_mb = 512;
  /// Streamed images: a file that cannot be read mid-epoch is skipped with a warning ("skip")
  /// or stops the run ("stop").
  std::string on_error = "skip";
  /// Colour images: leave out of training the images whose three channels are equal (gray
  /// pictures stored as colour), which would teach a colouriser that the world is gray.
  bool skip_gray = false;

  static DataOptions from(OptionReader& reader);
  /// The section as `from` resolves it: what config.json holds for these options.
  Json to_json() const;
};

/// `data.source` "auto" keeps a training split of up to this many bytes of float32 in memory:
/// 1 GiB, about 340,000 28x28 images (Fashion-MNIST's 54,000 are 169 MB).
constexpr int64_t kInMemoryBytes = int64_t{1} << 30;
/// ... and an image folder whose training files take up to this many bytes on disk: 32 MiB.
/// In memory, the images are decoded as float: opencv-doc's sample photographs take 52 times
/// their size on disk that way (9.3 MB of PNG and JPEG files, 487 MB of float pixels).
constexpr int64_t kInMemoryFolderBytes = int64_t{32} << 20;

/// Whether `options` streams a training split of `float_bytes` (as float32 in memory).
bool streams(const DataOptions& options, int64_t float_bytes);

/// Training, validation and test splits of one data set. The validation split is drawn from
/// the training file by a fixed permutation (independent of train.seed, so that runs with
/// different seeds are validated on the same examples); the test file is only read for `eval`.
struct DataSplits {
  Dataset train;
  Dataset validation;
  Dataset test;  // empty unless requested
  DataSpec spec;
  /// The per-feature training mean that was subtracted (undefined unless centring or standardising).
  torch::Tensor mean;
  /// The per-feature training deviation the centred data was divided by (undefined unless
  /// standardising).
  torch::Tensor deviation;
  /// The training split when it is streamed (`data.source`); `train` is then empty.
  std::shared_ptr<const BatchSource> stream;

  /// Examples in the training split, streamed or not.
  int64_t train_size() const;
  /// The training split in memory, or up to `limit` examples of a streamed one (the first of
  /// its epoch 0, the same every time): for what needs training data at hand (a PCA baseline).
  Dataset train_sample(int64_t limit) const;
};

/// The default location of Fashion-MNIST: /usr/share/datasets/fashion-mnist.
extern const char* const kFashionMnistDir;

/// Loads the splits described by `options`; the test split only when `with_test`.
DataSplits load_data(const DataOptions& options, bool with_test);

/// Part `part` of `n` items split evenly over `parts` (the ranks of a data-parallel run), as
/// {start, length}: contiguous, the first `n % parts` parts one item longer.
std::pair<int64_t, int64_t> shard_of(int64_t n, int part, int parts);

/// `images` [B, C, H, W] with example b in orientation `orientations[b]` (int64, 0-7, on any
/// device): bit 0 mirrors it left to right, bit 1 turns it upside down, bit 2 then transposes it
/// (which needs H == W); the eight are the symmetries of the square, 0 the image as it is.
torch::Tensor orient_images(const torch::Tensor& images, const torch::Tensor& orientations);

/// Whether `train.augment` `augment` can orient examples of shape `example` (without the batch):
/// any, for "none"; [C, H, W] images for "flip"; square ones for "dihedral".
bool orientable(const std::string& augment, c10::IntArrayRef example);

/// The batches of one pass over a data set, in the order of `order` (a permutation, or
/// arange for a fixed order): batch i is one `index_select` of order[i*B : (i+1)*B]. The last
/// batch may be smaller. In a data-parallel run each rank takes part `part` of `parts` of every
/// batch (`shard_of`: contiguous, as even as can be), so that the ranks together see each batch
/// one process would.
class Batches {
 public:
  Batches(const Dataset& data, int64_t batch_size, torch::Tensor order);
  int64_t size() const { return count_; }
  /// The number of examples in batch i, all parts together.
  int64_t count(int64_t i) const;
  torch::Tensor inputs(int64_t i, int part = 0, int parts = 1) const;
  Dataset at(int64_t i, int part = 0, int parts = 1) const;

 private:
  torch::Tensor indices(int64_t i, int part, int parts) const;

  const Dataset& data_;
  int64_t batch_size_;
  torch::Tensor order_;
  int64_t count_;
};

}  // namespace torchae
