#include "torchae/eval/frechet.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/eval/metrics.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <cmath>

namespace torchae {

namespace fs = std::filesystem;

FashionNetImpl::FashionNetImpl()
    : conv1_(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)))),
      conv2_(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))),
      hidden_(register_module("hidden", torch::nn::Linear(64 * 7 * 7, kFeatures))),
      out_(register_module("out", torch::nn::Linear(kFeatures, 10))),
      dropout_(register_module("dropout", torch::nn::Dropout(0.3))) {}

torch::Tensor FashionNetImpl::features(const torch::Tensor& images) {
  torch::Tensor h = torch::max_pool2d(torch::relu(conv1_(images.view({-1, 1, 28, 28}))), 2);
  h = torch::max_pool2d(torch::relu(conv2_(h)), 2);
  return torch::relu(hidden_(h.flatten(1)));
}

torch::Tensor FashionNetImpl::forward(const torch::Tensor& images) { return out_(dropout_(features(images))); }

FashionNet train_fashion_net(const DataSplits& data, const FashionNetTraining& options,
                             const std::function<void(int64_t, double, double)>& progress) {
  if (data.spec.shape != std::vector<int64_t>{1, 28, 28} || !data.train.labels.defined()) {
    throw Error("fd-net: the feature network trains on labelled 1x28x28 images (Fashion-MNIST)");
  }
  torch::manual_seed(options.seed);
  FashionNet net;
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(options.lr));
  auto shuffle = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  for (int64_t epoch = 1; epoch <= options.epochs; ++epoch) {
    // Cosine schedule over the epochs, from lr down to 0 (the last epoch at a small rate).
    const double lr = 0.5 * options.lr * (1.0 + std::cos(M_PI * static_cast<double>(epoch - 1) / options.epochs));
    static_cast<torch::optim::AdamOptions&>(optimizer.param_groups().front().options()).lr(lr);
    const Batches batches(data.train, options.batch_size, torch::randperm(data.train.size(), shuffle, torch::kLong));
    double loss_sum = 0.0;
    for (int64_t i = 0; i < batches.size(); ++i) {
      const Dataset batch = batches.at(i);
      optimizer.zero_grad();
      const torch::Tensor loss = torch::cross_entropy_loss(net->forward(batch.inputs), batch.labels);
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
    }
    if (progress) {
      net->eval();
      const double accuracy = classification_accuracy([&](const torch::Tensor& x) { return net->forward(x); },
                                                      data.validation);
      net->train();
      progress(epoch, loss_sum / static_cast<double>(batches.size()), accuracy);
    }
  }
  net->eval();
  return net;
}

void save_fashion_net(FashionNet& net, const fs::path& path) {
  write_atomically(path, [&](std::ostream& out) { torch::save(net, out); });
}

FashionNet load_fashion_net(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(fmt::format("{}: no such file (the fd_fashion feature network)", path.string()));
  FashionNet net;
  try {
    torch::load(net, path.string());
  } catch (const c10::Error& e) {
    throw Error(fmt::format("{}: not the fd_fashion feature network: {}", path.string(), e.what_without_backtrace()));
  }
  net->eval();
  return net;
}

fs::path shipped_fashion_net_path() {
  const fs::path source = fs::path(TORCHAE_SOURCE_FD_NET);
  const fs::path installed = fs::path(TORCHAE_INSTALLED_FD_NET);
  std::error_code ec;
  if (fs::exists(source, ec)) return source;
  if (fs::exists(installed, ec)) return installed;
  throw Error(fmt::format("fd_fashion: the feature network is neither at {} nor at {}", source.string(),
                          installed.string()));
}

FeatureMoments FeatureMoments::of(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 2 && features.size(0) >= 2, "FeatureMoments::of: expected [N >= 2, D] features");
  const torch::Tensor x = features.to(torch::kFloat64);
  const torch::Tensor mean = x.mean(0);
  const torch::Tensor centred = x - mean;
  return {mean, centred.t().mm(centred) / static_cast<double>(x.size(0) - 1)};
}

namespace {

// The square root of a symmetric positive semi-definite matrix.
torch::Tensor sqrt_psd(const torch::Tensor& m) {
  auto [values, vectors] = torch::linalg_eigh(m, "L");
  return vectors.mm(torch::diag(values.clamp_min(0).sqrt())).mm(vectors.t());
}

}  // namespace

double frechet_distance(const FeatureMoments& a, const FeatureMoments& b) {
  TORCH_CHECK(a.mean.sizes() == b.mean.sizes(), "frechet_distance: features of different widths");
  const torch::Tensor root_a = sqrt_psd(a.covariance);
  torch::Tensor middle = root_a.mm(b.covariance).mm(root_a);
  middle = 0.5 * (middle + middle.t());  // symmetric up to rounding; make it exactly so
  const double cross = torch::linalg_eigvalsh(middle, "L").clamp_min(0).sqrt().sum().item<double>();
  const double means = (a.mean - b.mean).pow(2).sum().item<double>();
  return means + a.covariance.trace().item<double>() + b.covariance.trace().item<double>() - 2.0 * cross;
}

torch::Tensor fashion_features(FashionNet& net, const torch::Tensor& images, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  net->eval();
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    const int64_t n = std::min(batch_size, images.size(0) - start);
    parts.push_back(net->features(images.narrow(0, start, n).to(torch::kCPU, torch::kFloat32).clamp(0, 1)));
  }
  return torch::cat(parts);
}

torch::Tensor laplacian_variance(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 1, "laplacian_variance: expected [N, 1, H, W] images");
  const torch::Tensor kernel =
      torch::tensor({0.0, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0}, images.options()).view({1, 1, 3, 3});
  return torch::conv2d(images, kernel).flatten(1).var(1);
}

Json evaluate_sample_quality(Generative& model, const DataSplits& data, FashionNet& net, int64_t samples) {
  if (data.spec.shape != std::vector<int64_t>{1, 28, 28} || data.mean.defined()) {
    throw Error("fd_fashion: needs uncentred 1x28x28 images in [0, 1] (Fashion-MNIST)");
  }
  constexpr uint64_t kSampleSeed = 20140108;  // a fixed seed: a model always gets the same draw
  torch::NoGradGuard no_grad;
  const Dataset train_examples = data.train_sample(samples);
  const int64_t n = std::min({samples, data.test.size(), train_examples.size()});
  if (n < 2) throw Error(fmt::format("fd_fashion: needs at least 2 samples, test and training images, got {}", n));
  torch::manual_seed(kSampleSeed);
  std::vector<torch::Tensor> parts;
  for (int64_t done = 0; done < n; done += 1000) parts.push_back(model.sample(std::min<int64_t>(1000, n - done)).cpu());
  const torch::Tensor generated_images = torch::cat(parts).clamp(0, 1);
  const torch::Tensor test_images = data.test.inputs.narrow(0, 0, n);
  const FeatureMoments test = FeatureMoments::of(fashion_features(net, test_images));
  const FeatureMoments generated = FeatureMoments::of(fashion_features(net, generated_images));
  const FeatureMoments train = FeatureMoments::of(fashion_features(net, train_examples.inputs.narrow(0, 0, n)));
  return {{"fd_fashion", frechet_distance(generated, test)},
          {"fd_fashion_reference", frechet_distance(train, test)},
          {"fd_fashion_samples", n},
          {"sharpness_samples", laplacian_variance(generated_images).mean().item<double>()},
          {"sharpness_test", laplacian_variance(test_images).mean().item<double>()}};
}

}  // namespace torchae
