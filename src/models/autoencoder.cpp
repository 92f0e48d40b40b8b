#include "torchae/models/autoencoder.h"

#include "torchae/core/error.h"

#include <torch/nn/functional/loss.h>

#include <fmt/format.h>

namespace torchae {

namespace F = torch::nn::functional;

ReconstructionLoss parse_reconstruction_loss(const std::string& name) {
  if (name == "mse") return ReconstructionLoss::mse;
  if (name == "bce") return ReconstructionLoss::bce;
  throw Error(fmt::format("unknown reconstruction loss \"{}\" (known: mse, bce)", name));
}

std::string to_string(ReconstructionLoss loss) { return loss == ReconstructionLoss::mse ? "mse" : "bce"; }

torch::Tensor reconstruction_loss(ReconstructionLoss kind, const Output& output, const torch::Tensor& target) {
  switch (kind) {
    case ReconstructionLoss::mse: return F::mse_loss(output.reconstruction, target);
    case ReconstructionLoss::bce: return F::binary_cross_entropy_with_logits(output.logits, target);
  }
  TORCH_CHECK(false, "unreachable reconstruction loss");
}

torch::Tensor reconstruction_loss_elements(ReconstructionLoss kind, const Output& output,
                                           const torch::Tensor& target) {
  switch (kind) {
    case ReconstructionLoss::mse:
      return F::mse_loss(output.reconstruction, target, F::MSELossFuncOptions().reduction(torch::kNone));
    case ReconstructionLoss::bce:
      return F::binary_cross_entropy_with_logits(
          output.logits, target, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  }
  TORCH_CHECK(false, "unreachable reconstruction loss");
}

void Autoencoder::script(ScriptModel& /*script*/) const {
  throw Error("this model has no TorchScript description, so it cannot be exported");
}

}  // namespace torchae
