#include "torchae/eval/ais.h"

#include "torchae/core/error.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <cmath>
#include <limits>

namespace torchae {

torch::Tensor ais_schedule(int64_t temperatures) {
  TORCH_CHECK(temperatures >= 3, "ais_schedule: at least 3 temperatures");
  // Salakhutdinov & Murray 2008, section 4.2: 500 steps to 0.5, 4,000 to 0.9, 10,000 to 1.
  const int64_t first = std::max<int64_t>(1, temperatures * 500 / 14500);
  const int64_t second = std::max<int64_t>(1, temperatures * 4000 / 14500);
  const int64_t third = temperatures - first - second;
  const auto f64 = torch::TensorOptions(torch::kDouble);
  return torch::cat({torch::linspace(0.0, 0.5, first + 1, f64).narrow(0, 0, first),
                     torch::linspace(0.5, 0.9, second + 1, f64).narrow(0, 0, second),
                     torch::linspace(0.9, 1.0, third + 1, f64)});
}

AisEstimate ais_log_partition(AnnealingPath& path, int64_t temperatures, int64_t runs) {
  if (temperatures < kMinAisTemperatures) {
    throw Error(fmt::format("--ais-temperatures: {} is too few for a meaningful log Z (at least {}; Salakhutdinov & "
                            "Murray used {})",
                            temperatures, kMinAisTemperatures, kDefaultAisTemperatures));
  }
  if (runs < 2) throw Error(fmt::format("--ais-runs: {} run cannot give a spread (at least 2)", runs));
  torch::NoGradGuard no_grad;
  const torch::Tensor betas = ais_schedule(temperatures);
  const auto beta = betas.accessor<double, 1>();
  torch::Tensor state = path.sample_base(runs);
  torch::Tensor log_w = torch::zeros({runs}, state.options().dtype(torch::kDouble));
  for (int64_t k = 1; k <= temperatures; ++k) log_w += path.advance(state, beta[k - 1], beta[k]);
  log_w = log_w.cpu();

  AisEstimate estimate;
  estimate.runs = runs;
  estimate.temperatures = temperatures;
  estimate.log_weights = log_w;
  const double log_mean = (torch::logsumexp(log_w, 0) - std::log(static_cast<double>(runs))).item<double>();
  // The weights relative to their mean, r = w / mean(w): their deviation is the estimate's.
  const double relative_sd = torch::exp(log_w - log_mean).std(/*unbiased=*/true).item<double>();
  const double spread = 3.0 * relative_sd / std::sqrt(static_cast<double>(runs));
  estimate.log_z = path.base_log_partition() + log_mean;
  estimate.log_z_std_error = relative_sd / std::sqrt(static_cast<double>(runs));
  estimate.log_z_lower = spread < 1.0 ? estimate.log_z + std::log1p(-spread) : -std::numeric_limits<double>::infinity();
  estimate.log_z_upper = estimate.log_z + std::log1p(spread);
  return estimate;
}

Json evaluate_partition(Autoencoder& model, const Dataset& train, const Dataset& test, int64_t temperatures,
                        int64_t runs, const torch::Device& device, std::pair<int64_t, int64_t> part, uint64_t seed) {
  auto* annealable = dynamic_cast<Annealable*>(&model);
  if (!annealable) throw Error("evaluate_partition: this model has no partition function");
  torch::NoGradGuard no_grad;
  model.module().eval();
  // The base rates from at most 10,000 training examples: the marginals are all they give.
  const torch::Tensor sample = train.inputs.narrow(0, 0, std::min<int64_t>(10000, train.size())).to(device);
  std::unique_ptr<AnnealingPath> path = annealable->annealing_path(sample);
  if (!path) return Json::object();
  torch::manual_seed(seed);
  const AisEstimate z = ais_log_partition(*path, temperatures, runs);
  Json metrics = {{"ais_log_z", z.log_z},
                  {"ais_log_z_std_error", z.log_z_std_error},
                  {"ais_log_z_interval", {std::isfinite(z.log_z_lower) ? Json(z.log_z_lower) : Json(), z.log_z_upper}},
                  {"ais_runs", z.runs},
                  {"ais_temperatures", z.temperatures},
                  {"binarized", annealable->binarizes()}};
  if (const auto exact = annealable->exact_log_partition()) metrics["log_z_exact"] = *exact;
  if (!annealable->binarizes()) return metrics;  // a likelihood of binary images only

  // The test images binarised as `evaluate_likelihood` binarises them (the same seed).
  torch::Tensor images = torch::bernoulli(test.inputs, at::detail::createCPUGenerator(20080101));
  if (part.second >= 0) images = images.narrow(0, part.first, part.second);
  auto flips = at::detail::createCPUGenerator(seed + 1);
  const int64_t batch = 1000, d = images[0].numel();
  double log_p = 0.0, pseudo = 0.0;
  for (int64_t start = 0; start < images.size(0); start += batch) {
    const torch::Tensor x = images.narrow(0, start, std::min(batch, images.size(0) - start)).flatten(1);
    const torch::Tensor index = torch::randint(d, {x.size(0), 1}, flips, torch::kInt64);
    const torch::Tensor flipped = x.scatter(1, index, 1.0 - x.gather(1, index));
    const torch::Tensor lu = annealable->log_unnormalized(x.to(device)).to(torch::kDouble);
    log_p += lu.sum().item<double>();
    // P(x_i | x_-i) = p*(x) / (p*(x) + p*(x with x_i flipped)), the partition function cancelling.
    const torch::Tensor lu_flipped = annealable->log_unnormalized(flipped.to(device)).to(torch::kDouble);
    pseudo += (static_cast<double>(d) * torch::log_sigmoid(lu - lu_flipped)).sum().item<double>();
  }
  const auto n = static_cast<double>(images.size(0));
  metrics["test_log_likelihood_ais"] = log_p / n - z.log_z;
  metrics["test_log_likelihood_is_bound"] = annealable->bound();
  if (!annealable->bound()) metrics["test_pseudo_log_likelihood"] = pseudo / n;
  return metrics;
}

}  // namespace torchae
