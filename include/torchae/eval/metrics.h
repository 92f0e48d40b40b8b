#pragma once

#include "torchae/core/config.h"
#include "torchae/data/corruption.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"

#include <torch/types.h>

#include <functional>
#include <utility>

namespace torchae {

/// L-BFGS iterations of the linear probe.
inline constexpr int64_t kProbeIterations = 200;

/// Reconstruction error over a data set.
struct ReconstructionMetrics {
  /// Mean squared error per element (pixel).
  double mse = 0.0;
  /// Sum of squared errors per example, averaged over examples.
  double sse_per_example = 0.0;
  /// Mean over examples of 10 log10(peak^2 / MSE of the example), in dB.
  double psnr_db = 0.0;
};

/// Metrics of `reconstruct` (a batch of inputs to a batch of reconstructions, same shape) on
/// `data`, in batches.
ReconstructionMetrics reconstruction_metrics(const std::function<torch::Tensor(const torch::Tensor&)>& reconstruct,
                                             const Dataset& data, double peak, int64_t batch_size = 1000);

/// PSNR of each image of `a` against `b` ([N, ...], same shape): 10 log10(peak^2 / MSE), dB, [N],
/// capped as `reconstruction_metrics` caps it (100 dB + 20 log10 peak for a perfect image).
torch::Tensor psnr(const torch::Tensor& a, const torch::Tensor& b, double peak = 1.0);

/// SSIM of each image of `a` [N, C, H, W] against `b` (Wang et al., IEEE TIP 2004): Gaussian
/// window of 11 pixels and sigma 1.5 (smaller when an image is), K1 = 0.01, K2 = 0.03, dynamic
/// range `peak`, the map averaged over the valid window positions and over channels: [N].
torch::Tensor ssim(const torch::Tensor& a, const torch::Tensor& b, double peak = 1.0);

/// Principal component analysis, computed in double precision from the covariance matrix.
///
///   PCA pca = PCA::fit(train.inputs.flatten(1), 32);
///   torch::Tensor xhat = pca.reconstruct(x);
struct PCA {
  /// Per-feature mean, [D].
  torch::Tensor mean;
  /// Principal directions as orthonormal columns, largest variance first, [D, k].
  torch::Tensor components;
  /// Variances along the components, [k].
  torch::Tensor variances;

  /// The top k components of `data` [N, D]; with fewer examples than dimensions (N < D), from the
  /// N x N Gram matrix, and at most as many as the data has directions of non-zero variance.
  static PCA fit(const torch::Tensor& data, int64_t k);
  /// Projects onto the principal subspace and back; keeps x's shape and dtype.
  torch::Tensor reconstruct(const torch::Tensor& x) const;
};

/// The largest principal angle, in degrees, between the column spaces of a [D, k] and b [D, k]
/// (0: the same subspace).
double largest_principal_angle_degrees(const torch::Tensor& a, const torch::Tensor& b);

/// The baseline beside a model's reconstructions: PCA with as many components as the model's code
/// is wide, fitted on the training split (of a streamed one, a sample), or no baseline for a
/// model that is not `bottlenecked()` (its skips or residual path pass the input around its
/// code, whose width then bounds nothing: the fit would be work without meaning, and for a
/// fully convolutional code on large patches, minutes and gigabytes).
struct PcaBaseline {
  /// min(code size, input size); 0: no baseline.
  int64_t components = 0;
  /// Undefined when every component is kept (PCA is then the identity).
  PCA pca;

