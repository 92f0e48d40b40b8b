#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"

#include <torch/types.h>

#include <string>
#include <vector>

namespace torchae {

/// The corruptions of Vincent et al. (JMLR 2010, section 4.2), and those of image restoration.
enum class CorruptionKind {
  none,
  /// Additive isotropic Gaussian noise of standard deviation `level`.
  gaussian,
  /// A fraction `level` of each example's components, chosen at random, set to 0.
  masking,
  /// A fraction `level` of each example's components set to the data's minimum or maximum,
  /// each with probability 1/2.
  salt_pepper,
  /// Images [C, H, W]: a random mask of scratches, blocks and text covering about a fraction
  /// `level` of each image (`random_mask`), set to 0 in every channel (for inpainting).
  inpaint,
  /// Colour images [3, H, W]: each replaced by its luminance in all three channels (for
  /// colourisation).
  gray,
};

CorruptionKind parse_corruption(const std::string& name);
std::string to_string(CorruptionKind kind);
const std::vector<std::string>& corruption_names();

/// A reusable corruption: any family can hold one and apply it to its input.
struct CorruptionOptions {
  CorruptionKind kind = CorruptionKind::none;
  /// sigma for gaussian, the corrupted fraction for masking and salt_pepper.
  double level = 0.0;
  /// Values used by salt_pepper (the data's range).
  double min = 0.0;
  double max = 1.0;
  /// Clip the corrupted input to [min, max], as an image file would hold it.
  bool clip = false;
  /// gaussian: draw each example's sigma uniformly from [0, level] (a blind denoiser, as
  /// DnCNN-B), instead of `level` for all.
  bool blind = false;

  /// Reads `corruption` and `level` (and takes min/max from `data`). `default_kind` and
  /// `default_level` are the family's defaults.
  static CorruptionOptions from(OptionReader& reader, const DataSpec& data, const std::string& default_kind,
                                double default_level);
};

/// A corrupted batch and where it was corrupted.
struct Corrupted {
  torch::Tensor input;
  /// Bool, x's shape: true on the components the corruption chose (all of them for gaussian,
  /// none for none).
  torch::Tensor mask;
  /// gaussian: each example's sigma [B] (before clipping); undefined for the others.
  torch::Tensor level;

  /// The same on `device` (its undefined parts stay so; no copy where they are there already).
  Corrupted to(const torch::Device& device) const;
  /// Examples [start, start + length) (views; its undefined parts stay so).
  Corrupted narrow(int64_t start, int64_t length) const;
};

/// The standard deviation of white Gaussian noise in images [B, C, H, W] (sides of at least 2),
/// one an image [B], by principal components of patches (Chen, Zhu & Heng, ICCV 2015): the
/// eigenvalues of the covariance of the image's C x 5 x 5 patches (smaller on images of 5 pixels
/// or fewer a side; about 65,536 patches, on a grid), in descending order; the noise's variance
/// is the mean of the smallest ones from the first index where that mean is also their median.
/// Texture lies in the leading components, so fine texture does not count as noise (as it does
/// for the wavelet median of Donoho & Johnstone). Patches holding the image's lowest or highest
/// value are left out while at least 8 C 25 others remain: clipping shrinks the noise where it
/// happens. Computed in float64, each image on its own. On small crops (48x48) of photographs
/// it reads a few percent low at high levels, where too few unclipped patches remain.
torch::Tensor estimate_noise_sigma(const torch::Tensor& images);
/// The noise level map [B, 1, H, W] of images [B, C, H, W] whose noise has sigma [B]: each
/// image's sigma at every pixel (a view, not a copy).
torch::Tensor noise_level_map(const torch::Tensor& sigma, const torch::Tensor& images);
/// TorchScript statements computing `estimate_noise_sigma` of `images` into `out`, with the same
/// operations (the same result, to the bit).
std::vector<std::string> script_estimate_noise_sigma(const std::string& images, const std::string& out);

/// Corrupts a batch [B, ...]; for masking and salt_pepper exactly round(level * D) components
/// of each example are chosen, D the number of components per example. Random numbers come
/// from LibTorch's default generators (the trainer seeds and checkpoints them).
Corrupted corrupt(const torch::Tensor& x, const CorruptionOptions& options);
/// The same with random numbers from the default CPU generator seeded `seed` for the call, and
/// the generator left as it was (the caller's stream of random numbers undisturbed): the same
/// corruption of the same CPU tensor every time. x must be on the CPU.
Corrupted corrupt_seeded(const torch::Tensor& x, const CorruptionOptions& options, uint64_t seed);

/// The shapes an inpainting mask is drawn with.
enum class MaskKind {
  /// Scratches, blocks and text, mixed.
  mixed,
  /// Random polylines, 1 to about s/24 pixels thick.
  scratches,
  /// Rectangles of a tenth to a quarter of s.
  blocks,
  /// Random capital letters, a sixth to a third of s tall.
  text,
};

MaskKind parse_mask_kind(const std::string& name);
const std::vector<std::string>& mask_kind_names();

/// A random inpainting mask [height, width] (bool, true where the image is missing), drawn by
/// OpenCV with shapes of `kind` until they cover at least `fraction` of the pixels, its
/// random numbers from LibTorch's default CPU generator. Shapes are sized by s = min(64, the
/// shorter side): a large image gets more holes, not larger ones.
torch::Tensor random_mask(int64_t height, int64_t width, MaskKind kind, double fraction);

}  // namespace torchae
