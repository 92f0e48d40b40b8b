// A research script that trains data-parallel with torchae's library: the same program runs as one
// process, or as N ranks under PyTorch's torchrun, each on its part of every batch.
//
//   train_data_parallel RUN_DIR [EXAMPLES]                     one process
//   torchrun --standalone --nproc_per_node 2 -r 2 -t 2 --no_python train_data_parallel RUN_DIR
//
// (Debian 12's torchrun needs -r and -t; other releases do not. --standalone's rendezvous is on
// port 29400: for two runs at once, give each --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:PORT.) The one call that makes it
// data-parallel is join_process_group(); the rest is the plain single-process script. It prints
// the validation loss of the trained model, which is the same either way.

#include "torchae/core/runtime.h"
#include "torchae/data/dataset.h"
#include "torchae/models/registry.h"
#include "torchae/train/distributed.h"
#include "torchae/train/trainer.h"

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: train_data_parallel RUN_DIR [EXAMPLES]\n";
    return 2;
  }
  torchae::ensure_fast_runtime(argv);
  try {
    // Null when torchrun did not start this process: then it trains alone.
    std::shared_ptr<torchae::ProcessGroup> group = torchae::join_process_group();

    torchae::DataOptions data_options;  // Fashion-MNIST
    data_options.limit = argc > 2 ? std::stoll(argv[2]) : 6000;
    torch::manual_seed(0);  // the same initial weights on every rank (rank 0's are broadcast anyway)
    const torchae::DataSplits data = torchae::load_data(data_options, /*with_test=*/false);
    const torchae::BuiltModel built =
        torchae::build_model({{"family", "undercomplete"}, {"hidden", {128}}, {"code_size", 16}}, data.spec);

    torchae::TrainOptions options;
    options.epochs = 2;
    options.batch_size = 100;  // the global batch: each of N ranks steps on 100 / N examples
    options.device = "cpu";
    options.progress = "lines";
    options.reporter = torchae::console_reporter();  // the library prints nothing unless given one
    options.group = group;
    torchae::Trainer trainer(built.model, options, argv[1]);  // rank 0 writes the run directory
    trainer.fit(data.train, data.validation);

    const double loss = trainer.evaluate(data.validation).total;  // reduced over the ranks
    if (!group || group->is_writer()) std::cout << "validation loss " << loss << "\n";
  } catch (const std::exception& e) {
    std::cerr << "train_data_parallel: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
