// The `torchae` command line: a thin layer over the library (see DESIGN.md for the contract).

#include "torchae/core/error.h"
#include "torchae/core/runtime.h"
#include "torchae/data/dataset.h"
#include "torchae/eval/frechet.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/export/zoo.h"
#include "torchae/models/registry.h"
#include "torchae/restore/restore.h"
#include "torchae/train/run.h"
#include "torchae/train/trainer.h"
#include "torchae/version.h"
#include "torchae/viz/pictures.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace {

using torchae::Json;

void list_families() {
  for (const auto* family : torchae::Registry::builtin().families()) {
    std::cout << fmt::format("{:<16}{}\n", family->name, family->description);
  }
}

Json read_config(const std::string& file, const std::vector<std::string>& overrides) {
  Json config = file.empty() ? Json::object() : torchae::load_json_file(file);
  if (!config.is_object()) throw torchae::Error(fmt::format("{}: expected a JSON object", file));
  for (const auto& assignment : overrides) torchae::apply_override(config, assignment);
  return config;
}

struct BenchArgs {
  int64_t batch = 128;
  int64_t steps = 300;
  int64_t warmup = 30;
  int64_t threads = 0;
  std::string device = "cpu";
  std::string model;  // JSON of a model section; empty: the reference model
};

// The reference model of the benchmark: 784-512-128-512-784, ReLU on every hidden layer (the
// code included), sigmoid output with BCE from logits; Adam 1e-3, batch 128, Fashion-MNIST.
// bench/reference.py is its plain-PyTorch twin.
const Json kReferenceModel = {{"family", "undercomplete"},
                              {"hidden", {512}},
                              {"code_size", 128},
                              {"activation", "relu"},
                              {"code_activation", "relu"},
                              {"output_activation", "sigmoid"},
                              {"loss", "bce"}};

// Training throughput of the reference model through the same Trainer::step and batching
// that `train` uses.
Json bench(const BenchArgs& args) {
  torchae::DataOptions data_options;
  data_options.validation_fraction = 0.0;
  const torchae::DataSplits data = torchae::load_data(data_options, false);
  torch::manual_seed(0);
  Json model = kReferenceModel;
  if (!args.model.empty()) {
    model = Json::parse(args.model, nullptr, /*allow_exceptions=*/false);
    if (!model.is_object()) throw torchae::Error(fmt::format("bench: --model: expected a JSON object, got {}", args.model));
  }
  const torchae::BuiltModel built = torchae::build_model(model, data.spec);
  torchae::TrainOptions options;
  options.batch_size = args.batch;
  options.device = args.device;
  options.threads = args.threads;
  torchae::Trainer trainer(built.model, options);
  const torchae::Dataset train = data.train.to(trainer.device());

  const int64_t n = train.size();
  torch::Tensor order;
  int64_t position = n;
  auto next_batch = [&] {
    if (position + args.batch > n) {
      order = torch::randperm(n, torch::TensorOptions(trainer.device()).dtype(torch::kLong));
      position = 0;
    }
    const torch::Tensor x = train.inputs.index_select(0, order.narrow(0, position, args.batch));
    position += args.batch;
    return x;
  };
  for (int64_t i = 0; i < args.warmup; ++i) trainer.step(next_batch());
  if (trainer.device().is_cuda()) torch::cuda::synchronize();
  const auto start = std::chrono::steady_clock::now();
  double loss = 0.0;
  for (int64_t i = 0; i < args.steps; ++i) loss = trainer.step(next_batch()).total.item<double>();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  return Json{{"impl", "torchae"},
              {"model", built.resolved},
              {"device", trainer.device().str()},
              {"batch", args.batch},
              {"steps", args.steps},
              {"threads", at::get_num_threads()},
              {"omp_wait_policy", wait_policy ? wait_policy : "(unset)"},
              {"seconds", seconds},
              {"samples_per_s", static_cast<double>(args.batch * args.steps) / seconds},
              {"final_loss", loss}};
}

