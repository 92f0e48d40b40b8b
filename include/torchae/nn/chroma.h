#pragma once

#include "torchae/export/script.h"

#include <torch/types.h>

#include <string>
#include <vector>

namespace torchae {

/// Colour as luma and chroma, ITU-R BT.601 as OpenCV's YCrCb and the `gray` corruption: an
/// RGB image in [0, 1] is its luma Y (`luma`) plus its chroma (Cb, Cr) = ((B - Y) / 1.772,
/// (R - Y) / 1.402), each in [-0.5, 0.5]. Images are [..., 3, H, W]; chroma [..., 2, H, W].
torch::Tensor chroma(const torch::Tensor& rgb);
/// The RGB image of luma `y` [..., 1, H, W] and `chroma` [..., 2, H, W] (not clipped).
torch::Tensor rgb_from_luma_chroma(const torch::Tensor& y, const torch::Tensor& chroma);
/// The same in TorchScript: an expression of the variables named `y` and `chroma`.
std::string script_rgb_from_luma_chroma(const std::string& y, const std::string& chroma);

/// The annealed mean of class scores `scores` [B, Q, h, w] at `temperature` (> 0) over the cells
/// whose centres `kernel` holds ([2, Q, 1, 1], `ChromaBins::kernel`): sum_q softmax(scores / T)_q
/// centre_q, [B, 2, h, w]. T = 1 is the mean, T -> 0 the mode.
torch::Tensor annealed_mean(const torch::Tensor& scores, const torch::Tensor& kernel, double temperature);
/// The colours a colouriser by classes makes of its scores: their annealed mean, upsampled
/// bilinearly to the size of the luma `y` [B, 1, H, W] where it is smaller, on that luma; RGB
/// [B, 3, H, W] clipped to [0, 1]. The model's reconstruction, and `restore --temperature` from
/// an archive's `net_forward` and `chroma_kernel`.
torch::Tensor colours_of_scores(const torch::Tensor& scores, const torch::Tensor& kernel, const torch::Tensor& y,
                                double temperature);

/// Colourfulness of an RGB image [3, H, W] in [0, 1] (Hasler & Suesstrunk 2003, in their 0-255
/// units): with rg = R - G and yb = (R + G) / 2 - B, sigma(rg, yb) + 0.3 mu(rg, yb), sigma and
/// mu the root sums of squares of the two channels' deviations and means. 0 for a gray image;
/// their scale calls about 33 "moderately", 59 "quite" and 82 "highly" colourful.
double colourfulness(const torch::Tensor& rgb);

/// Colour as classes (Zhang, Isola & Efros, ECCV 2016, "Colorful Image Colorization"): the
/// chroma plane cut into square cells of side `step`, keeping those whose centre some RGB
/// colour has (for some luma in [0, 1]); 288 cells at step 0.05. A colouriser predicts, for each
/// pixel, a distribution over the cells; its target is the pixel's chroma soft-encoded over its
/// 5 nearest cells, its loss is weighted against the commonest (desaturated) cells, and it is
/// decoded by the annealed mean, between the mode (vivid, sometimes wrong) and the mean (safe,
/// sepia).
class ChromaBins {
 public:
  explicit ChromaBins(double step);

  /// The cells' centres, [Q, 2] (Cb, Cr), float.
  const torch::Tensor& centres() const { return centres_; }
  int64_t size() const { return centres_.size(0); }
  /// The centres as the kernel of a 1x1 convolution, [2, Q, 1, 1]: what `annealed_mean` applies
  /// to the class probabilities (and what an export registers).
  torch::Tensor kernel() const { return centres_.t().reshape({2, size(), 1, 1}); }
  double step() const { return step_; }

  /// A soft encoding: for each pixel, the cells it is spread over and their weights.
  struct Soft {
    /// int64 [B, K, h, w]: the cells, nearest first (the first is the pixel's nearest cell).
    torch::Tensor cells;
    /// [B, K, h, w]: their weights, summing to 1 over K.
    torch::Tensor weights;
  };
  /// The soft encoding of `chroma` [B, 2, h, w] on each pixel's `neighbours` (at most 25)
  /// nearest cells, with Gaussian weights of a width of half a cell (the paper's 5 cells and
  /// sigma 5 on its grid of 10). The cells are looked for among the 5x5 squares of the grid
  /// around the pixel's, and among all Q only where the gamut's edge leaves too few of them
  /// within 2 cells (beyond which a square outside could be nearer): the same cells as a search
  /// of all Q, at the cost of 25 distances a pixel.
  Soft soft_encode(const torch::Tensor& chroma, int64_t neighbours = 5) const;
  /// The encoding as a distribution, [B, Q, h, w] (for checks; the loss gathers instead).
  torch::Tensor dense(const Soft& soft) const;
  /// Class weights [Q] from the cells' counts [Q] (any scale; all zero gives ones): the
  /// empirical distribution smoothed by a Gaussian of half a cell over the plane, mixed with the
  /// uniform one by `lambda` and inverted, w proportional to 1 / ((1 - lambda) p + lambda / Q),
  /// scaled so that the expected weight under p is 1.
  torch::Tensor class_weights(const torch::Tensor& counts, double lambda) const;
  /// The annealed mean of class scores `logits` [B, Q, h, w] over these cells (`torchae::annealed_mean`).
  torch::Tensor annealed_mean(const torch::Tensor& logits, double temperature) const;
  /// The same in TorchScript: statements setting `out` from `logits` (`kernel` is the
  /// expression of the registered `kernel()`).
  std::vector<std::string> script_annealed_mean(const std::string& out, const std::string& logits,
                                                const std::string& kernel, double temperature) const;

 private:
  double step_;
  int64_t side_;
  torch::Tensor centres_;
  /// The cell of each square of the side_ x side_ grid, -1 where the square's centre has no colour.
  torch::Tensor cell_of_square_;
};

}  // namespace torchae
