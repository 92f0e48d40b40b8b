#pragma once

#include "torchae/data/dataset.h"
#include "torchae/data/image_io.h"
#include "torchae/data/stream.h"

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace cv {
class Mat;
}

namespace torchae {

/// The natural images of Debian's opencv-doc package (baboon.jpg, fruits.jpg, ...).
extern const char* const kOpenCvSampleDir;

/// The image files of a folder (the extensions OpenCV reads: png, jpg, jpeg, bmp, tif, tiff,
/// webp, pgm, ppm, pbm), sorted by name; an Error when the folder has none.
std::vector<std::filesystem::path> list_images(const std::filesystem::path& dir);

/// `count` random `patch` x `patch` crops from `images` ([C, H, W] each, at least patch on
/// each side), each from an image drawn at random, drawn by a generator of fixed `seed`:
/// [count, C, patch, patch].
torch::Tensor random_patches(const std::vector<torch::Tensor>& images, int64_t patch, int64_t count, uint64_t seed);

/// The non-overlapping `patch` x `patch` tiles of `image` [C, H, W] in raster order (the
/// right and bottom remainders are left out): [n, C, patch, patch].
torch::Tensor tile_patches(const torch::Tensor& image, int64_t patch);

/// The held-out images of a folder: the names given, or, when none are, every tenth file of
/// `list_images` (the 10th, 20th, ...). Names not in the folder are an Error that names `given_by`,
/// where the names came from.
std::vector<std::filesystem::path> held_out_images(const std::filesystem::path& dir,
                                                   const std::vector<std::string>& names,
                                                   const std::string& given_by = "config: data.test_images");

/// What a streamed image folder does with a file it cannot read (`data.on_error`).
enum class OnBadFile { kSkip, kStop };

/// Random crops of a folder's images, decoded on demand (`data.source` "stream"): example j of
/// epoch e is a `patch` x `patch` crop of an image drawn, with the crop's place, by a generator
/// seeded from (stream seed, train seed, e, j), so each epoch's crops are fresh and every epoch
/// is reproducible, whichever loader thread cuts which crop. Decoded images are kept, as 8-bit
/// pixels, in a cache of at most `cache_bytes`, least recently used first out; memory is bounded
/// by the cache and the batches in flight, not by the folder. A file that cannot be read is
/// skipped (with one warning line naming it, the crop drawn again from another) or stops the
/// run, by `on_error`; an image smaller than the patch is passed over, as in memory. A folder whose
/// training files all fail is an Error.
///
///   ImageFolderStream crops(list_images("photos"), 3, 48, 20000, kSeed, 512 << 20, OnBadFile::kSkip);
///   LoadResult batch = crops.load(train_seed, epoch, torch::arange(128));  // [128, 3, 48, 48]
class ImageFolderStream : public BatchSource {
 public:
  ImageFolderStream(std::vector<std::filesystem::path> files, int64_t channels, int64_t patch, int64_t count,
                    uint64_t stream_seed, int64_t cache_bytes, OnBadFile on_error, bool skip_gray = false);
  int64_t size() const override { return count_; }
  bool shuffled() const override { return false; }
  LoadResult load(uint64_t seed, int64_t epoch, const torch::Tensor& positions) const override;
  /// Bytes of decoded pixels held in the cache now.
  int64_t cached_bytes() const;

 private:
  /// The decoded image of file f (from the cache, or read and cached); null when the file is
  /// unreadable (recorded, warned about once) or smaller than the patch.
  std::shared_ptr<const cv::Mat> image(std::size_t f, std::vector<std::string>& skipped) const;

  std::vector<std::filesystem::path> files_;
  int64_t channels_, patch_, count_;
  uint64_t stream_seed_;
  int64_t cache_bytes_;
  OnBadFile on_error_;
  bool skip_gray_;
  /// Per file: 0 not read yet, 1 usable, 2 unreadable, 3 smaller than the patch (or gray, with
  /// `skip_gray`).
  mutable std::unique_ptr<std::atomic<uint8_t>[]> state_;
  mutable std::atomic<std::size_t> unusable_{0};
  /// Warnings about unreadable files wait until a file has been read: of a folder whose files
  /// all fail, the error alone is said.
  mutable std::mutex warn_mutex_;
  mutable bool any_usable_ = false;
  mutable std::vector<std::string> pending_warnings_;
  void warn(const std::string& line) const;
  void found_usable() const;
  mutable std::mutex cache_mutex_;
  mutable std::list<std::size_t> recent_;  // most recently used first
  struct Cached {
    std::shared_ptr<const cv::Mat> image;
    std::list<std::size_t>::iterator place;
  };
  mutable std::unordered_map<std::size_t, Cached> cache_;
  mutable int64_t held_bytes_ = 0;
};

/// The splits of an image folder (`data.dataset` "images"), uncentred: training and
/// validation patches cut at random from the images that are not held out, test patches tiled
/// from the held-out ones (see DataOptions). `load_data` calls it.
DataSplits load_image_folder(const DataOptions& options, bool with_test);

}  // namespace torchae
