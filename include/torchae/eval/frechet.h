#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"

#include <torch/torch.h>

#include <filesystem>
#include <functional>

namespace torchae {

/// The feature network of `fd_fashion`: a Fashion-MNIST classifier, conv(1->32, 3x3) ReLU
/// max-pool, conv(32->64, 3x3) ReLU max-pool, linear(3136->128) ReLU (the features), dropout,
/// linear(128->10). torchae trains it (`torchae fd-net`) and ships the weights
/// (models/fd_fashion/fashion_net.pt); FID's Inception network has no place here, so the
/// number is called what it is: a Frechet distance in this network's features, not FID.
class FashionNetImpl : public torch::nn::Module {
 public:
  FashionNetImpl();
  /// The 128 penultimate activations of images [N, 1, 28, 28] in [0, 1].
  torch::Tensor features(const torch::Tensor& images);
  /// Class scores (logits) [N, 10].
  torch::Tensor forward(const torch::Tensor& images);

  static constexpr int64_t kFeatures = 128;

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear hidden_{nullptr}, out_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(FashionNet);

/// How `train_fashion_net` trains: Adam, a cosine schedule, shuffled batches.
struct FashionNetTraining {
  int64_t epochs = 10;
  int64_t batch_size = 128;
  double lr = 1e-3;
  uint64_t seed = 0;
};

/// Trains a fresh FashionNet on `data.train` from `options.seed`; `progress` (if set) is called
/// after each epoch with the epoch, the mean training loss and the validation accuracy.
FashionNet train_fashion_net(const DataSplits& data, const FashionNetTraining& options,
                             const std::function<void(int64_t, double, double)>& progress = {});

/// Writes the network's weights (a LibTorch archive), atomically.
void save_fashion_net(FashionNet& net, const std::filesystem::path& path);
/// Reads weights written by `save_fashion_net`, in eval mode; a one-line Error otherwise.
FashionNet load_fashion_net(const std::filesystem::path& path);
/// The shipped network: models/fd_fashion/fashion_net.pt of the source tree, else of the
/// installed data directory (share/torchae/fd_fashion); an Error naming both when neither exists.
std::filesystem::path shipped_fashion_net_path();

/// Mean and covariance (float64, unbiased) of features [N, D].
struct FeatureMoments {
  torch::Tensor mean;
  torch::Tensor covariance;
  static FeatureMoments of(const torch::Tensor& features);
};

/// The Frechet distance between the Gaussians N(m1, C1) and N(m2, C2):
/// ||m1 - m2||^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), square roots by symmetric
/// eigendecomposition in float64 (negative rounding in the eigenvalues clipped to 0).
double frechet_distance(const FeatureMoments& a, const FeatureMoments& b);

/// The network's features of images [N, 1, 28, 28] (clamped to [0, 1]), in batches, on the CPU.
torch::Tensor fashion_features(FashionNet& net, const torch::Tensor& images, int64_t batch_size = 1000);

/// The variance of each image's 3x3 Laplacian response (valid positions), a standard measure of
/// focus: blur lowers it (Pech-Pacheco et al. 2000). Images [N, 1, H, W]; returns [N].
torch::Tensor laplacian_variance(const torch::Tensor& images);

/// The samples `torchae eval` scores by default: as many as Fashion-MNIST has test images.
inline constexpr int64_t kDefaultFdSamples = 10000;

/// `torchae eval` for a generative model on Fashion-MNIST: n = `samples` draws from the prior
/// (from a fixed seed; n is capped by the test and training splits' sizes), and as JSON
/// fd_fashion (the Frechet distance between their features and those of the first n test
/// images), fd_fashion_reference (the same distance for the first n training images: what a
/// perfect generator would score at this n; the distance is biased upwards at small n),
/// fd_fashion_samples (n), and sharpness_samples / sharpness_test (the mean Laplacian variance
/// of the samples and of those test images).
Json evaluate_sample_quality(Generative& model, const DataSplits& data, FashionNet& net,
                             int64_t samples = kDefaultFdSamples);

}  // namespace torchae