  /// The baseline of `model` on `data`.
  static PcaBaseline fit(const Autoencoder& model, const DataSplits& data);
  /// x through the baseline (the identity when every component is kept).
  torch::Tensor reconstruct(const torch::Tensor& x) const;
};

/// The evaluation of a trained autoencoder: its reconstruction metrics on the test set next
/// to those of `baseline` (fitted here when null), as JSON with keys test_mse,
/// test_sse_per_image, test_psnr_db, test_loss, pca_test_mse, pca_test_sse_per_image,
/// pca_test_psnr_db (the three left out without a baseline), code_size, pca_components, n_test.
Json evaluate_reconstruction(Autoencoder& model, const DataSplits& data, const torch::Device& device,
                             const PcaBaseline* baseline = nullptr);

/// Reconstructions of corrupted test images scored against the clean ones (`torchae eval
/// --corrupt KIND:LEVEL`): the test split corrupted once by `corruption` (random numbers from a
/// generator seeded 0, so every model meets the same corrupted images; the default generator is
/// left as it was), then the model's eval-mode reconstruction of each and PCA's (as in
/// `evaluate_reconstruction`; `baseline`, fitted here when null) compared with the clean image,
/// beside the corrupted input's own figures. JSON: corruption, level, as_trained, input_mse,
/// input_psnr_db, test_mse, test_psnr_db, pca_test_mse, pca_test_psnr_db (the last two left out
/// without a baseline). `as_trained` (a model trained on corrupted batches, `Corrupting`, and its
/// own corruption): the model is given each image as its training gave it, with where it was
/// corrupted (an inpainter's mask, a denoiser's sigma), through `forward_corrupted`; otherwise it
/// sees the corrupted images alone, through `forward`.
Json evaluate_corrupted(Autoencoder& model, const DataSplits& data, const CorruptionOptions& corruption,
                        const torch::Device& device, bool as_trained = false, const PcaBaseline* baseline = nullptr);

/// `--corrupt`'s text "KIND:LEVEL" (KIND a corruption name, LEVEL its sigma or fraction) for data
/// of `spec`, clipped to the data's range as an image file would hold it; an Error naming what is
/// wrong otherwise.
CorruptionOptions parse_corruption_spec(const std::string& text, const DataSpec& spec);

/// The fraction of `data` a classifier (inputs to class scores) labels right, in batches.
double classification_accuracy(const std::function<torch::Tensor(const torch::Tensor&)>& scores,
                               const Dataset& data, int64_t batch_size = 1000);

/// A linear probe: multinomial logistic regression fitted on `train` features by full-batch
/// L-BFGS (the features standardised with the training mean and deviation; L2 penalty as
/// scikit-learn's default C = 1, i.e. 0.5 ||W||^2 on the summed loss), then scored on each
/// split. Returns {train, validation, test} accuracy.
struct ProbeResult {
  double train = 0.0;
  double validation = 0.0;
  double test = 0.0;
};
ProbeResult linear_probe(const Dataset& train, const Dataset& validation, const Dataset& test,
                         int64_t max_iterations = kProbeIterations);

/// `torchae eval --probe`: the probe on the model's codes (encode, eval mode) and, for
/// reference, on the raw inputs, as JSON: probe_{train,validation,test}_accuracy,
/// probe_pixels_test_accuracy, probe_features, probe_iterations.
Json evaluate_probe(Autoencoder& model, const DataSplits& data, const torch::Device& device);

/// The importance samples per test image `torchae eval` uses by default.
inline constexpr int64_t kDefaultIwSamples = 1000;

/// The likelihood of a model with a `Likelihood` (an Error otherwise) on `test`, in eval mode,
/// in nats per image: test_elbo (one
/// sample of z per image, KL in closed form) and test_log_likelihood_is (the importance-sampled
/// log p(x) with `iw_samples` samples, Burda et al. 2016), with the number of samples. When the
/// model binarises its data, the test images are binarised once, x ~ Bernoulli(pixel), by a
/// generator of fixed seed, so that every model is scored on the same binary images.
/// `part`: the examples [first, first + length) of `test` (a rank's shard), binarized as part of the
/// whole test set; {0, -1}: all of it.
Json evaluate_likelihood(Autoencoder& model, const Dataset& test, int64_t iw_samples, const torch::Device& device,
                         std::pair<int64_t, int64_t> part = {0, -1});

}  // namespace torchae
