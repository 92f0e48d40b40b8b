// The `torchae` command line: a thin layer over the library (see DESIGN.md for the contract).

#include "torchae/core/error.h"
#include "torchae/core/runtime.h"
#include "torchae/data/dataset.h"
#include "torchae/eval/frechet.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/export/zoo.h"
#include "torchae/hashing/index.h"
#include "torchae/models/registry.h"
#include "torchae/restore/restore.h"
#include "torchae/train/benchmark.h"
#include "torchae/train/distributed.h"
#include "torchae/train/run.h"
#include "torchae/train/trainer.h"
#include "torchae/version.h"
#include "torchae/viz/pictures.h"
#include "torchae/viz/report.h"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
  int64_t batch = 0;  // 0: the recipe's train.batch_size, else 128
  double timeout = 60;
  int64_t steps = 300;
  int64_t warmup = 30;
  int64_t threads = 0;
  std::string blas_threads = "0";  // train.blas_threads: a count (0: OpenBLAS's own) or "auto"
  bool unpaired = false;           // train.paired_products false
  std::string device = "cpu";
  std::string model;  // JSON of a model section; empty: the reference model
  std::string recipe;  // a zoo recipe: its model, data and batch size
  std::vector<std::string> overrides;  // --set: keys of the recipe changed
  std::string twin;    // a directory: write what bench/restore.py's twin check needs, time nothing
  std::string baseline;  // JSON of a model section stepped in the same rounds: "cost" over it
  bool floor = false;
  int64_t profile = 0;
  int64_t stage = 0;
  bool hamming = false;
  int64_t items = 1000000, bits = 64, queries = 100;
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

// What bench/restore.py needs to check that its plain-PyTorch model is torchae's (`bench --twin
// DIR`): the model as resolved (model.json), and in twin.pt (torch::pickle_save, which Python's
// torch.load reads) the initial parameters and buffers, one training batch, what the model made of
// it in training mode (its corrupted input and mask), the loss and every parameter's gradient;
// and a pool of training examples (with the holes the inpainting corruption drew for them) to
// time on.
void write_twin(torchae::Autoencoder& model, const Json& resolved, const torchae::Dataset& train, int64_t batch,
                const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  torchae::write_text_atomically(dir / "model.json", torchae::json_text(resolved, 2) + "\n");
  c10::Dict<std::string, torch::Tensor> twin;
  torch::nn::Module& module = model.module();
  // Copies: a narrowed tensor would be saved with all of its storage.
  for (const auto& p : module.named_parameters()) twin.insert("param/" + p.key(), p.value().detach().clone());
  for (const auto& b : module.named_buffers()) twin.insert("buffer/" + b.key(), b.value().clone());
  const torch::Tensor x = train.inputs.narrow(0, 0, batch).clone();
  module.train();
  module.zero_grad();
  const torchae::Output out = model.forward(x);
  const torchae::Losses losses = model.loss(x, out);
  losses.total.backward();
  twin.insert("batch", x);
  if (out.input.defined()) twin.insert("input", out.input.detach());
  if (out.mask.defined()) twin.insert("mask", out.mask);
  if (out.noise_level.defined()) twin.insert("noise_level", out.noise_level.contiguous());
  twin.insert("loss", losses.total.detach());
  for (const auto& p : module.named_parameters()) {
    if (p.value().grad().defined()) twin.insert("grad/" + p.key(), p.value().grad());
  }
  const int64_t pool = std::min<int64_t>(train.size(), 1024);
  twin.insert("pool", train.inputs.narrow(0, 0, pool).clone());
  if (resolved.value("corruption", "") == "inpaint") {
    std::vector<torch::Tensor> masks;
    for (int64_t i = 0; i < pool; i += batch) {
      masks.push_back(model.forward(train.inputs.narrow(0, i, std::min(batch, pool - i))).mask);
    }
    twin.insert("pool_masks", torch::cat(masks));
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(twin));
  torchae::write_text_atomically(dir / "twin.pt", std::string(bytes.begin(), bytes.end()));
}

