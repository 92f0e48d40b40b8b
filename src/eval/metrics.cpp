#include "torchae/eval/metrics.h"

#include "torchae/core/error.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

namespace torchae {

namespace {

// 10 log10(peak^2 / MSE). A perfect reconstruction would give infinite PSNR; an MSE of at
// least 1e-10 caps it at 100 dB + 20 log10 peak.
torch::Tensor psnr_of_mse(const torch::Tensor& mse, double peak) {
  return 10.0 * torch::log10(peak * peak / mse.clamp_min(1e-10));
}

}  // namespace

ReconstructionMetrics reconstruction_metrics(const std::function<torch::Tensor(const torch::Tensor&)>& reconstruct,
                                             const Dataset& data, double peak, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(data.size() > 0, "reconstruction_metrics: empty data set");
  double sse = 0.0;
  double psnr_sum = 0.0;
  const int64_t per_example = data.inputs[0].numel();
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    const torch::Tensor x = data.inputs.narrow(0, start, std::min(batch_size, data.size() - start));
    const torch::Tensor err = (reconstruct(x).to(torch::kFloat64) - x.to(torch::kFloat64)).flatten(1);
    const torch::Tensor example_sse = err.pow(2).sum(1).cpu();
    sse += example_sse.sum().item<double>();
    psnr_sum += psnr_of_mse(example_sse / static_cast<double>(per_example), peak).sum().item<double>();
  }
  const auto n = static_cast<double>(data.size());
  return {sse / (n * static_cast<double>(per_example)), sse / n, psnr_sum / n};
}

torch::Tensor psnr(const torch::Tensor& a, const torch::Tensor& b, double peak) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.dim() >= 2, "psnr: expected two batches of one shape");
  return psnr_of_mse((a.to(torch::kFloat64) - b.to(torch::kFloat64)).pow(2).flatten(1).mean(1), peak);
}

torch::Tensor ssim(const torch::Tensor& a, const torch::Tensor& b, double peak) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.dim() == 4, "ssim: expected two batches [N, C, H, W] of one shape");
  const int64_t c = a.size(1);
  const int64_t size = std::min<int64_t>({11, a.size(2), a.size(3)}) | 1;  // odd, at most 11
  const double sigma = 1.5 * static_cast<double>(size) / 11.0;
  const torch::Tensor r = torch::arange(size, torch::TensorOptions(torch::kFloat64).device(a.device())) - (size - 1) / 2.0;
  torch::Tensor g = torch::exp(-r.pow(2) / (2 * sigma * sigma));
  g = g / g.sum();
  const torch::Tensor window = torch::outer(g, g).expand({c, 1, size, size}).contiguous();
  // One depthwise convolution per statistic, 'valid' positions only, as Wang et al.'s code.
  auto filter = [&](const torch::Tensor& x) {
    return torch::conv2d(x, window, torch::Tensor(), at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, c);
  };
  const torch::Tensor x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  const torch::Tensor mx = filter(x), my = filter(y);
  const torch::Tensor sxx = filter(x * x) - mx * mx, syy = filter(y * y) - my * my, sxy = filter(x * y) - mx * my;
  const double c1 = std::pow(0.01 * peak, 2), c2 = std::pow(0.03 * peak, 2);
  const torch::Tensor map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
  return map.flatten(1).mean(1);
}

PCA PCA::fit(const torch::Tensor& data, int64_t k) {
  TORCH_CHECK(data.dim() == 2, "PCA::fit: expected [N, D] data");
  TORCH_CHECK(k >= 1 && k <= data.size(1), "PCA::fit: k must be in [1, D]");
  torch::NoGradGuard no_grad;
  // Centred in place, in a copy of its own: one [N, D] of doubles rather than two.
  const torch::Tensor centred = data.to(torch::kFloat64, /*non_blocking=*/false, /*copy=*/true);
  const torch::Tensor mean = centred.mean(0);
  centred.sub_(mean);
  const double scale = 1.0 / static_cast<double>(std::max<int64_t>(centred.size(0) - 1, 1));
  if (centred.size(0) >= centred.size(1)) {
    const torch::Tensor covariance = centred.t().mm(centred) * scale;
    auto [values, vectors] = torch::linalg_eigh(covariance, "L");  // ascending eigenvalues
    const int64_t d = values.size(0);
    return {mean, vectors.narrow(1, d - k, k).flip({1}).contiguous(), values.narrow(0, d - k, k).flip({0})};
  }
  // Fewer examples than dimensions: the D x D covariance (27,648 x 27,648 doubles, 6 GB, for
  // 96x96 colour patches) has rank below N. Its eigenvectors of non-zero eigenvalue are
  // centred^T u / sqrt(lambda / scale) for the eigenpairs (lambda, u) of the N x N Gram matrix.
  // Directions without variance are left out: the subspace has at most rank(data) dimensions.
  auto [values, vectors] = torch::linalg_eigh(centred.mm(centred.t()) * scale, "L");
  const int64_t n = values.size(0);
  const double floor = 1e-10 * std::max(values[n - 1].item<double>(), 0.0);
  const int64_t kept = std::min<int64_t>(k, (values > floor).sum().item<int64_t>());
  const torch::Tensor top = values.narrow(0, n - kept, kept).flip({0});
  const torch::Tensor components = centred.t().mm(vectors.narrow(1, n - kept, kept).flip({1})) / (top / scale).sqrt();
  return {mean, components.contiguous(), top};
}

