#pragma once

#include "torchae/models/autoencoder.h"

#include <torch/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace torchae {

/// Tiles images [N, C, H, W] (C = 1 or 3) into one grid of `columns` columns with a 1-pixel
/// border, each image scaled by itself to [0, 255] when `normalise_each` (for filters) or
/// clamped from [0, 1] otherwise (for data and reconstructions). Returns uint8 [rows*H', cols*W', C].
torch::Tensor image_grid(const torch::Tensor& images, int64_t columns, bool normalise_each);

/// Writes an image grid (uint8 [H, W, C]) as PNG, atomically; throws Error when it cannot.
void write_png(const std::filesystem::path& path, const torch::Tensor& grid);

/// The rows of the model's first affine layer (in registration order), each divided by its
/// norm and shaped like an input: W_i / ||W_i|| is the input of norm 1 that activates unit i
/// most. Throws Error when the model has no affine layer.
torch::Tensor first_layer_filters(Autoencoder& model, const std::vector<int64_t>& input_shape);

/// Rows of pictures for `torchae viz --what recon`: the inputs; the inputs as the model
/// corrupts them in training mode, when it does (denoising); the eval-mode reconstructions of
/// what the encoder saw. Each row is [N, C, H, W].
std::vector<torch::Tensor> reconstruction_rows(Autoencoder& model, const torch::Tensor& inputs);

/// Activation maximisation (Erhan et al. 2009): gradient ascent on the input to maximise code
/// unit `unit` in eval mode (through `encode_preactivation`), the input kept on the sphere
/// ||x|| = `norm`. Returns [1, ...].
torch::Tensor maximize_unit(Autoencoder& model, int64_t unit, const std::vector<int64_t>& input_shape, double norm,
                            int64_t steps = 300, double lr = 0.1);

/// Rows for `torchae viz --what interp`: for each pair (a_i, b_i), the image a_i, the decoded
/// points of the straight line from its code to b_i's at `steps` evenly spaced t in [0, 1],
/// and the image b_i, all in eval mode. Returns [N * (steps + 2), C, H, W], row by row.
torch::Tensor interpolation_rows(Autoencoder& model, const torch::Tensor& a, const torch::Tensor& b, int64_t steps);

/// Codes [N, d] as 2-D points: the codes themselves when d <= 2 (padded with zeros for d = 1),
/// else their projection onto the first two principal components.
torch::Tensor codes_to_plane(const torch::Tensor& codes);

/// A scatter plot of `points` [N, 2] coloured by `labels` [N] (0-9 distinct colours), with a
/// legend naming each label by `names` (where given), as an RGB image uint8 [size, size + 200, 3].
torch::Tensor scatter_plot(const torch::Tensor& points, const torch::Tensor& labels,
                           const std::vector<std::string>& names, int64_t size = 800);

/// Gibbs chains for `torchae viz --what chains`: a row per start of `starts` [R, C, H, W], a column
/// per entry of `steps` (increasing), each picture the visible means after that many steps of
/// block Gibbs sampling from the row's start (0: the start itself), `enlarged`, above them a strip
/// with the step counts written out. Returns the grid, uint8 [H', W', C].
torch::Tensor gibbs_chain_grid(GibbsSampler& sampler, const torch::Tensor& starts, const std::vector<int64_t>& steps);

/// A strip of `texts` above `grid` (an `image_grid` of images `width` pixels wide), each text
/// centred above its column: uint8 [14 + H, W, C].
torch::Tensor caption_columns(const torch::Tensor& grid, int64_t width, const std::vector<std::string>& texts);
/// One line of a `Plot`: points (x[i], y[i]); non-finite ones are left out. `dashed`: drawn
/// dashed (a validation curve beside its training one).
struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  bool dashed = false;
  /// The palette entry to draw it in (-1: the series' own position).
  int colour = -1;
};
/// A vertical line across a plot at `x`, named at its top: where a stage of training begins.
struct PlotMarker {
  double x = 0.0;
  std::string name;
};
/// A line plot, drawn as a PNG (`render_plot`) or as SVG (`plot_svg`) from the same layout.
struct Plot {
  std::vector<PlotSeries> series;
  std::string title, x_label, y_label;
  /// A logarithmic y axis (only positive values are drawn).
  bool log_y = false;
  std::vector<PlotMarker> markers;
  /// Axes of data within [0, 1] (a precision, a recall) span [0, 1]; else the data's range.
  bool unit_range = false;
};
/// The plot as RGB uint8 [size, size + 220, 3]: gridded axes with ticks spanning the data (whole
/// decades on a log axis), axis labels, a title, markers and a legend.
torch::Tensor render_plot(const Plot& plot, int64_t size = 600);
/// `text` made safe inside the text and attribute values of SVG and HTML.
std::string markup_escaped(const std::string& text);
/// The same plot as an SVG document (scalable, for the HTML report).
std::string plot_svg(const Plot& plot, int64_t size = 600);
/// A `Plot` of `series` as an image (`render_plot`), axes of data within [0, 1] spanning [0, 1].
torch::Tensor line_plot(const std::vector<PlotSeries>& series, const std::string& x_label, const std::string& y_label,
                        const std::string& title, int64_t size = 600);
