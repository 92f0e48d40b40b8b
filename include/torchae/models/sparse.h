#pragma once

#include "torchae/models/backbone.h"

namespace torchae {

enum class SparsityPenalty { l1, kl };

/// Options for `Sparse`.
struct SparseOptions {
  explicit SparseOptions(UndercompleteOptions backbone);

  /// The encoder and decoder.
  TORCH_ARG(UndercompleteOptions, backbone);
  /// `l1`: lambda * sum_j |h_j|; `kl`: beta * sum_j KL(rho || rho_hat_j) (needs a sigmoid code).
  TORCH_ARG(SparsityPenalty, penalty) = SparsityPenalty::l1;
  /// Weight of the L1 penalty.
  TORCH_ARG(double, lambda) = 1e-3;
  /// Weight of the KL penalty.
  TORCH_ARG(double, beta) = 0.1;
  /// Target mean activation of each code unit (KL form).
  TORCH_ARG(double, rho) = 0.05;
};

/// The sparse autoencoder: reconstruction plus a sparsity penalty on the code (Ng, CS294A).
///
///   Sparse ae(SparseOptions(UndercompleteOptions({1, 28, 28}, 64).code_activation(Activation::sigmoid))
///                 .penalty(SparsityPenalty::kl));
class SparseImpl : public BackboneAutoencoder<SparseImpl> {
 public:
  explicit SparseImpl(SparseOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  Losses loss(const torch::Tensor& target, const Output& output) override;

  SparseOptions options;
};

TORCH_MODULE(Sparse);

}  // namespace torchae