torch::Tensor PCA::reconstruct(const torch::Tensor& x) const {
  const torch::Tensor flat = x.flatten(1).to(torch::kFloat64);
  const torch::Tensor projected = (flat - mean).mm(components).mm(components.t()) + mean;
  return projected.to(x.scalar_type()).view(x.sizes());
}

double largest_principal_angle_degrees(const torch::Tensor& a, const torch::Tensor& b) {
  // Björck & Golub (1973): the cosines of the principal angles are the singular values of
  // Qa^T Qb for orthonormal bases Qa, Qb; the largest angle belongs to the smallest value.
  const torch::Tensor qa = std::get<0>(torch::linalg_qr(a.to(torch::kFloat64)));
  const torch::Tensor qb = std::get<0>(torch::linalg_qr(b.to(torch::kFloat64)));
  const torch::Tensor cosines = torch::linalg_svdvals(qa.t().mm(qb));
  const double smallest = std::min(1.0, cosines.min().item<double>());
  return std::acos(smallest) * 180.0 / M_PI;
}

namespace {

// Examples of a streamed training set that eval takes in memory (the PCA baseline, the probe).
constexpr int64_t kStreamedSample = 60000;

}  // namespace

PcaBaseline PcaBaseline::fit(const Autoencoder& model, const DataSplits& data) {
  PcaBaseline baseline;
  if (!model.bottlenecked()) return baseline;
  torch::NoGradGuard no_grad;
  // Of a streamed training set, a sample as large as in-memory sets commonly are.
  const torch::Tensor train = data.train_sample(kStreamedSample).inputs.flatten(1);
  baseline.components = std::min(model.code_size(), train.size(1));
  // All components reconstruct exactly: no need to diagonalise a D x D covariance (6912 x
  // 6912 for 48x48 colour patches) to learn that PCA is the identity.
  if (baseline.components < train.size(1)) baseline.pca = PCA::fit(train, baseline.components);
  return baseline;
}

torch::Tensor PcaBaseline::reconstruct(const torch::Tensor& x) const {
  TORCH_CHECK(components > 0, "PcaBaseline::reconstruct: no baseline");
  return pca.mean.defined() ? pca.reconstruct(x) : x;
}

Json evaluate_reconstruction(Autoencoder& model, const DataSplits& data, const torch::Device& device,
                             const PcaBaseline* baseline) {
  const PcaBaseline fitted = baseline ? PcaBaseline() : PcaBaseline::fit(model, data);
  const PcaBaseline& pca = baseline ? *baseline : fitted;
  torch::NoGradGuard no_grad;
  model.module().eval();
  const double peak = data.spec.peak;
  double loss_sum = 0.0;
  const ReconstructionMetrics ae = reconstruction_metrics(
      [&](const torch::Tensor& x) {
        const torch::Tensor on_device = x.to(device);
        const Output out = model.forward(on_device);
        loss_sum += model.loss(on_device, out).total.item<double>() * static_cast<double>(x.size(0));
        return out.reconstruction.to(torch::kCPU);
      },
      data.test, peak);
  Json metrics{{"test_mse", ae.mse},
               {"test_sse_per_image", ae.sse_per_example},
               {"test_psnr_db", ae.psnr_db},
               {"test_loss", loss_sum / static_cast<double>(data.test.size())}};
  // The baseline keeps as many components as the code has units, all of them for an
  // overcomplete code (then PCA is lossless and the comparison says only that).
  if (pca.components > 0) {
    const ReconstructionMetrics baseline =
        reconstruction_metrics([&](const torch::Tensor& x) { return pca.reconstruct(x); }, data.test, peak);
    metrics.update({{"pca_test_mse", baseline.mse},
                    {"pca_test_sse_per_image", baseline.sse_per_example},
                    {"pca_test_psnr_db", baseline.psnr_db}});
  }
  metrics.update({{"code_size", model.code_size()}, {"pca_components", pca.components}, {"n_test", data.test.size()}});
  return metrics;
}