/// Training curves from a run's metrics.jsonl: the training and validation loss per epoch, and each
/// named term as its own line (validation dashed), against the epochs of the whole run; the stages
/// of a staged run (a stack's pretraining of each layer, fine-tuning, classifier) marked where they
/// begin and named; a log y axis when the values span a decade or more. An Error when the run
/// has no metrics.
Plot training_curves(const std::filesystem::path& run_dir);

/// A picture made readable: `grid` (an `image_grid`, uint8 [H, W, C]) with a title band above
/// (`title`, then each of `notes` on its own line) and, left of it, `row_labels` centred on rows of
/// `row_pitch` pixels (the grid's image height + 1), the first `first_row` pixels below the grid's
/// top (a strip of captions above the rows). RGB uint8.
torch::Tensor titled(const torch::Tensor& grid, const std::string& title, const std::vector<std::string>& notes,
                     const std::vector<std::string>& row_labels = {}, int64_t row_pitch = 0, int64_t first_row = 0);
/// Images scaled up by whole factors (nearest neighbour) so that the larger side is at least
/// `at_least` pixels: a 28x28 image is drawn 84x84.
torch::Tensor enlarged(const torch::Tensor& images, int64_t at_least = 84);
/// Signed values [N, 1, H, W] drawn in a diverging colour map (blue negative, white 0, red
/// positive) on one symmetric scale [-m, m], m the largest magnitude, with a colour bar at the
/// right labelled with values; `columns` images a row. RGB uint8.
torch::Tensor signed_grid(const torch::Tensor& values, int64_t columns);

/// The step counts of a chains picture up to `most`: 0, 1, 2, 5, 10, 20, 50, ... and `most`.
std::vector<int64_t> chain_steps(int64_t most);

/// The precision-recall curves of Hamming-ball retrieval that `torchae eval --retrieval` wrote
/// to a run's eval.json (the model's codes and the baselines'), as a `line_plot`; an Error when
/// there are none.
torch::Tensor retrieval_curves(const std::filesystem::path& run_dir);
/// How many things `torchae viz --what <what>` draws when not told (filters 100, recon 10,
/// maximize 16, samples 100, interp 8, latent 5000, chains 10); an unknown `what` is an Error
/// listing the kinds.
int64_t default_viz_count(const std::string& what);

/// `torchae viz`: draws `what` for the trained run in `run_dir` into the PNG `out`:
/// "filters" (the first `count` first-layer filters), "recon" (`count` test images: inputs,
/// corrupted inputs where the model corrupts, reconstructions), "maximize" (the input that
/// maximises code unit `unit`, or units 0..count-1 when unit < 0), "samples" (`count` draws
/// from the prior of a generative family, decoded), "interp" (`count` rows of decoded straight
/// lines between the codes of test images) or "latent" (the codes of the first `count` test
/// images in the plane, coloured by label) or "chains" (a Boltzmann machine's Gibbs chains,
/// `gibbs_chain_grid`: `count` rows, the first half from random states, the rest from test
/// images) or "pr" (`retrieval_curves`) or "curves" (`training_curves`). Every picture but the
/// plots has a title naming the model and run, notes saying what is shown, row labels where rows
/// differ, and images enlarged to at least 84 pixels a side (`enlarged`). `gibbs_steps`: the Gibbs steps of a Boltzmann machine's samples, and the most steps
/// of its chains (0: the model's `sample_steps`).
void viz_run(const std::filesystem::path& run_dir, const std::string& what, const std::filesystem::path& out,
             int64_t unit, int64_t count, int64_t gibbs_steps = 0);
/// The picture `viz_run` writes, as RGB uint8 [H, W, 3] (`out`, where given, is checked first).
torch::Tensor viz_picture(const std::filesystem::path& run_dir, const std::string& what, int64_t unit, int64_t count,
                          int64_t gibbs_steps = 0, const std::filesystem::path& out = {});
/// What a `codes_to_plane` of `codes` [N, d] shows, in words: "the 2-d codes as they are", or
/// "PCA of the 32-d codes: components 1-2 of 32, 41.3% of the variance".
std::string projection_note(const torch::Tensor& codes);

}  // namespace torchae