// One model stepped by `bench` through Trainer::step, on batches drawn in a random order over
// its inputs (reshuffled after each pass), one index_select a batch. With a stage (1-based), that
// stage of a staged model (a stack's layer), stepped on the codes of the stages below it,
// computed once as the staged trainer caches them.
class BenchStepper {
 public:
  BenchStepper(std::shared_ptr<torchae::Autoencoder> model, torchae::Dataset inputs, int64_t stage,
               const torchae::TrainOptions& options, int64_t part)
      : model_(std::move(model)), stepped_(model_), part_(part) {
    if (stage > 0) {
      auto* staged = dynamic_cast<torchae::Staged*>(model_.get());
      if (staged == nullptr) throw torchae::Error("bench: --stage: this model trains in one stage (stacked and dbm have stages)");
      const std::vector<torchae::Stage> stages = staged->stages();
      if (stage > static_cast<int64_t>(stages.size())) {
        throw torchae::Error(fmt::format("bench: --stage {}: the model has {} stages", stage, stages.size()));
      }
      const torchae::Stage& chosen = stages[static_cast<std::size_t>(stage - 1)];
      staged->enter_stage(static_cast<std::size_t>(stage - 1));
      staged_ = staged;
      const auto cache_start = std::chrono::steady_clock::now();
      for (const auto& below : chosen.inputs_through) inputs = torchae::encode_dataset(*below, inputs);
      stage_figures_ = {{"stage", stage},
                        {"phase", chosen.phase},
                        {"layer", chosen.layer},
                        {"input_width", inputs.inputs.numel() / inputs.inputs.size(0)},
                        {"cache_seconds",
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - cache_start).count()}};
      stepped_ = chosen.model;
    }
    trainer_ = std::make_unique<torchae::Trainer>(stepped_, options);
    train_ = inputs.to(trainer_->device());
    const int64_t batch = options.group ? part * options.group->size() : part;
    if (batch > train_.size()) {
      throw torchae::Error(fmt::format("bench: --batch {} exceeds the {} training examples", batch, train_.size()));
    }
    position_ = train_.size();
  }
  BenchStepper(const BenchStepper&) = delete;
  BenchStepper& operator=(const BenchStepper&) = delete;
  ~BenchStepper() {
    try {
      if (staged_ != nullptr) staged_->leave_stage();
    } catch (...) {  // a destructor does not throw; the model is not used after bench
    }
  }

  /// One training step on the next batch.
  torchae::Losses step() { return trainer_->step(next_batch()); }
  torchae::Trainer& trainer() { return *trainer_; }
  /// The module stepped: the model's, or its stage's.
  const torch::nn::Module& module() const { return stepped_->module(); }
  /// With a stage: which, and what caching its input codes took; else null.
  const Json& stage_figures() const { return stage_figures_; }

 private:
  torch::Tensor next_batch() {
    RECORD_USER_SCOPE("torchae::data");
    const int64_t n = train_.size();
    if (position_ + part_ > n) {
      order_ = torch::randperm(n, torch::TensorOptions(trainer_->device()).dtype(torch::kLong));
      position_ = 0;
    }
    const torch::Tensor x = train_.inputs.index_select(0, order_.narrow(0, position_, part_));
    position_ += part_;
    return x;
  }

  std::shared_ptr<torchae::Autoencoder> model_, stepped_;
  torchae::Staged* staged_ = nullptr;
  std::unique_ptr<torchae::Trainer> trainer_;
  torchae::Dataset train_;
  torch::Tensor order_;
  int64_t part_ = 0, position_ = 0;
  Json stage_figures_;
};