// The zoo's recipes: installed beside the binary (share/torchae/zoo), else the source tree's.
std::filesystem::path default_recipe_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path().parent_path() / TORCHAE_INSTALLED_ZOO_DIR;
    if (std::filesystem::is_directory(installed, ec)) return installed;
  }
  return TORCHAE_SOURCE_ZOO_DIR;
}

std::string metric_text(const Json& card, const char* key, const char* format) {
  const Json metrics = card.value("metrics", Json::object());
  return metrics.contains(key) && metrics[key].is_number() ? fmt::format(format, metrics[key].get<double>()) : "-";
}

// `zoo list`: each recipe, and what its archive in `built_dir` scored where one is there.
void list_zoo(const std::filesystem::path& recipe_dir, const std::filesystem::path& built_dir) {
  std::cout << fmt::format("{:<22}{:<15}{:>8}{:>10}{:>9}  {}\n", "recipe", "family", "epochs", "test_mse", "train_s",
                           "description");
  for (const auto& recipe : torchae::zoo_recipes(recipe_dir)) {
    const std::string family = recipe.config.contains("model") ? recipe.config["model"].value("family", "undercomplete")
                                                               : "undercomplete";
    std::string epochs = "-", mse = "-", seconds = "-";
    const auto archive = built_dir / (recipe.name + ".pt");
    std::error_code ec;
    if (std::filesystem::exists(archive, ec)) {
      const Json card = torchae::read_model_card(archive);
      const Json training = card.value("training", Json::object());
      epochs = std::to_string(training.value("epochs", int64_t{0}));
      seconds = fmt::format("{:.0f}", training.value("seconds", 0.0));
      mse = metric_text(card, "test_mse", "{:.4f}");
    }
    std::cout << fmt::format("{:<22}{:<15}{:>8}{:>10}{:>9}  {}\n", recipe.name, family, epochs, mse, seconds,
                             recipe.description);
  }
}

// `torchae fd-net`: trains the feature network on the Fashion-MNIST training split (its
// validation split scored after each epoch), writes it, and reports its test accuracy.
Json train_fd_net(const torchae::FashionNetTraining& options, const std::string& out) {
  const auto started = std::chrono::steady_clock::now();
  const torchae::DataSplits data = torchae::load_data(torchae::DataOptions{}, /*with_test=*/true);
  torchae::FashionNet net = torchae::train_fashion_net(data, options, [](int64_t epoch, double loss, double accuracy) {
    std::cerr << fmt::format("epoch {}  train_loss={:.5f}  val_accuracy={:.4f}\n", epoch, loss, accuracy);
  });
  torchae::save_fashion_net(net, out);
  const double test_accuracy =
      torchae::classification_accuracy([&](const torch::Tensor& x) { return net->forward(x); }, data.test);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return {{"out", out}, {"epochs", options.epochs}, {"seed", options.seed}, {"test_accuracy", test_accuracy},
          {"seconds", seconds}};
}

// Commands that compute re-execute under the passive OpenMP wait policy (see runtime.h);
// listing and help do not, sparing them a second load of LibTorch (about 0.9 s here).
bool computes(int argc, char** argv) {
  if (argc < 2) return false;
  const std::string command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return false;
  }
  return command == "train" || command == "eval" || command == "bench" || command == "viz" ||
         command == "export" || command == "zoo" || command == "fd-net" || command == "restore" ||
         command == "restore-eval";
}

