// A research script against torchae's library, to copy and change: build a model from the
// factory, train it, evaluate it against PCA, and export it as a TorchScript archive. The run
// directory it writes is an ordinary run: `torchae eval`, `viz`, `report` and `export` read it.
//
//   train_and_export RUN_DIR [FAMILY] [EPOCHS] [EXAMPLES]     e.g. train_and_export runs/script vae 5
//
// It prints nothing while it trains unless told to: the one line that installs the command
// line's progress bar and epoch lines is `options.reporter = torchae::console_reporter();`.

#include "torchae/core/io.h"
#include "torchae/core/runtime.h"
#include "torchae/data/dataset.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/train/run.h"
#include "torchae/train/trainer.h"

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: train_and_export RUN_DIR [FAMILY] [EPOCHS] [EXAMPLES]\n";
    return 2;
  }
  torchae::ensure_fast_runtime(argv);  // LibTorch's OpenMP threads wait passively (see runtime.h)
  try {
    const std::filesystem::path run_dir = argv[1];
    torchae::DataOptions data_options;  // Fashion-MNIST from Debian's dataset-fashion-mnist
    data_options.limit = argc > 4 ? std::stoll(argv[4]) : 0;  // 0: all 60,000 training images

    torchae::TrainOptions options;
    options.epochs = argc > 3 ? std::stoll(argv[3]) : 3;
    options.batch_size = 128;
    options.lr = 1e-3;
    options.reporter = torchae::console_reporter();

    torch::manual_seed(static_cast<uint64_t>(options.seed));
    const torchae::DataSplits data = torchae::load_data(data_options, /*with_test=*/false);
    // Any family by name; its other options take their defaults (`torchae list`, README "Families").
    const torchae::BuiltModel built =
        torchae::build_model({{"family", argc > 2 ? argv[2] : "undercomplete"}, {"code_size", 32}}, data.spec);
    std::cout << built.model->module() << "\n";

    torchae::Trainer trainer(built.model, options, run_dir);
    // The configuration makes run_dir a run that eval, export, viz and report accept.
    trainer.record_config(torchae::run_config(built, data_options, options));
    trainer.fit(data.train, data.validation);

    const torchae::Json metrics = torchae::evaluate_run(run_dir);  // test split, beside PCA's
    std::cout << "test MSE " << metrics["test_mse"].get<double>() << " (PCA " << metrics["pca_test_mse"].get<double>()
              << ")\n";
    torchae::export_run(run_dir, run_dir / "model.pt");
    std::cout << (run_dir / "model.pt").string() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "train_and_export: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