// Training throughput of the reference model (or a recipe's) through the same Trainer::step and
// batching that `train` uses.
Json bench(const BenchArgs& args) {
  // The model and data: a zoo recipe's, else the reference model (or --model) on Fashion-MNIST.
  torchae::DataSplits data;
  torchae::BuiltModel built;
  int64_t batch = args.batch > 0 ? args.batch : 128;
  if (!args.recipe.empty()) {
    if (!args.model.empty()) throw torchae::Error("bench: --recipe and --model both name the model: give one");
    const auto recipes = torchae::zoo_recipes(torchae::zoo_dir());
    Json config = torchae::find_recipe(recipes, args.recipe).config;
    for (const auto& assignment : args.overrides) torchae::apply_override(config, assignment);
    config["data"]["validation_fraction"] = 0.0;
    torchae::Run run = torchae::prepare_run(config, false);
    data = std::move(run.data);
    built = std::move(run.model);
    if (args.batch == 0) batch = run.train_options.batch_size;
  } else {
    if (!args.overrides.empty()) throw torchae::Error("bench: --set changes a recipe's keys: give --recipe");
    torchae::DataOptions data_options;
    data_options.validation_fraction = 0.0;
    data = torchae::load_data(data_options, false);
    torch::manual_seed(0);
    Json model = kReferenceModel;
    if (!args.model.empty()) {
      model = torchae::parse_json(args.model, "bench: --model");
      if (!model.is_object()) throw torchae::Error("bench: --model: expected a JSON object");
    }
    built = torchae::build_model(model, data.spec);
  }
  // A recipe whose training data streams (more than fits the in-memory limit): bench steps on the
  // first of its examples, loaded once (the JSON says how many); which examples a step sees does
  // not change what it costs.
  int64_t sampled = 0;
  if (data.stream) {
    constexpr int64_t kExamplesInMemory = 8192;
    data.train = data.train_sample(kExamplesInMemory);
    data.stream.reset();
    sampled = data.train.size();
  }
  if (!args.twin.empty()) {
    if (batch > data.train.size()) {
      throw torchae::Error(fmt::format("bench: --batch {} exceeds the {} training examples", batch, data.train.size()));
    }
    write_twin(*built.model, built.resolved, data.train, batch, args.twin);
    Json twin{{"twin", args.twin}, {"model", built.resolved}, {"batch", batch}};
    if (sampled > 0) twin["streamed_data_sampled"] = sampled;
    return twin;
  }
  torchae::TrainOptions options;
  options.batch_size = batch;
  options.device = args.device;
  options.threads = args.threads;
  options.blas_threads = args.blas_threads == "auto" ? torchae::kAutoBlasThreads : std::stoll(args.blas_threads);
  options.paired_products = !args.unpaired;
  // Under torchrun, data-parallel: --batch is the global batch, each rank steps on its part.
  options.group = torchae::join_process_group(std::chrono::milliseconds(static_cast<int64_t>(args.timeout * 1000)));
  const int ranks = options.group ? options.group->size() : 1;
  if (batch % ranks != 0) {
    throw torchae::Error(fmt::format("bench: --batch {} does not split evenly over the {} ranks", batch, ranks));
  }
  const int64_t part = batch / ranks;
  if (args.floor && options.device != "cpu") {
    throw torchae::Error("bench: --floor times CPU matrix products; it has no meaning with --device " + options.device);
  }
  // --baseline: a second model stepped in the same rounds, on the same data at the same batch.
  // Built first, so that the thread setting both run under is the model's (Trainer sets it).
  std::optional<BenchStepper> baseline;
  if (!args.baseline.empty()) {
    const Json section = torchae::parse_json(args.baseline, "bench: --baseline");
    if (!section.is_object()) throw torchae::Error("bench: --baseline: expected a JSON object");
    torch::manual_seed(0);
    baseline.emplace(torchae::build_model(section, data.spec).model, data.train, args.stage, options, part);
  }
  BenchStepper stepper(built.model, data.train, args.stage, options, part);
  torchae::Trainer& trainer = stepper.trainer();
  // With --blas-threads auto the warmup goes on until the trainer has chosen (its trial steps).
  const auto tuning = [](torchae::Trainer& t) { return t.blas_tuner() && !t.blas_tuner()->decided(); };
  for (int64_t i = 0; i < args.warmup || tuning(trainer) || (baseline && tuning(baseline->trainer())); ++i) {
    stepper.step();
    if (baseline) baseline->step();
  }
  if (trainer.device().is_cuda()) torch::cuda::synchronize();
  if (options.group) {
    options.group->all_reduce_seconds = 0;
    options.group->all_reduce_bytes = 0;
  }
  // With --floor (or --baseline) the timed steps come in rounds, each followed by as many steps of
  // the matrix products alone (or of the baseline): on a shared machine the two then see the
  // same noise, and the fraction of the floor (or the cost over the baseline) is the median of
  // the rounds' ratios.
  std::optional<torchae::GemmFloor> floor;
  if (args.floor) floor.emplace(torchae::linear_layers_of(stepper.module()), part);
  const int64_t rounds = floor || baseline ? std::min<int64_t>(10, args.steps) : 1;
  double seconds = 0.0, floor_seconds = 0.0, adam_floor_seconds = 0.0, baseline_seconds = 0.0;
  std::vector<double> ratios, adam_ratios, costs;
  double loss = 0.0;
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t steps = args.steps / rounds + (r < args.steps % rounds ? 1 : 0);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) loss = stepper.step().total.item<double>();
    const double round_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    seconds += round_seconds;
    if (floor) {
      const double products = floor->time(steps);
      floor_seconds += products;
      ratios.push_back(products / round_seconds);
      const double with_adam = floor->time_with_adam(steps);
      adam_floor_seconds += with_adam;
      adam_ratios.push_back(with_adam / round_seconds);
    }
    if (baseline) {
      const auto baseline_start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < steps; ++i) baseline->step().total.item<double>();
      const double own = std::chrono::duration<double>(std::chrono::steady_clock::now() - baseline_start).count();
      baseline_seconds += own;
      costs.push_back(round_seconds / own);
    }
  }
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  Json result{{"impl", "torchae"},
              {"model", built.resolved},
              {"device", trainer.device().str()},
              {"batch", batch},
              {"steps", args.steps},
              {"processes", ranks},
              {"threads", at::get_num_threads()},
              {"blas_threads", torchae::blas_threads()},
              {"paired_products", trainer.paired_products()},
              {"omp_wait_policy", wait_policy ? wait_policy : "(unset)"},
              {"seconds", seconds},
              {"samples_per_s", static_cast<double>(batch * args.steps) / seconds},
              {"final_loss", loss}};
  if (const torchae::BlasThreadTuner* tuner = trainer.blas_tuner()) {
    const std::vector<double> seconds = tuner->seconds_per_step();
    std::vector<double> ms(seconds.size());
    std::transform(seconds.begin(), seconds.end(), ms.begin(), [](double s) { return 1e3 * s; });
    result["blas_tuning"] = {{"candidates", tuner->candidates()}, {"ms_per_step", ms}, {"chosen", tuner->choice()}};
  }
  if (!stepper.stage_figures().is_null()) result["stage"] = stepper.stage_figures();
  if (sampled > 0) result["streamed_data_sampled"] = sampled;
  if (baseline) {
    std::sort(costs.begin(), costs.end());
    result["baseline"] = {{"samples_per_s", static_cast<double>(batch * args.steps) / baseline_seconds}};
    result["cost"] = costs[costs.size() / 2];
  }
  if (floor) {
    std::sort(ratios.begin(), ratios.end());
    std::sort(adam_ratios.begin(), adam_ratios.end());
    result["floor"] = {{"products_per_step", floor->products()},
                       {"gflop_per_step", floor->flops_per_step() / 1e9},
                       {"gemm_gflops", floor->flops_per_step() * static_cast<double>(args.steps) / floor_seconds / 1e9},
                       {"samples_per_s", static_cast<double>(batch * args.steps) / floor_seconds},
                       {"with_adam_samples_per_s", static_cast<double>(batch * args.steps) / adam_floor_seconds},
                       {"rounds", rounds}};
    // Each OpenBLAS thread count the products were timed at, on its own (the floor is the faster).
    for (const auto& [threads, total] : floor->seconds_by_blas_threads()) {
      result["floor"]["samples_per_s_by_blas_threads"][std::to_string(threads)] =
          static_cast<double>(batch * args.steps) / total;
    }
    if (floor->paired_seconds() > 0) {
      result["floor"]["samples_per_s_paired"] = static_cast<double>(batch * args.steps) / floor->paired_seconds();
    }
    result["of_floor"] = ratios[ratios.size() / 2];
    result["of_floor_with_adam"] = adam_ratios[adam_ratios.size() / 2];
  }
  if (args.profile > 0) {
    result["profile"] = torchae::profile_steps([&] { stepper.step(); }, args.profile).to_json();
  }
  if (options.group) {
    auto* group = options.group.get();
    const int64_t bytes_per_step = group->all_reduce_bytes / args.steps;
    result["all_reduce_s"] = group->all_reduce_seconds;
    result["all_reduce_fraction"] = group->all_reduce_seconds / seconds;
    result["all_reduce_bytes_per_step"] = bytes_per_step;
    // In the steps, the all-reduce's time includes waiting for the slower rank; alone, back to back
    // on a buffer of a step's size, it is the transport's own rate.
    torch::Tensor buffer = torch::zeros({bytes_per_step / 4}, torch::TensorOptions(trainer.device()));
    group->all_reduce_sum(buffer);
    const int64_t rounds = 20;
    const auto alone = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < rounds; ++i) group->all_reduce_sum(buffer);
    const double alone_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - alone).count();
    result["all_reduce_alone_ms"] = 1e3 * alone_s / rounds;
    result["all_reduce_alone_mb_per_s"] = static_cast<double>(bytes_per_step * rounds) / 1e6 / alone_s;
  }
  return result;
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