CorruptionOptions parse_corruption_spec(const std::string& text, const DataSpec& spec) {
  const auto colon = text.find(':');
  double level = 0.0;
  std::size_t used = 0;
  try {
    if (colon != std::string::npos) level = std::stod(text.substr(colon + 1), &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (colon == std::string::npos || used == 0 || used != text.size() - colon - 1 || !std::isfinite(level)) {
    throw Error(fmt::format("--corrupt \"{}\": expected KIND:LEVEL, e.g. gaussian:0.2 or masking:0.25 (kinds: {})", text,
                            fmt::join(corruption_names(), ", ")));
  }
  const Json section{{"corruption", text.substr(0, colon)}, {"level", level}, {"clip", true}};
  OptionReader reader(section, "--corrupt");
  const CorruptionOptions options = CorruptionOptions::from(reader, spec, "none", 0.0);
  reader.finish();
  if (options.kind == CorruptionKind::none) throw Error("--corrupt: none corrupts nothing; give a kind and a level");
  return options;
}

Json evaluate_corrupted(Autoencoder& model, const DataSplits& data, const CorruptionOptions& corruption,
                        const torch::Device& device, bool as_trained, const PcaBaseline* baseline) {
  auto* corrupting = dynamic_cast<Corrupting*>(&model);
  TORCH_CHECK(!as_trained || corrupting, "evaluate_corrupted: as_trained needs a model trained on corrupted batches");
  const PcaBaseline fitted = baseline ? PcaBaseline() : PcaBaseline::fit(model, data);
  const PcaBaseline& pca = baseline ? *baseline : fitted;
  torch::NoGradGuard no_grad;
  model.module().eval();
  const torch::Tensor clean = data.test.inputs;
  const Corrupted corrupted = corrupt_seeded(clean, corruption, 0);
  const double peak = data.spec.peak;
  const auto n = static_cast<double>(clean.size(0));
  const int64_t batch = 1000;
  double sse[3] = {0, 0, 0}, psnr_sum[3] = {0, 0, 0};
  for (int64_t start = 0; start < clean.size(0); start += batch) {
    const int64_t count = std::min(batch, clean.size(0) - start);
    const torch::Tensor x = clean.narrow(0, start, count);
    const Corrupted part = corrupted.narrow(start, count);
    const torch::Tensor& seen = part.input;
    const Output out = as_trained ? corrupting->forward_corrupted(part.to(device)) : model.forward(seen.to(device));
    const torch::Tensor outputs[3] = {seen, out.reconstruction.cpu(),
                                      pca.components > 0 ? pca.reconstruct(seen) : torch::Tensor()};
    for (int k = 0; k < (pca.components > 0 ? 3 : 2); ++k) {
      const torch::Tensor example_mse = (outputs[k].to(torch::kFloat64) - x.to(torch::kFloat64)).pow(2).flatten(1).mean(1);
      sse[k] += example_mse.sum().item<double>();
      psnr_sum[k] += psnr_of_mse(example_mse, peak).sum().item<double>();
    }
  }
  Json metrics{{"corruption", to_string(corruption.kind)}, {"level", corruption.level}, {"as_trained", as_trained},
               {"input_mse", sse[0] / n},                   {"input_psnr_db", psnr_sum[0] / n},
               {"test_mse", sse[1] / n},                    {"test_psnr_db", psnr_sum[1] / n}};
  if (pca.components > 0) metrics.update({{"pca_test_mse", sse[2] / n}, {"pca_test_psnr_db", psnr_sum[2] / n}});
  return metrics;
}

double classification_accuracy(const std::function<torch::Tensor(const torch::Tensor&)>& scores,
                               const Dataset& data, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(data.size() > 0 && data.labels.defined(), "classification_accuracy: needs labeled data");
  int64_t right = 0;
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    const int64_t n = std::min(batch_size, data.size() - start);
    const torch::Tensor predicted = scores(data.inputs.narrow(0, start, n)).argmax(1).cpu();
    right += predicted.eq(data.labels.narrow(0, start, n).cpu()).sum().item<int64_t>();
  }
  return static_cast<double>(right) / static_cast<double>(data.size());
}

ProbeResult linear_probe(const Dataset& train, const Dataset& validation, const Dataset& test,
                         int64_t max_iterations) {
  TORCH_CHECK(train.size() > 0 && train.labels.defined(), "linear_probe: needs labeled training data");
  const torch::Tensor x = train.inputs.flatten(1).to(torch::kFloat);
  const torch::Tensor mean = x.mean(0);
  // Constant features (dead units) are left at zero rather than divided by zero.
  const torch::Tensor deviation = x.std(0).clamp_min(1e-6);
  auto standardize = [&](const Dataset& d) { return (d.inputs.flatten(1).to(torch::kFloat).to(x.device()) - mean) / deviation; };
  const torch::Tensor features = standardize(train);
  const torch::Tensor labels = train.labels.to(x.device());
  const int64_t classes = labels.max().item<int64_t>() + 1;
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(x.device());
  torch::Tensor weight = torch::zeros({features.size(1), classes}, options).requires_grad_();
  torch::Tensor bias = torch::zeros({classes}, options).requires_grad_();
  // scikit-learn's LogisticRegression(C=1) minimises sum(CE) + 0.5 ||W||^2; per example:
  const double l2 = 0.5 / static_cast<double>(features.size(0));
  torch::optim::LBFGS lbfgs({weight, bias}, torch::optim::LBFGSOptions(1.0)
                                                .max_iter(max_iterations)
                                                .history_size(10)
                                                .line_search_fn("strong_wolfe"));
  lbfgs.step([&] {
    lbfgs.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(torch::addmm(bias, features, weight), labels) +
                         l2 * weight.pow(2).sum();
    loss.backward();
    return loss;
  });
  torch::NoGradGuard no_grad;
  auto accuracy = [&](const Dataset& d) {
    if (d.size() == 0) return 0.0;
    return classification_accuracy([&](const torch::Tensor& in) { return torch::addmm(bias, in, weight); },
                                   Dataset{standardize(d), d.labels});
  };
  return {accuracy(train), accuracy(validation), accuracy(test)};
}

Json evaluate_probe(Autoencoder& model, const DataSplits& data, const torch::Device& device) {
  model.module().to(device);
  auto codes = [&](const Dataset& d) {
    Dataset c = encode_dataset(model, d);
    c.inputs = c.inputs.flatten(1).to(torch::kCPU);
    return c;
  };
  const Dataset train = data.train_sample(kStreamedSample);
  const ProbeResult on_codes = linear_probe(codes(train), codes(data.validation), codes(data.test));
  const ProbeResult on_pixels = linear_probe(train, data.validation, data.test);
  return Json{{"probe_train_accuracy", on_codes.train},
              {"probe_validation_accuracy", on_codes.validation},
              {"probe_test_accuracy", on_codes.test},
              {"probe_pixels_test_accuracy", on_pixels.test},
              {"probe_features", model.code_size()},
              {"probe_iterations", kProbeIterations}};
}

Json evaluate_likelihood(Autoencoder& model, const Dataset& test, int64_t iw_samples, const torch::Device& device,
                         std::pair<int64_t, int64_t> part) {
  auto* likelihood = dynamic_cast<Likelihood*>(&model);
  if (!likelihood) throw Error("evaluate_likelihood: this model has no likelihood");
  torch::NoGradGuard no_grad;
  model.module().eval();
  torch::Tensor images = test.inputs;
  if (likelihood->binarizes()) {
    // Salakhutdinov & Murray 2008 binarised MNIST stochastically; a fixed seed makes the
    // test set one set of binary images.
    images = torch::bernoulli(images, at::detail::createCPUGenerator(20080101));
  }
  if (part.second >= 0) images = images.narrow(0, part.first, part.second);
  const int64_t batch = 100;
  double elbo_sum = 0.0, log_likelihood_sum = 0.0;
  for (int64_t start = 0; start < images.size(0); start += batch) {
    const torch::Tensor x = images.narrow(0, start, std::min(batch, images.size(0) - start)).to(device);
    elbo_sum += likelihood->elbo(x).sum().item<double>();
    log_likelihood_sum += likelihood->importance_log_likelihood(x, iw_samples).sum().item<double>();
  }
  const auto n = static_cast<double>(images.size(0));
  return Json{{"test_elbo", elbo_sum / n},
              {"test_log_likelihood_is", log_likelihood_sum / n},
              {"iw_samples", iw_samples},
              {"binarized", likelihood->binarizes()}};
}

}  // namespace torchae
