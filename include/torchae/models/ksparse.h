#pragma once

#include "torchae/models/backbone.h"

namespace torchae {

/// Options for `KSparse`.
struct KSparseOptions {
  explicit KSparseOptions(UndercompleteOptions backbone);

  /// The encoder and decoder (by default, as in the paper: one linear layer, tied weights).
  TORCH_ARG(UndercompleteOptions, backbone);
  /// Code units kept per example.
  TORCH_ARG(int64_t, k) = 25;
  /// `encode` in eval mode keeps round(encode_alpha * k) units, for features.
  TORCH_ARG(double, encode_alpha) = 3.0;
  /// Anneal k linearly from this value down to k (0: no annealing).
  TORCH_ARG(int64_t, anneal_from) = 0;
  /// ... over this fraction of the training epochs.
  TORCH_ARG(double, anneal_fraction) = 0.5;
};

/// Keeps the k largest entries of each row of `code` and zeroes the rest; the gradient flows
/// through the kept entries only.
torch::Tensor keep_top_k(const torch::Tensor& code, int64_t k);

/// The k-sparse autoencoder (Makhzani & Frey, "k-Sparse Autoencoders", ICLR 2014): a linear
/// code of which only the k largest units per example are kept.
class KSparseImpl : public BackboneAutoencoder<KSparseImpl> {
 public:
  explicit KSparseImpl(KSparseOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  Output forward(const torch::Tensor& input) override;
  /// k units in training mode; round(encode_alpha * k) in eval mode.
  torch::Tensor encode(const torch::Tensor& input) override;
  Losses loss(const torch::Tensor& target, const Output& output) override;
  void set_progress(int64_t epoch, int64_t epochs) override;
  /// Exports `keep_top_k(h, k)` too: `forward` keeps k units, `encode` encode_alpha * k.
  void script(ScriptModel& script) const override;

  /// The k in force (annealed while training).
  int64_t current_k() const { return current_k_; }
  /// The k of epoch `epoch` (0-based) of `epochs` under the annealing schedule.
  int64_t k_at(int64_t epoch, int64_t epochs) const;

  KSparseOptions options;

 private:
  /// Units `encode` keeps in eval mode: round(encode_alpha * k), at most the code width.
  int64_t feature_units() const;

  int64_t current_k_ = 0;
};

TORCH_MODULE(KSparse);

}  // namespace torchae