// `zoo build`: the recipes named (all when none is), every name checked before any is built.
void build_zoo(const std::filesystem::path& recipe_dir, std::vector<std::string> names,
               const std::filesystem::path& out_dir) {
  const auto recipes = torchae::zoo_recipes(recipe_dir);
  if (names.empty()) {
    for (const auto& recipe : recipes) names.push_back(recipe.name);
  }
  for (const auto& name : names) torchae::find_recipe(recipes, name);
  for (const auto& name : names) {
    std::cout << "== zoo: " << name << "\n" << std::flush;
    torchae::zoo_build(torchae::find_recipe(recipes, name), out_dir, torchae::console_reporter());
    std::cout << (out_dir / (name + ".pt")).string() << "\n";
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

// `action` becomes what `command` does. It first re-executes the program under the passive
// OpenMP wait policy (see runtime.h): only commands that compute get here, so `list` and
// --help (which stops the parse before any action) spare themselves a second load of LibTorch.
void computes(CLI::App* command, char** argv, std::function<void()> action) {
  command->callback([argv, action = std::move(action)] {
    torchae::ensure_fast_runtime(argv);
    action();
  });
}

// A TCP port of 127.0.0.1 that is free at the time of asking.
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    throw torchae::Error(fmt::format("--nproc: cannot find a free port on 127.0.0.1: {}", std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// `train --nproc N`: this command line again, without --nproc, as N ranks under PyTorch's torchrun
// on this machine. Debian 12's torchrun (1.13 on Python 3.11) fails on its default -r/-t (0), so
// -r and -t are given; with 2 each rank's stderr is shown (and kept in torchrun's log folder).
[[noreturn]] void launch_under_torchrun(int64_t nproc, char** argv) {
  if (std::getenv("RANK") != nullptr) throw torchae::Error("--nproc: this process is already a rank of a torchrun run");
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) throw torchae::Error(fmt::format("--nproc: cannot find this program: {}", ec.message()));
  // Not --standalone, whose rendezvous is always on port 29400: a port free now, so that two
  // trainings can run side by side.
  const int port = free_loopback_port();
  std::vector<std::string> words{"torchrun", "--nnodes", "1", "--nproc_per_node", std::to_string(nproc),
                                 "--rdzv_backend", "c10d", "--rdzv_endpoint", fmt::format("127.0.0.1:{}", port),
                                 "--rdzv_id", fmt::format("torchae-{}", ::getpid()),
                                 "-r", "2", "-t", "2", "--no_python", self};
  for (int i = 1; argv[i] != nullptr; ++i) {
    const std::string word = argv[i];
    if (word == "--nproc") {
      ++i;
      if (argv[i] == nullptr) break;
      continue;
    }
    if (word.rfind("--nproc=", 0) == 0) continue;
    words.push_back(word);
  }
  std::vector<char*> pointers;
  for (auto& word : words) pointers.push_back(word.data());
  pointers.push_back(nullptr);
  std::cout << std::flush;
  ::execvp("torchrun", pointers.data());
  throw torchae::Error(fmt::format("--nproc: cannot run torchrun ({}); it comes with Debian's python3-torch",
                                   std::strerror(errno)));
}

void add_list(CLI::App& app) {
  app.add_subcommand("list", "list the model families")->callback(list_families);
}

void add_train(CLI::App& app, char** argv) {
  auto* train = app.add_subcommand("train", "train a model (no config: the default model on Fashion-MNIST)");
  struct Args {
    std::string config, out, resume;
    std::vector<std::string> overrides;
    int64_t nproc = 0;
    double timeout = 60;
  };
  auto args = std::make_shared<Args>();
  train->footer(
      "Configuration keys, their defaults and ranges: README.md, section \"Configuration\"; torchae list names the "
      "families, and a wrong key is refused by name. config.json in a run directory is a complete example.");
  train->add_option("--config", args->config, "JSON configuration file");
  train->add_option("--set", args->overrides, "override a key, e.g. --set train.epochs=3 (repeatable)")->take_all();
  auto* out = train->add_option("--out", args->out, "REQUIRED (unless --resume): run directory to create");
  auto* resume = train->add_option("--resume", args->resume, "run directory to continue");
  out->excludes(resume);
  resume->excludes("--config");
  train->add_option("--nproc", args->nproc,
                    "train data-parallel in N processes on this machine: torchrun --nproc_per_node N "
                    "--no_python torchae train ... (its rendezvous on a free port of 127.0.0.1)")
      ->check(integer_at_least(1));
  train->add_option("--timeout", args->timeout,
                    "data-parallel: seconds a rank waits for the others (store, collectives) before it stops")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  computes(train, argv, [args, argv] {
    if (args->nproc > 0) launch_under_torchrun(args->nproc, argv);
    if (args->resume.empty() && args->out.empty()) {
      throw torchae::Error("train: --out RUN_DIR (or --resume RUN_DIR) is required");
    }
    auto group = torchae::join_process_group(std::chrono::milliseconds(static_cast<int64_t>(args->timeout * 1000)));
    const std::string run = args->resume.empty() ? args->out : args->resume;
    if (!args->resume.empty()) {
      torchae::resume_run(args->resume, args->overrides, group, torchae::console_reporter());
    } else {
      torchae::train_run(read_config(args->config, args->overrides), args->out, group, torchae::console_reporter());
    }
    if (!group || group->is_writer()) {
      std::cout << fmt::format(
          "trained: {0}\nnext:\n  torchae eval --run {0}\n  torchae viz --run {0} --what curves --out {0}/curves.png\n"
          "  torchae report --run {0}\n  torchae export --run {0} --out {0}/model.pt\n",
          run);
    }
  });
}

void add_eval(CLI::App& app, char** argv) {
  auto* eval = app.add_subcommand("eval", "evaluate a trained run; metrics as JSON on stdout");
  struct Args {
    std::string run;
    torchae::EvalOptions options;
  };
  auto args = std::make_shared<Args>();
  eval->add_option("--run", args->run, "run directory")->required();
  eval->add_option("--iw-samples", args->options.iw_samples, "vae: importance samples per test image for log p(x)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  eval->add_option("--fd-samples", args->options.fd_samples,
                   "vae, wae on Fashion-MNIST: samples from the prior that fd_fashion scores")
      ->check(integer_at_least(2))
      ->capture_default_str();
  eval->add_option("--ais-temperatures", args->options.ais_temperatures,
                   "rbm, dbm: inverse temperatures of each annealed importance sampling run for log Z (Salakhutdinov & "
                   "Murray's schedule)")
      ->check(integer_at_least(torchae::kMinAisTemperatures))
      ->capture_default_str();
  eval->add_option("--ais-runs", args->options.ais_runs, "rbm, dbm: annealed importance sampling runs for log Z")
      ->check(integer_at_least(2))
      ->capture_default_str();
  eval->add_option("--device", args->options.device, "auto, cpu, cuda or cuda:N (default: the run's train.device)");
  eval->add_flag("--probe", args->options.probe,
                 "add the accuracy of a linear probe (logistic regression on the frozen codes, and on pixels)");
  eval->add_option("--corrupt", args->options.corrupt,
                   "KIND:LEVEL, e.g. gaussian:0.2 or masking:0.25: also score reconstructions of the test images so "
                   "corrupted (seed 0) against the clean ones, beside PCA's and the corrupted input's");
  eval->add_flag("--retrieval", args->options.retrieval,
                 "a model with a binary code: retrieval of the training set by the test set's codes (mAP, precision), "
                 "against LSH, PCA hashing, ITQ and Euclidean kNN");
  computes(eval, argv, [args] {
    // Under torchrun, each rank evaluates its shard of the test split; rank 0 reports.
    args->options.group = torchae::join_process_group();
    const Json metrics = torchae::evaluate_run(args->run, args->options);
    if (!args->options.group || args->options.group->is_writer()) std::cout << torchae::json_text(metrics, 2) << "\n";
  });
}

void add_viz(CLI::App& app, char** argv) {
  auto* viz = app.add_subcommand("viz", "draw a trained run as a PNG");
  struct Args {
    std::string run, what, out;
    int64_t unit = -1, count = 0, gibbs_steps = 0;
  };
  auto args = std::make_shared<Args>();
  viz->add_option("--run", args->run, "run directory")->required();
  viz->add_option("--what", args->what, "filters, recon, maximize, samples, interp, latent, chains, pr or curves")->required();
  viz->add_option("--out", args->out, "PNG file to write")->required();
  viz->add_option("--unit", args->unit, "maximize: the code unit (default: units 0..count-1)")
      ->check(integer_at_least(0));
  viz->add_option("--count", args->count,
                  "how many filters (100), images (10), units (16), samples (100), interpolations (8), codes (5000) "
                  "or chains (10)")
      ->check(integer_at_least(1));
  viz->add_option("--gibbs-steps", args->gibbs_steps,
                  "rbm, dbm: Gibbs steps of samples, and the most steps of chains (default: the model's gibbs_steps)")
      ->check(integer_at_least(1));
  computes(viz, argv, [args] {
    const int64_t count = args->count > 0 ? args->count : torchae::default_viz_count(args->what);
    torchae::viz_run(args->run, args->what, args->out, args->unit, count, args->gibbs_steps);
    std::cout << args->out << "\n";
  });
}

void add_report(CLI::App& app, char** argv) {
  auto* command = app.add_subcommand("report", "one self-contained HTML page of a run: config, curves, metrics, pictures");
  auto args = std::make_shared<std::pair<std::string, std::string>>();
  command->add_option("--run", args->first, "run directory")->required();
  command->add_option("--out", args->second, "HTML file to write (default: RUN_DIR/report.html)");
  computes(command, argv, [args] { std::cout << torchae::report_run(args->first, args->second).string() << "\n"; });
}

void add_export(CLI::App& app, char** argv) {
  auto* command = app.add_subcommand("export", "export a trained run as a TorchScript archive");
  auto args = std::make_shared<std::pair<std::string, std::string>>();
  command->add_option("--run", args->first, "run directory")->required();
  command->add_option("--out", args->second, "archive to write, e.g. model.pt")->required();
  computes(command, argv, [args] {
    torchae::export_run(args->first, args->second);
    std::cout << args->second << "\n";
  });
}

void add_zoo(CLI::App& app, char** argv) {
  auto* zoo = app.add_subcommand("zoo", "the model zoo: recipes in models/zoo/*.json, archives with model cards");
  zoo->require_subcommand(0, 1);
  struct Args {
    std::string info, recipes = torchae::zoo_dir().string(), dir = "runs/zoo";
    std::vector<std::string> names;
  };
  auto args = std::make_shared<Args>();
  zoo->add_option("--info", args->info, "print the model card of a TorchScript archive");
  zoo->add_option("--recipes", args->recipes, "recipe directory")->capture_default_str();
  auto* list = zoo->add_subcommand("list", "the recipes, with the scores of those built in --dir");
  list->add_option("--dir", args->dir, "where built archives are")->capture_default_str();
  auto* build = zoo->add_subcommand("build", "train, evaluate and export recipes (all when none is named)");
  build->add_option("names", args->names, "recipes to build");
  build->add_option("--out", args->dir, "directory for the runs and archives")->capture_default_str();
  computes(zoo, argv, [args, list, build] {
    if (!args->info.empty()) {
      std::cout << torchae::json_text(torchae::read_model_card(args->info), 2) << "\n";
    } else if (list->parsed()) {
      list_zoo(args->recipes, args->dir);
    } else if (build->parsed()) {
      build_zoo(args->recipes, args->names, args->dir);
    } else {
      throw torchae::Error("zoo: give list, build or --info MODEL.pt");
    }
  });
}

void add_bench(CLI::App& app, char** argv) {
  auto* bench_cmd = app.add_subcommand("bench", "training throughput of the reference model, as JSON");
  auto args = std::make_shared<BenchArgs>();
  bench_cmd->add_option("--batch", args->batch, "batch size (default: the recipe's, else 128)")->check(integer_at_least(1));
  bench_cmd->add_option("--steps", args->steps, "timed steps")->check(integer_at_least(1));
  bench_cmd->add_option("--warmup", args->warmup, "untimed steps first")->check(integer_at_least(0));
  bench_cmd->add_option("--threads", args->threads, "intra-op threads (0: LibTorch's default)")
      ->check(integer_at_least(0));
  bench_cmd->add_option("--blas-threads", args->blas_threads,
                        "OpenBLAS's threads, as train.blas_threads: a count (0: OpenBLAS's own) or auto (chosen by "
                        "timing the first steps, which then warm up until it has chosen: \"blas_tuning\")")
      ->check(integer_at_least(0) | CLI::IsMember({"auto"}));
  bench_cmd->add_flag("--unpaired", args->unpaired,
                      "as train.paired_products false: the products on OpenBLAS's threads, not in halves on two "
                      "threads of ours (which a process with two cores takes by default)");
  bench_cmd->add_option("--device", args->device, "cpu, cuda or cuda:N");
  bench_cmd->add_option("--model", args->model, "a model section as JSON (default: the reference model)");
  bench_cmd->add_option("--recipe", args->recipe,
                        "a zoo recipe's model on its data at its batch size (bench/restore.py compares them with PyTorch)");
  bench_cmd->add_option("--set", args->overrides, "with --recipe: override a key of it, e.g. --set model.skips=false (repeatable)")
      ->take_all();
  bench_cmd->add_option("--twin", args->twin,
                        "instead of timing: write to this directory what bench/restore.py checks its PyTorch twin with");
  bench_cmd->add_option("--timeout", args->timeout, "under torchrun: seconds a rank waits for the others")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench_cmd->add_option("--baseline", args->baseline,
                        "a model section as JSON, stepped in rounds interleaved with the model's on the same data "
                        "(with --stage, its stage): \"baseline\", and \"cost\", the model's step time over its");
  bench_cmd->add_flag("--floor", args->floor,
                      "also time the step's matrix products alone (models of Linear layers; OpenBLAS on its threads "
                      "and on one, the faster), and them with Adam's update of the parameters: \"floor\", "
                      "\"of_floor\", \"of_floor_with_adam\"");
  bench_cmd->add_option("--profile", args->profile,
                        "then profile this many steps with LibTorch's profiler: where a step's time goes")
      ->check(integer_at_least(1));
  bench_cmd->add_option("--stage", args->stage,
                        "step this stage of a staged model (stacked, dbm) on its cached input codes, 1-based")
      ->check(integer_at_least(1));
  bench_cmd->add_flag("--hamming", args->hamming,
                      "instead: Hamming search (XOR and popcount) over --items random --bits-bit codes against a "
                      "brute-force float kNN over as many --bits-dimensional vectors");
  bench_cmd->add_option("--items", args->items, "--hamming: codes searched")->check(integer_at_least(10))->capture_default_str();
  bench_cmd->add_option("--bits", args->bits, "--hamming: bits a code")->check(integer_at_least(1))->capture_default_str();
  bench_cmd->add_option("--queries", args->queries, "--hamming: queries of the batched float kNN")
      ->check(integer_at_least(1))
      ->capture_default_str();
  computes(bench_cmd, argv, [args] {
    if (args->hamming) {
      std::cout << torchae::json_text(torchae::bench_hamming(args->items, args->bits, args->queries, args->threads), 2)
                << "\n";
      return;
    }
    const Json result = bench(*args);
    const char* rank = std::getenv("RANK");
    if (rank == nullptr || std::string(rank) == "0") std::cout << torchae::json_text(result) << "\n";
  });
}

void add_fd_net(CLI::App& app, char** argv) {
  auto* fd_net = app.add_subcommand("fd-net", "train the Fashion-MNIST classifier whose features fd_fashion compares");
  auto args = std::make_shared<std::pair<std::string, torchae::FashionNetTraining>>();
  fd_net->add_option("--out", args->first, "weights to write (shipped: models/fd_fashion/fashion_net.pt)")->required();
  fd_net->add_option("--epochs", args->second.epochs, "epochs")->check(integer_at_least(1))->capture_default_str();
  fd_net->add_option("--seed", args->second.seed, "seed")->capture_default_str();
  computes(fd_net, argv, [args] { std::cout << torchae::json_text(train_fd_net(args->second, args->first), 2) << "\n"; });
}

const std::vector<std::string> kRestoreTasks{"denoise", "inpaint", "colorize"};

// --temperature of restore and restore-eval.
constexpr const char* kTemperatureHelp =
    "colorize, a colouriser by classes (model.chroma_bins): the temperature its class scores are decoded at (default: "
    "its own, the card's model.temperature; lower is more vivid, 1 the mean)";

void add_restore(CLI::App& app, char** argv) {
  auto* restore = app.add_subcommand("restore", "restore an image with a TorchScript model: denoise, inpaint or colorize");
  struct Args {
    std::string model, task, in, out, noise, mask;
    uint64_t seed = 0;
    torchae::TileOptions tiling;
    torchae::TaskSettings settings;
  };
  auto args = std::make_shared<Args>();
  restore->add_option("--model", args->model,
                      "TorchScript archive written by torchae export or zoo build, or zoo:NAME for a shipped one")
      ->required();
  restore->add_option("--task", args->task, "denoise, inpaint or colorize")->required()->check(CLI::IsMember(kRestoreTasks));
  restore->add_option("--in", args->in, "image to restore (any format OpenCV reads), or a folder of them")->required();
  restore->add_option("--out", args->out,
                      "image to write, encoded as its name says (.png, .jpg, .bmp, .tif, .webp); for a folder --in, "
                      "the folder to write each image into under its own name")
      ->required();
  restore->add_option("--noise", args->noise,
                      "demo: corrupt the image first, SIGMA (Gaussian, 0-255 units) or salt_pepper:P; writes <out>_noisy.png");
  restore->add_option("--mask", args->mask,
                      "inpaint: a mask image (white = missing) or random|scratches|blocks|text[:FRACTION], drawn by the tool");
  restore->add_option("--seed", args->seed, "seed of --noise and drawn masks")->capture_default_str();
  args->tiling.tile = 0;     // the model's
  args->tiling.margin = -1;  // the model's
  restore->add_option("--tile", args->tiling.tile, "side of the tiles a large image is cut into (default 256)")
      ->check(integer_at_least(1));
  restore->add_option("--margin", args->tiling.margin,
                      "context around each tile, discarded (default: the model's: an eighth of a fixed-size model's "
                      "side, 32 pixels for a convolutional one)")
      ->check(integer_at_least(0));
  restore->add_option("--noise-level", args->settings.noise_level,
                      "denoise, a model told the noise level (model.noise_map): the noise's standard deviation, 0-255 "
                      "units (default: estimated from the image)");
  restore->add_option("--temperature", args->settings.temperature, kTemperatureHelp);
  restore->add_flag("--self-ensemble", args->tiling.self_ensemble,
                    "average the model over the image's eight mirrorings and quarter turns (eight times the work)");
  computes(restore, argv, [args] {
    // Every core the process may use, for the model's convolutions and the inpainter's prefill
    // (LibTorch's default here is one thread).
    torchae::set_threads(torchae::cores_per_process());
    torch::manual_seed(args->seed);
    const auto warn = [](const std::string& text) { std::cerr << "torchae: warning: " << text << "\n"; };
    const torchae::RestoreTask task = torchae::parse_restore_task(args->task);
    std::error_code ec;
    if (!std::filesystem::is_directory(args->in, ec)) {
      for (const auto& path : torchae::restore_file(args->model, task, args->in, args->out, args->noise, args->mask,
                                                    &args->tiling, warn, args->settings)) {
        std::cout << path.string() << "\n";
      }
      return;
    }
    // Each path as its image is done: a large folder shows its progress.
    const torchae::FolderRestore done =
        torchae::restore_folder(args->model, task, args->in, args->out, args->noise, args->mask, &args->tiling, warn,
                                args->settings, [](const std::filesystem::path& path) {
                                  std::cout << path.string() << std::endl;
                                });
    if (!done.failed.empty()) {
      throw torchae::Error(fmt::format("{} of the {} images in {} not restored (the others are in {}): {}",
                                       done.failed.size(), done.restored + static_cast<int64_t>(done.failed.size()),
                                       args->in, args->out, fmt::join(done.failed, "; ")));
    }
  });
}

void add_restore_eval(CLI::App& app, char** argv) {
  auto* command = app.add_subcommand("restore-eval",
                                     "PSNR and SSIM of a restoration model against OpenCV's classical methods, as JSON");
  struct Args {
    torchae::RestoreEvalOptions options;
    std::string model, task = "denoise", picture;
    bool no_baselines = false;
  };
  auto args = std::make_shared<Args>();
  command->add_option("--model", args->model, "TorchScript archive, or zoo:NAME for a shipped one")->required();
  command->add_option("--task", args->task, "denoise, inpaint or colorize")
      ->check(CLI::IsMember(kRestoreTasks))
      ->capture_default_str();
  command->add_option("--data", args->options.data, "fashion-mnist or a folder of images (its held-out ones are scored)")
      ->capture_default_str();
  command->add_option("--images", args->options.images,
                      "a folder: the files scored, comma-separated names (default: its held-out ones)")
      ->delimiter(',');
  command->add_option("--noise", args->options.noise, "denoise: SIGMA (0-255 units) or salt_pepper:P")
      ->capture_default_str();
  command->add_option("--mask", args->options.mask, "inpaint: random|scratches|blocks|text[:FRACTION]")
      ->capture_default_str();
  command->add_option("--n", args->options.n, "Fashion-MNIST: test images scored")
      ->check(integer_at_least(1))
      ->capture_default_str();
  command->add_option("--seed", args->options.seed, "seed of the corruptions")->capture_default_str();
  command->add_flag("--fsr-best", args->options.fsr_best,
                    "inpaint: also score frequency-selective reconstruction's best profile (minutes an image)");
  command->add_flag("--no-baselines", args->no_baselines, "score the model (and the corrupted input) only");
  command->add_option("--noise-level", args->options.settings.noise_level,
                      "denoise, a model told the noise level: the level it is given, 0-255 units (default: each "
                      "image's estimate)");
  command->add_option("--temperature", args->options.settings.temperature, kTemperatureHelp);
  command->add_flag("--self-ensemble", args->options.self_ensemble,
                    "the model averaged over each image's eight mirrorings and quarter turns");
  command->add_option("--picture", args->picture, "PNG: clean, corrupted, restored and baselines side by side");
  command->add_option("--picture-crop", args->options.picture_crop,
                      "the picture's centre crops: their side, enlarged to at most 192 pixels")
      ->check(integer_at_least(8))
      ->capture_default_str();
  computes(command, argv, [args] {
    torchae::set_threads(torchae::cores_per_process());  // as restore
    args->options.task = torchae::parse_restore_task(args->task);
    args->options.picture = args->picture;
    args->options.baselines = !args->no_baselines;
    std::cout << torchae::json_text(torchae::restore_eval(args->model, args->options), 2) << "\n";
  });
}

void add_index(CLI::App& app, char** argv) {
  auto* command = app.add_subcommand("index", "the binary codes of a data set or an image folder, for torchae search");
  struct Args {
    std::string model, data, out;
  };
  auto args = std::make_shared<Args>();
  command->add_option("--model", args->model, "TorchScript archive of a model with a binary code (its hash method)")
      ->required();
  command->add_option("--data", args->data, "fashion-mnist, fashion-mnist:test, an IDX image file or a folder of images")
      ->required();
  command->add_option("--out", args->out, "index file to write")->required();
  computes(command, argv, [args] {
    std::cout << torchae::json_text(torchae::build_index(args->model, args->data, args->out), 2) << "\n";
  });
}

void add_search(CLI::App& app, char** argv) {
  auto* command = app.add_subcommand("search", "the Hamming neighbours of an image in an index, as JSON");
  struct Args {
    std::string index, model, query, picture;
    int64_t k = 10, radius = -1;
  };
  auto args = std::make_shared<Args>();
  command->add_option("--index", args->index, "index file written by torchae index")->required();
  command->add_option("--model", args->model, "the TorchScript archive the index was built with")->required();
  command->add_option("--query", args->query, "image file of the model's size and channels")->required();
  command->add_option("-k", args->k, "neighbours")->check(integer_at_least(1))->capture_default_str();
  command->add_option("--radius", args->radius, "only neighbours within this Hamming distance")
      ->check(integer_at_least(0));
  command->add_option("--picture", args->picture, "PNG: the query and its neighbours, their distances above them");
  computes(command, argv, [args] {
    torchae::set_threads(torchae::cores_per_process());  // for the scan (LibTorch's default here is one thread)
    std::cout << torchae::json_text(torchae::search_index(args->index, args->model, args->query, args->k, args->radius,
                                                          args->picture),
                                    2)
              << "\n";
  });
}

// An unknown command is named, with the parser's own list of commands beside it.
bool known_command(CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return true;
  std::vector<std::string> known;
  for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) known.push_back(sub->get_name());
  if (std::find(known.begin(), known.end(), argv[1]) != known.end()) return true;
  std::cerr << fmt::format("torchae: error: unknown command \"{}\" (known: {})\n", argv[1], fmt::join(known, ", "));
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"torchae: autoencoders on LibTorch"};
  app.set_version_flag("--version", std::string(TORCHAE_VERSION));
  app.require_subcommand(1);
  // Usage errors read like every other error: one line, then a non-zero exit (CLI11's code).
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "torchae: error: " + first_line(e.what()) + " (see torchae --help)\n";
  });
  add_list(app);
  add_train(app, argv);
  add_eval(app, argv);
  add_viz(app, argv);
  add_export(app, argv);
  add_report(app, argv);
  add_zoo(app, argv);
  add_bench(app, argv);
  add_fd_net(app, argv);
  add_restore(app, argv);
  add_restore_eval(app, argv);
  add_index(app, argv);
  add_search(app, argv);
  if (!known_command(app, argc, argv)) return 2;

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
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
