#include "torchae/models/autoencoder.h"

#include "torchae/core/error.h"
#include "torchae/nn/fused.h"

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

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
    case ReconstructionLoss::bce:
      // Output's contract: with logits, the reconstruction is their sigmoid.
      return output.reconstruction.defined()
                 ? binary_cross_entropy_from_logits(output.logits, output.reconstruction, target)
                 : F::binary_cross_entropy_with_logits(output.logits, target);
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

Losses classification_losses(const torch::Tensor& scores, const torch::Tensor& labels) {
  const torch::Tensor ce = F::cross_entropy(scores, labels);
  const torch::Tensor accuracy = scores.detach().argmax(1).eq(labels).to(torch::kFloat).mean();
  return {ce, {{"ce", ce}, {"accuracy", accuracy}}};
}

Output Autoencoder::reconstruct(const torch::Tensor& code) {
  Output out;
  out.code = code;
  out.reconstruction = decode(code);
  return out;
}

torch::Tensor Autoencoder::reconstruction_cost(const Output& output, const torch::Tensor& target) {
  return F::mse_loss(output.reconstruction, target);
}

Losses Autoencoder::supervised_loss(const Output& /*output*/, const torch::Tensor& /*labels*/) {
  throw Error("this model has no supervised objective");
}

Dataset encode_dataset(Autoencoder& model, const Dataset& data, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  torch::nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  const auto parameters = module.parameters();
  const torch::Device device = parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
  std::vector<torch::Tensor> codes;
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    const torch::Tensor x = data.inputs.narrow(0, start, std::min(batch_size, data.size() - start)).to(device);
    codes.push_back(model.encode(x));
  }
  module.train(was_training);
  return {codes.empty() ? torch::Tensor() : torch::cat(codes), data.labels};
}

void Autoencoder::script(ScriptModel& /*script*/) const {
  throw Error("this model has no TorchScript description, so it cannot be exported");
}

}  // namespace torchae
