#pragma once

#include "torchae/data/dataset.h"
#include "torchae/data/image_io.h"

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

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
/// `list_images` (the 10th, 20th, ...). Names not in the folder are an Error.
std::vector<std::filesystem::path> held_out_images(const std::filesystem::path& dir,
                                                   const std::vector<std::string>& names);

/// The splits of an image folder (`data.dataset` "images"), uncentred: training and
/// validation patches cut at random from the images that are not held out, test patches tiled
/// from the held-out ones (see DataOptions). `load_data` calls it.
DataSplits load_image_folder(const DataOptions& options, bool with_test);

}  // namespace torchae
