#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"

#include <torch/types.h>

#include <utility>

namespace torchae {

/// Salakhutdinov & Murray's (2008) schedule: 14,500 inverse temperatures.
inline constexpr int64_t kDefaultAisTemperatures = 14500;
/// ... and 100 annealing runs.
inline constexpr int64_t kDefaultAisRuns = 100;
/// Fewer temperatures than this anneal too fast for the estimate to mean anything on a model of
/// real size: AIS refuses them.
inline constexpr int64_t kMinAisTemperatures = 1000;

/// The inverse temperatures 0 = b_0 < ... < b_K = 1 of an annealing run of `temperatures` (K)
/// steps, spaced as Salakhutdinov & Murray's 14,500: uniformly, the first 500/14,500 of them in
/// [0, 0.5], the next 4,000/14,500 in [0.5, 0.9], the rest in [0.9, 1]. [K + 1], double.
torch::Tensor ais_schedule(int64_t temperatures);

/// An AIS estimate of log Z.
struct AisEstimate {
  /// log Z = log Z_base + log mean(w), over the runs' importance weights w.
  double log_z = 0.0;
  /// The estimate's standard error in log space (delta method: sd(w) / (mean(w) sqrt(runs))).
  double log_z_std_error = 0.0;
  /// log(mean(w) -+ 3 sd(w) / sqrt(runs)), as Salakhutdinov & Murray report the spread; the
  /// lower end is -infinity when the interval reaches 0.
  double log_z_lower = 0.0;
  double log_z_upper = 0.0;
  int64_t runs = 0;
  int64_t temperatures = 0;
  /// The runs' log-weights, [runs], double.
  torch::Tensor log_weights;
};

/// Annealed importance sampling (Neal 2001) along `path`: `runs` chains from the base model
/// through the `temperatures` distributions of `ais_schedule`. Random numbers come from the
/// global generator. Throws Error when `temperatures` < kMinAisTemperatures or `runs` < 2.
///
///   auto path = rbm->annealing_path(train.inputs);
///   AisEstimate z = ais_log_partition(*path, 14500, 100);
AisEstimate ais_log_partition(AnnealingPath& path, int64_t temperatures, int64_t runs);

/// What `torchae eval` adds for a model with an `Annealable` likelihood, as JSON, in nats: AIS's
/// log Z (ais_log_z, ais_log_z_std_error, ais_log_z_interval, ais_runs, ais_temperatures) from the
/// base-rate model of `train`; then on `test` (binarised once, as `evaluate_likelihood` does, when
/// the model binarises), test_log_likelihood_ais (mean log p*(x) - log Z; a lower bound when the
/// model's is) and test_pseudo_log_likelihood (D log P(x_i | x_-i) for one random i per image);
/// log_z_exact where the model is small enough to sum over. `part`: a rank's shard of `test`, as
/// in `evaluate_likelihood`. The global generator is seeded (`seed`): every rank anneals alike.
/// Empty when the model has no annealing path (units AIS does not handle).
Json evaluate_partition(Autoencoder& model, const Dataset& train, const Dataset& test, int64_t temperatures,
                        int64_t runs, const torch::Device& device, std::pair<int64_t, int64_t> part = {0, -1},
                        uint64_t seed = 20080101);

}  // namespace torchae