// Integer checks that say what they want ("--steps: must be an integer >= 1, got 0").
CLI::Validator integer_at_least(int64_t lo) {
  return CLI::Validator(
      [lo](std::string& text) -> std::string {
        std::size_t used = 0;
        int64_t value = 0;
        try {
          value = std::stoll(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || used == 0 || value < lo) {
          return fmt::format("must be an integer >= {}, got {}", lo, text);
        }
        return {};
      },
      fmt::format("INT>={}", lo));
}

// One line, whatever the source: c10 messages carry context lines and backtraces.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  if (computes(argc, argv)) torchae::ensure_fast_runtime(argv);

  CLI::App app{"torchae: autoencoders on LibTorch"};
  app.set_version_flag("--version", std::string(TORCHAE_VERSION));
  app.require_subcommand(1);
  // Usage errors read like every other error: one line, then a non-zero exit (CLI11's code).
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "torchae: error: " + first_line(e.what()) + " (see torchae --help)\n";
  });

  app.add_subcommand("list", "list the model families");

  auto* train = app.add_subcommand("train", "train a model (no config: the default model on Fashion-MNIST)");
  std::string config_file, out_dir, resume_dir;
  std::vector<std::string> overrides;
  train->add_option("--config", config_file, "JSON configuration file");
  train->add_option("--set", overrides, "override a key, e.g. --set train.epochs=3 (repeatable)")->take_all();
  auto* out_opt = train->add_option("--out", out_dir, "run directory to create");
  auto* resume_opt = train->add_option("--resume", resume_dir, "run directory to continue");
  out_opt->excludes(resume_opt);
  resume_opt->excludes("--config");

  auto* eval = app.add_subcommand("eval", "evaluate a trained run; metrics as JSON on stdout");
  std::string eval_dir;
  eval->add_option("--run", eval_dir, "run directory")->required();
  torchae::EvalOptions eval_options;
  eval->add_option("--iw-samples", eval_options.iw_samples, "vae: importance samples per test image for log p(x)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  eval->add_option("--fd-samples", eval_options.fd_samples,
                   "vae, wae on Fashion-MNIST: samples from the prior that fd_fashion scores")
      ->check(integer_at_least(2))
      ->capture_default_str();
  eval->add_option("--device", eval_options.device, "auto, cpu, cuda or cuda:N (default: the run's train.device)");
  eval->add_flag("--probe", eval_options.probe,
                 "add the accuracy of a linear probe (logistic regression on the frozen codes, and on pixels)");

  auto* viz = app.add_subcommand("viz", "draw a trained run as a PNG");
  std::string viz_dir, viz_what, viz_out;
  int64_t viz_unit = -1, viz_count = 0;
  viz->add_option("--run", viz_dir, "run directory")->required();
  viz->add_option("--what", viz_what, "filters, recon, maximize, samples, interp or latent")->required();
  viz->add_option("--out", viz_out, "PNG file to write")->required();
  viz->add_option("--unit", viz_unit, "maximize: the code unit (default: units 0..count-1)")
      ->check(integer_at_least(0));
  viz->add_option("--count", viz_count,
                  "how many filters (100), images (10), units (16), samples (100), interpolations (8) or codes (5000)")
      ->check(integer_at_least(1));

  auto* export_cmd = app.add_subcommand("export", "export a trained run as a TorchScript archive");
  std::string export_dir, export_out;
  export_cmd->add_option("--run", export_dir, "run directory")->required();
  export_cmd->add_option("--out", export_out, "archive to write, e.g. model.pt")->required();

  auto* zoo = app.add_subcommand("zoo", "the model zoo: recipes in models/zoo/*.json, archives with model cards");
  zoo->require_subcommand(0, 1);
  std::string zoo_info, zoo_recipe_dir = default_recipe_dir().string(), zoo_dir = "runs/zoo";
  zoo->add_option("--info", zoo_info, "print the model card of a TorchScript archive");
  zoo->add_option("--recipes", zoo_recipe_dir, "recipe directory")->capture_default_str();
  auto* zoo_list = zoo->add_subcommand("list", "the recipes, with the scores of those built in --dir");
  zoo_list->add_option("--dir", zoo_dir, "where built archives are")->capture_default_str();
  auto* zoo_build = zoo->add_subcommand("build", "train, evaluate and export recipes (all when none is named)");
  std::vector<std::string> zoo_names;
  zoo_build->add_option("names", zoo_names, "recipes to build");
  zoo_build->add_option("--out", zoo_dir, "directory for the runs and archives")->capture_default_str();

  auto* bench_cmd = app.add_subcommand("bench", "training throughput of the reference model, as JSON");
  BenchArgs bench_args;
  bench_cmd->add_option("--batch", bench_args.batch, "batch size")->check(integer_at_least(1));
  bench_cmd->add_option("--steps", bench_args.steps, "timed steps")->check(integer_at_least(1));
  bench_cmd->add_option("--warmup", bench_args.warmup, "untimed steps first")->check(integer_at_least(0));
  bench_cmd->add_option("--threads", bench_args.threads, "intra-op threads (0: LibTorch's default)")
      ->check(integer_at_least(0));
  bench_cmd->add_option("--device", bench_args.device, "cpu, cuda or cuda:N");
  bench_cmd->add_option("--model", bench_args.model, "a model section as JSON (default: the reference model)");

  auto* fd_net = app.add_subcommand("fd-net", "train the Fashion-MNIST classifier whose features fd_fashion compares");
  std::string fd_net_out;
  torchae::FashionNetTraining fd_net_options;
  fd_net->add_option("--out", fd_net_out, "weights to write (shipped: models/fd_fashion/fashion_net.pt)")->required();
  fd_net->add_option("--epochs", fd_net_options.epochs, "epochs")->check(integer_at_least(1))->capture_default_str();
  fd_net->add_option("--seed", fd_net_options.seed, "seed")->capture_default_str();

  auto* restore = app.add_subcommand("restore", "restore an image with a TorchScript model: denoise, inpaint or colorize");
  std::string restore_model, restore_task, restore_in, restore_out, restore_noise, restore_mask;
  uint64_t restore_seed = 0;
  torchae::TileOptions restore_tiling;
  restore->add_option("--model", restore_model, "TorchScript archive written by torchae export or zoo build")->required();
  restore->add_option("--task", restore_task, "denoise, inpaint or colorize")
      ->required()
      ->check(CLI::IsMember({"denoise", "inpaint", "colorize"}));
  restore->add_option("--in", restore_in, "image to restore (any format OpenCV reads)")->required();
  restore->add_option("--out", restore_out, "PNG to write")->required();
  restore->add_option("--noise", restore_noise,
                      "demo: corrupt the image first, SIGMA (Gaussian, 0-255 units) or salt_pepper:P; writes <out>_noisy.png");
  restore->add_option("--mask", restore_mask,
                      "inpaint: a mask image (white = missing) or random|scratches|blocks|text[:FRACTION], drawn by the tool");
  restore->add_option("--seed", restore_seed, "seed of --noise and drawn masks")->capture_default_str();
  restore->add_option("--tile", restore_tiling.tile, "side of the tiles a large image is cut into")
      ->check(integer_at_least(1))
      ->capture_default_str();
  restore->add_option("--margin", restore_tiling.margin, "context around each tile, discarded")
      ->check(integer_at_least(0))
      ->capture_default_str();

  auto* restore_eval = app.add_subcommand("restore-eval", "PSNR and SSIM of a restoration model against OpenCV's classical methods, as JSON");
  torchae::RestoreEvalOptions restore_eval_options;
  std::string restore_eval_model, restore_eval_task = "denoise", restore_eval_picture;
  restore_eval->add_option("--model", restore_eval_model, "TorchScript archive")->required();
  restore_eval->add_option("--task", restore_eval_task, "denoise, inpaint or colorize")
      ->check(CLI::IsMember({"denoise", "inpaint", "colorize"}))
      ->capture_default_str();
  restore_eval->add_option("--data", restore_eval_options.data, "fashion-mnist or a folder of images (its held-out ones are scored)")
      ->capture_default_str();
  restore_eval->add_option("--noise", restore_eval_options.noise, "denoise: SIGMA (0-255 units) or salt_pepper:P")
      ->capture_default_str();
  restore_eval->add_option("--mask", restore_eval_options.mask, "inpaint: random|scratches|blocks|text[:FRACTION]")
      ->capture_default_str();
  restore_eval->add_option("--n", restore_eval_options.n, "Fashion-MNIST: test images scored")
      ->check(integer_at_least(1))
      ->capture_default_str();
  restore_eval->add_option("--seed", restore_eval_options.seed, "seed of the corruptions")->capture_default_str();
  restore_eval->add_option("--picture", restore_eval_picture, "PNG: clean, corrupted, restored and baselines side by side");

  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> known;
    for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) known.push_back(sub->get_name());
    if (std::find(known.begin(), known.end(), argv[1]) == known.end()) {
      std::cerr << fmt::format("torchae: error: unknown command \"{}\" (known: {})\n", argv[1], fmt::join(known, ", "));
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (app.got_subcommand("list")) {
      list_families();
    } else if (app.got_subcommand(train)) {
      if (!resume_dir.empty()) {
        torchae::resume_run(resume_dir, overrides);
      } else {
        if (out_dir.empty()) throw torchae::Error("train: --out RUN_DIR (or --resume RUN_DIR) is required");
        torchae::train_run(read_config(config_file, overrides), out_dir);
      }
    } else if (app.got_subcommand(eval)) {
      std::cout << torchae::evaluate_run(eval_dir, eval_options).dump(2) << "\n";
    } else if (app.got_subcommand(viz)) {
      const int64_t count = viz_count > 0 ? viz_count : torchae::default_viz_count(viz_what);
      torchae::viz_run(viz_dir, viz_what, viz_out, viz_unit, count);
      std::cout << viz_out << "\n";
    } else if (app.got_subcommand(export_cmd)) {
      torchae::export_run(export_dir, export_out);
      std::cout << export_out << "\n";
    } else if (app.got_subcommand(zoo)) {
      if (!zoo_info.empty()) {
        std::cout << torchae::read_model_card(zoo_info).dump(2) << "\n";
      } else if (zoo->got_subcommand(zoo_list)) {
        list_zoo(zoo_recipe_dir, zoo_dir);
      } else if (zoo->got_subcommand(zoo_build)) {
        const auto recipes = torchae::zoo_recipes(zoo_recipe_dir);
        std::vector<std::string> names = zoo_names;
        if (names.empty()) {
          for (const auto& recipe : recipes) names.push_back(recipe.name);
        }
        for (const auto& name : names) torchae::find_recipe(recipes, name);  // all names checked first
        for (const auto& name : names) {
          std::cout << "== zoo: " << name << "\n" << std::flush;
          torchae::zoo_build(torchae::find_recipe(recipes, name), zoo_dir);
          std::cout << (std::filesystem::path(zoo_dir) / (name + ".pt")).string() << "\n";
        }
      } else {
        throw torchae::Error("zoo: give list, build or --info MODEL.pt");
      }
    } else if (app.got_subcommand(restore)) {
      torch::manual_seed(restore_seed);
      for (const auto& path : torchae::restore_file(restore_model, torchae::parse_restore_task(restore_task), restore_in,
                                                    restore_out, restore_noise, restore_mask, &restore_tiling)) {
        std::cout << path.string() << "\n";
      }
    } else if (app.got_subcommand(restore_eval)) {
      restore_eval_options.task = torchae::parse_restore_task(restore_eval_task);
      restore_eval_options.picture = restore_eval_picture;
      std::cout << torchae::restore_eval(restore_eval_model, restore_eval_options).dump(2) << "\n";
    } else if (app.got_subcommand(fd_net)) {
      std::cout << train_fd_net(fd_net_options, fd_net_out).dump(2) << "\n";
    } else if (app.got_subcommand(bench_cmd)) {
      std::cout << bench(bench_args).dump() << "\n";
    }
  } catch (const torchae::Error& e) {
    std::cerr << "torchae: error: " << first_line(e.what()) << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "torchae: error: " << first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "torchae: error: " << first_line(e.what()) << "\n";
    return 1;
  }
  return 0;
}
