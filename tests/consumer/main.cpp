// Builds a family from the installed library's registry and runs one training step.
#include "torchae/models/registry.h"
#include "torchae/train/trainer.h"

#include <torch/torch.h>

#include <iostream>

int main() {
  const torchae::DataSpec spec{{1, 8, 8}, 0.0, 1.0, 1.0};
  auto built = torchae::build_model({{"family", "undercomplete"}, {"code_size", 4}, {"hidden", {16}}}, spec);
  torchae::TrainOptions options;
  options.device = "cpu";
  torchae::Trainer trainer(built.model, options);
  const torch::Tensor x = torch::rand({8, 1, 8, 8});
  const double loss = trainer.step(x).total.item<double>();
  std::cout << "consumer: " << torchae::Registry::builtin().families().size() << " families, loss " << loss << "\n";
  return loss > 0.0 ? 0 : 1;
}
