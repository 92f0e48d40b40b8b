#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"

#include <torch/types.h>

#include <string>
#include <vector>

namespace torchae {

/// The corruptions of Vincent et al. (JMLR 2010, section 4.2).
enum class CorruptionKind {
  none,
  /// Additive isotropic Gaussian noise of standard deviation `level`.
  gaussian,
  /// A fraction `level` of each example's components, chosen at random, set to 0.
  masking,
  /// A fraction `level` of each example's components set to the data's minimum or maximum,
  /// each with probability 1/2.
  salt_pepper,
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
};

/// Corrupts a batch [B, ...]; for masking and salt_pepper exactly round(level * D) components
/// of each example are chosen, D the number of components per example.
Corrupted corrupt(const torch::Tensor& x, const CorruptionOptions& options);

}  // namespace torchae
