// The command-line contract of DESIGN.md, exercised through the built binary.

#include "test_tools.h"

#include "torchae/core/io.h"
#include "torchae/core/runtime.h"
#include "torchae/data/idx.h"
#include "torchae/data/image_io.h"
#include "torchae/data/images.h"
#include "torchae/export/export.h"
#include "torchae/hashing/index.h"
#include "torchae/models/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sys/stat.h>

namespace torchae {
namespace {

using test::CliResult;
using test::expect_one_line_error;
using test::run_cli;
using test::TempDir;

const std::string& kSmall = test::kSmallRun;

std::vector<Json> metrics_lines(const std::filesystem::path& run) {
  std::vector<Json> lines;
  for (const auto& line : test::read_lines(run / "metrics.jsonl")) lines.push_back(Json::parse(line));
  return lines;
}

class Cli : public test::TorchaeTest {
 protected:
  void SetUp() override {
    TorchaeTest::SetUp();
    ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  }
};

TEST(CliList, ShowsEveryRegisteredFamily) {
  const CliResult r = run_cli("list");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto* family : Registry::builtin().families()) {
    EXPECT_NE(r.out.find(family->name + " "), std::string::npos) << family->name << " missing from\n" << r.out;
  }
}

TEST(CliErrors, UsageAndConfigurationErrorsAreOneLineAndLeaveNoRun) {
  TempDir dir;
  const std::string out = (dir / "run").string();
  std::vector<std::string> families;
  for (const auto* family : Registry::builtin().families()) families.push_back(family->name);
  expect_one_line_error(run_cli("train --set model.family=nope --out " + out),
                        fmt::format("unknown model family \"nope\" (known: {})", fmt::join(families, ", ")));
  expect_one_line_error(run_cli("train --set train.epochs=0 --out " + out), "train.epochs: must be >= 1");
  expect_one_line_error(run_cli("train --set train.lr=fast --out " + out), "train.lr: expected a number");
  expect_one_line_error(run_cli("train --set train.optimiser=sgd --out " + out), "train.optimiser: unknown key");
  expect_one_line_error(run_cli("train --set trian.epochs=3 --out " + out), "trian: unknown section");
  expect_one_line_error(run_cli("train --set train.device=tpu --out " + out), "train.device");
  expect_one_line_error(run_cli("train --set train.validate_corrupted=true --out " + out),
                        "train.validate_corrupted: model family \"undercomplete\" is not trained on corrupted batches");
  write_text_atomically(dir / "bad.json", "{\"train\": {\"epochs\": }");
  expect_one_line_error(run_cli(fmt::format("train --config {} --out {}", (dir / "bad.json").string(), out)),
                        "bad.json: invalid JSON: parse error at line 1");
  expect_one_line_error(run_cli("train --config /nonexistent.json --out " + out), "/nonexistent.json: cannot open");
  expect_one_line_error(run_cli("train --set data.dataset=idx --set data.path=/nonexistent --out " + out),
                        "/nonexistent: no train-images-idx3-ubyte");
  expect_one_line_error(run_cli("eval --run " + out), "not a run directory");
  expect_one_line_error(run_cli("train --resume " + out), "not a run directory");
  expect_one_line_error(run_cli("train"), "--out RUN_DIR (or --resume RUN_DIR) is required");
  EXPECT_FALSE(std::filesystem::exists(out)) << "a refused run must not leave a directory behind";
  expect_one_line_error(run_cli("frobnicate"),
                        "unknown command \"frobnicate\" (known: list, train, eval, viz, export, report, zoo, bench, fd-net, "
                        "restore, restore-eval, index, search)");
  expect_one_line_error(run_cli("train --out a --resume b"), "--out excludes --resume");
  expect_one_line_error(run_cli("eval"), "--run is required");
  expect_one_line_error(run_cli("bench --steps 0"), "--steps: must be an integer >= 1, got 0");
  expect_one_line_error(run_cli("eval --run x --fd-samples 1"), "--fd-samples: must be an integer >= 2, got 1");
  expect_one_line_error(run_cli("fd-net"), "--out is required");
}

TEST(CliErrors, CorruptDataIsRefused) {
  TempDir dir;
  write_idx(dir / "train-images-idx3-ubyte", torch::zeros({20, 4, 4}, torch::kUInt8));
  write_idx(dir / "train-labels-idx1-ubyte", torch::zeros({20}, torch::kUInt8));
  std::filesystem::resize_file(dir / "train-images-idx3-ubyte", 100);
  expect_one_line_error(
      run_cli(fmt::format("train --set data.dataset=idx --set data.path={} --out {}", dir.path().string(),
                          (dir / "run").string())),
      "train-images-idx3-ubyte: truncated");
}

TEST_F(Cli, TrainEvalAndExactResume) {
  TempDir dir;
  const std::string straight = (dir / "straight").string(), split = (dir / "split").string();
  CliResult r = run_cli(fmt::format("train {} --set train.epochs=4 --out {}", kSmall, straight));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("epoch 4/4"), std::string::npos) << r.out;
  r = run_cli(fmt::format("train {} --set train.epochs=2 --out {}", kSmall, split));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(fmt::format("train --resume {} --set train.epochs=4", split));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const auto a = metrics_lines(straight), b = metrics_lines(split);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (const char* key : {"epoch", "lr", "train_loss", "val_loss", "train", "val"}) {
      EXPECT_EQ(a[i][key], b[i][key]) << "epoch " << i + 1 << " key " << key;
    }
  }
  const Json config = load_json_file(std::filesystem::path(straight) / "config.json");
  EXPECT_EQ(config["model"]["family"], "undercomplete");
  EXPECT_EQ(config["model"]["code_size"], 16);
  EXPECT_EQ(config["train"]["epochs"], 4);
  EXPECT_EQ(config["data"]["limit"], 1200);
  EXPECT_TRUE(config["train"].contains("optimizer")) << "defaults are resolved into config.json";

  r = run_cli("eval --run " + straight);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json metrics = Json::parse(r.out);
  for (const char* key : {"test_mse", "test_sse_per_image", "test_psnr_db", "pca_test_mse", "pca_test_sse_per_image",
                          "pca_test_psnr_db"}) {
    ASSERT_TRUE(metrics.contains(key)) << key;
    EXPECT_GT(metrics[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(metrics["n_test"], 10000);
  EXPECT_NEAR(metrics["test_sse_per_image"].get<double>(), metrics["test_mse"].get<double>() * 784, 1e-6);
}

// A stacked run through the command line: phases in the log, the head's accuracy and a
// linear probe from eval, classify in the export.
TEST_F(Cli, StackedRunReportsAccuracyProbeAndExportsClassify) {
  TempDir dir;
  const std::string run = (dir / "sdae").string();
  const std::string config = (dir / "sdae.json").string();
  write_text_atomically(config, R"({"model": {"family": "stacked", "classify": true, "finetune_epochs": 1,
      "classify_epochs": 4, "classify_lr": 0.005,
      "layers": [{"units": 64, "family": "denoising", "corruption": "masking", "level": 0.25},
                 {"units": 32, "family": "sparse", "epochs": 1}]},
    "data": {"limit": 1200}, "train": {"epochs": 2, "batch_size": 64, "progress": "lines"}})");
  CliResult r = run_cli(fmt::format("train --config {} --out {}", config, run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("pretrain layer 2/2  epoch 1/1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("classify  epoch 4/4"), std::string::npos) << r.out;
  std::vector<std::string> phases;
  for (const Json& line : metrics_lines(run)) phases.push_back(line["phase"].get<std::string>() + line.value("layer", Json(0)).dump());
  EXPECT_EQ(phases, (std::vector<std::string>{"pretrain1", "pretrain1", "pretrain2", "finetune0", "classify0", "classify0", "classify0", "classify0"}));

  r = run_cli("eval --probe --run " + run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json metrics = Json::parse(r.out);
  // 1,080 training images, four epochs of classifier training: far above chance (10%).
  EXPECT_GT(metrics["test_accuracy"].get<double>(), 0.5) << metrics;
  EXPECT_GT(metrics["probe_test_accuracy"].get<double>(), 0.5) << metrics;
  EXPECT_GT(metrics["probe_pixels_test_accuracy"].get<double>(), 0.6) << metrics;
  EXPECT_EQ(metrics["probe_features"], 32);
  EXPECT_EQ(metrics["code_size"], 32);

  r = run_cli(fmt::format("export --run {} --out {}", run, (dir / "sdae.pt").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json card = read_model_card(dir / "sdae.pt");
  EXPECT_EQ(card["methods"], (Json{"forward", "encode", "decode", "classify"}));
  EXPECT_EQ(card["metrics"]["test_accuracy"], metrics["test_accuracy"]);
}

TEST_F(Cli, NeverOverwritesARunAndResumeChangesOnlyWhatIsSafe) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, run)).exit_code, 0);
  const std::string checkpoint = read_text(std::filesystem::path(run) / "checkpoint.pt");
  const std::string config = read_text(std::filesystem::path(run) / "config.json");
  expect_one_line_error(run_cli(fmt::format("train {} --out {}", kSmall, run)), "already holds a run");
  expect_one_line_error(run_cli(fmt::format("train --resume {} --set model.code_size=3", run)),
                        "cannot change model.code_size when resuming");
  EXPECT_EQ(read_text(std::filesystem::path(run) / "checkpoint.pt"), checkpoint);
  EXPECT_EQ(read_text(std::filesystem::path(run) / "config.json"), config);
}

// Re-running a run's command line with --resume repeats its settings: those are accepted, and
// only a value that differs is refused, with the run's value and the new one.
TEST_F(Cli, ResumeAcceptsTheRunsOwnSettingsAndNamesTheOnesThatDiffer) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, run)).exit_code, 0);
  const CliResult again = run_cli(fmt::format("train {} --set train.epochs=2 --resume {}", kSmall, run));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(metrics_lines(run).size(), 2u);
  expect_one_line_error(run_cli(fmt::format("train --resume {} --set data.limit=3000", run)),
                        "cannot change data.limit when resuming: the run has 1200, this asks for 3000");
  expect_one_line_error(run_cli(fmt::format("train --resume {} --set model.nonsense=1", run)),
                        "the run has no such key, this asks for 1");
}

// Values that would silently produce nonsense are refused, naming the option.
TEST_F(Cli, ValuesThatWouldProduceNonsenseAreRefused) {
  TempDir dir;
  const std::string out = (dir / "run").string();
  expect_one_line_error(run_cli(fmt::format("train {} --set train.patience=2 --set data.validation_fraction=0 --out {}",
                                            kSmall, out)),
                        "train.patience: early stopping needs a validation split");
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(out) / "config.json"));
  expect_one_line_error(run_cli("bench --batch 70000 --steps 1 --warmup 0"),
                        "bench: --batch 70000 exceeds the 60000 training examples");
  // A model too large to allocate names the size that makes it so.
  expect_one_line_error(run_cli(fmt::format("train {} --set model.code_size=1000000000000 --out {}", kSmall, out)),
                        "config: model.code_size: 1000000000000 makes the model too large to allocate (you tried to "
                        "allocate");
  expect_one_line_error(run_cli(fmt::format("train {} --set model.hidden=[4611686018427387904] --out {}", kSmall, out)),
                        "config: model.hidden[0]: 4611686018427387904 makes the model too large to allocate");
  // Labels a classifier head cannot learn are refused before any pretraining.
  expect_one_line_error(run_cli(fmt::format("train --config {}/configs/stacked/probe.json --set data.limit=1200 "
                                            "--set model.classify=true --set model.classes=5 --out {}",
                                            TORCHAE_SOURCE_DIR, out)),
                        "config: model.classes: the data has label 9, but the classifier has 5 classes (labels 0 to "
                        "4); set model.classes to at least 10");
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(out) / "config.json"));
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, out)).exit_code, 0);
  if (!torch::cuda::is_available()) {
    expect_one_line_error(run_cli(fmt::format("eval --run {} --device cuda", out)),
                          "--device: device \"cuda\": no CUDA device is available");
  }
}

// An eval.json computed before the run trained further never reaches a model card.
TEST_F(Cli, ExportReevaluatesARunTrainedSinceItsEval) {
  TempDir dir;
  const std::string run = (dir / "run").string(), archive = (dir / "m.pt").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, run)).exit_code, 0);
  const CliResult eval = run_cli("eval --run " + run);
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_EQ(Json::parse(eval.out)["checkpoint"], (Json{{"stage", 0}, {"epoch", 1}}));
  ASSERT_EQ(run_cli(fmt::format("train --resume {} --set train.epochs=2", run)).exit_code, 0);
  const CliResult exported = run_cli(fmt::format("export --run {} --out {}", run, archive));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const Json card = read_model_card(archive);
  EXPECT_EQ(card["training"]["epochs"], 2);
  EXPECT_EQ(card["metrics"]["checkpoint"], (Json{{"stage", 0}, {"epoch", 2}}));
  EXPECT_NE(card["metrics"]["test_mse"], Json::parse(eval.out)["test_mse"]);
  EXPECT_EQ(load_json_file(std::filesystem::path(run) / "eval.json")["checkpoint"]["epoch"], 2);
}

// A checkpoint loads only into the model it was trained as: another run's checkpoint is refused
// with the first tensor that does not fit, and a config.json edited after training with the first
// key that differs from what the checkpoint was trained under.
TEST_F(Cli, ACheckpointThatDoesNotFitItsRunIsRefused) {
  TempDir dir;
  const std::filesystem::path code16 = dir / "code16", code32 = dir / "code32", vae = dir / "vae";
  for (const auto& [run, set] : {std::pair{code16, ""}, {code32, "--set model.code_size=32"},
                                 {vae, "--set model.family=vae"}}) {
    ASSERT_EQ(run_cli(fmt::format("train {} {} --set train.epochs=1 --out {}", kSmall, set, run.string())).exit_code, 0);
  }
  const std::string own16 = read_text(code16 / kCheckpointFile);
  std::filesystem::copy_file(code16 / kCheckpointFile, code32 / kCheckpointFile,
                             std::filesystem::copy_options::overwrite_existing);
  const std::string misfit = (code32 / kCheckpointFile).string() +
                             ": the checkpoint does not fit the model its run's config.json builds: ";
  expect_one_line_error(run_cli("eval --run " + code32.string()), misfit);
  expect_one_line_error(run_cli("eval --run " + code32.string()), "is Float [16, 64] there, Float [32, 64] in the model");
  expect_one_line_error(run_cli(fmt::format("export --run {} --out {}", code32.string(), (dir / "m.pt").string())),
                        misfit);
  EXPECT_FALSE(std::filesystem::exists(dir / "m.pt"));
  std::filesystem::copy_file(vae / kCheckpointFile, code16 / kCheckpointFile,
                             std::filesystem::copy_options::overwrite_existing);
  expect_one_line_error(run_cli("eval --run " + code16.string()), "the checkpoint does not fit the model");

  // Its own checkpoint back, and config.json edited by hand: the resume rule holds all the same.
  write_text_atomically(code16 / kCheckpointFile, own16);
  Json config = load_json_file(code16 / kConfigFile);
  config["train"]["lr"] = 0.01;
  write_text_atomically(code16 / kConfigFile, config.dump(2));
  const std::string edited = (code16 / kConfigFile).string() +
                             ": train.lr is 0.01, but the checkpoint was trained with 0.001: config.json and the "
                             "checkpoint disagree";
  expect_one_line_error(run_cli(fmt::format("train --resume {} --set train.epochs=2", code16.string())), edited);
  expect_one_line_error(run_cli("eval --run " + code16.string()), edited);
  EXPECT_EQ(read_text(code16 / kCheckpointFile), own16);
  config["train"]["lr"] = 0.001;
  config["train"]["epochs"] = 2;  // as an interrupted resume leaves it: what may change did
  write_text_atomically(code16 / kConfigFile, config.dump(2));
  EXPECT_EQ(run_cli("eval --run " + code16.string()).exit_code, 0);
}

// Two trainings started together into one directory: one trains, the other is refused (by the
// claim, or by the run it finds), and the run is that of the one.
TEST_F(Cli, TwoTrainingsStartedTogetherIntoOneDirectoryNeverBothRun) {
  TempDir dir;
  const std::string run = (dir / "run").string(), d = dir.path().string();
  const std::string train = fmt::format("'{}' train {} --set train.epochs=3 --out {}", TORCHAE_CLI, kSmall, run);
  const CliResult both = test::run_command(fmt::format(
      "({0} > {1}/a.out 2> {1}/a.err & {0} > {1}/b.out 2> {1}/b.err; b=$?; wait $!; a=$?; echo $a $b)", train, d));
  int a = -1, b = -1;
  std::istringstream(both.out) >> a >> b;
  ASSERT_TRUE((a == 0) != (b == 0)) << "exit codes " << a << " " << b;
  const std::string refused = read_text(dir / (a == 0 ? "b.err" : "a.err"));
  EXPECT_EQ(std::count(refused.begin(), refused.end(), '\n'), 1) << refused;
  EXPECT_TRUE(refused.find(run + " is in use") != std::string::npos ||
              refused.find(run + " already holds a run") != std::string::npos)
      << refused;
  const auto lines = metrics_lines(run);
  ASSERT_EQ(lines.size(), 3u);
  for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(lines[i]["epoch"], i + 1);
}

// A resume of a run that another process is training is refused while it trains.
TEST_F(Cli, AResumeWhileAnotherProcessTrainsTheRunIsRefused) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  const std::string script = fmt::format(
      "('{0}' train --set data.limit=6000 --set train.epochs=40 --set train.progress=none --out {1} & "
      "for i in $(seq 600); do [ -f {1}/config.json ] && break; sleep 0.05; done; "
      "'{0}' train --resume {1}; echo \"resume $?\"; kill -9 $! 2> /dev/null; wait)",
      TORCHAE_CLI, run);
  const CliResult r = test::run_command(script);
  EXPECT_NE(r.out.find("resume 1"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.err.find("torchae: error: " + run + " is in use: another torchae process is training it"),
            std::string::npos)
      << r.err;
}

// An output never replaces what is not a regular file, nor one of a run's own files. (FIFOs,
// links and directories stand for device nodes too: the test does not aim at /dev/full.)
TEST_F(Cli, OutputsNeverReplaceSomethingElseOrTheFilesOfARun) {
  TempDir dir;
  const std::filesystem::path run = dir / "run";
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, run.string())).exit_code, 0);
  const std::string checkpoint = read_text(run / "checkpoint.pt"), config = read_text(run / "config.json");
  expect_one_line_error(run_cli(fmt::format("export --run {0} --out {0}/checkpoint.pt", run.string())),
                        "that is the checkpoint.pt of the run in " + run.string());
  expect_one_line_error(run_cli(fmt::format("viz --run {0} --what recon --out {0}/config.json", run.string())),
                        "that is the config.json of the run in " + run.string());
  EXPECT_EQ(read_text(run / "checkpoint.pt"), checkpoint);
  EXPECT_EQ(read_text(run / "config.json"), config);

  write_text_atomically(dir / "target", "keep");
  std::filesystem::create_symlink(dir / "target", dir / "link.pt");
  ASSERT_EQ(mkfifo((dir / "fifo.pt").c_str(), 0600), 0);
  std::filesystem::create_directory(dir / "dir.pt");
  for (const auto& [name, kind] : {std::pair{"link.pt", "a symbolic link"}, {"fifo.pt", "a FIFO"}, {"dir.pt", "a directory"}}) {
    expect_one_line_error(run_cli(fmt::format("export --run {} --out {}", run.string(), (dir / name).string())),
                          std::string("is ") + kind + "; torchae replaces only regular files");
  }
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "link.pt"));
  EXPECT_EQ(read_text(dir / "target"), "keep");
  EXPECT_TRUE(std::filesystem::is_fifo(dir / "fifo.pt"));
  EXPECT_TRUE(std::filesystem::is_directory(dir / "dir.pt"));
}

TEST_F(Cli, ResumeStartsARunInterruptedBeforeItsFirstCheckpoint) {
  TempDir dir;
  const std::string run = (dir / "run").string(), fresh = (dir / "fresh").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, run)).exit_code, 0);
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, fresh)).exit_code, 0);
  std::filesystem::remove(std::filesystem::path(run) / "checkpoint.pt");
  std::filesystem::remove(std::filesystem::path(run) / "metrics.jsonl");
  const CliResult r = run_cli("train --resume " + run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no checkpoint yet; starting from the beginning"), std::string::npos) << r.out;
  EXPECT_EQ(metrics_lines(run)[0]["train_loss"], metrics_lines(fresh)[0]["train_loss"]);
}

// train.init: a run starts from a trained model, an archive or a run directory alike, goes on
// from it, resumes exactly, and starts from it again when it resumes without a checkpoint; a
// model that does not fit is refused before a run directory is made.
TEST_F(Cli, ARunStartsFromATrainedModelAndResumesExactly) {
  TempDir dir;
  const auto path = [&](const char* name) { return (dir / name).string(); };
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=2 --out {}", kSmall, path("trained"))).exit_code, 0);
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}", path("trained"), path("trained.pt"))).exit_code, 0);
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, path("fresh"))).exit_code, 0);
  CliResult r = run_cli(fmt::format("train {} --set train.epochs=2 --set train.init={} --out {}", kSmall,
                                    path("trained.pt"), path("archive")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("train.init"), std::string::npos) << "the same model, nothing to warn of: " << r.err;
  EXPECT_EQ(load_json_file(dir / "archive" / "config.json")["train"]["init"], path("trained.pt"));
  const auto trained = metrics_lines(path("trained")), fresh = metrics_lines(path("fresh")),
             archive = metrics_lines(path("archive"));
  ASSERT_EQ(archive.size(), 2u);
  // Where the trained model ended, not where a fresh one begins.
  EXPECT_LT(archive[0]["val_loss"].get<double>(), fresh[0]["val_loss"].get<double>());
  EXPECT_LT(archive[0]["val_loss"].get<double>(), trained[0]["val_loss"].get<double>());

  // From the run directory: the same weights, so the same run.
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --set train.init={} --out {}", kSmall, path("trained"),
                                path("from_run")))
                .exit_code,
            0);
  EXPECT_EQ(metrics_lines(path("from_run"))[0]["train_loss"], archive[0]["train_loss"]);
  // Resumed from its checkpoint, it goes on as the run that did not stop.
  r = run_cli(fmt::format("train --resume {} --set train.epochs=2", path("from_run")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(metrics_lines(path("from_run"))[1]["train_loss"], archive[1]["train_loss"]);
  // Resumed before its first checkpoint, it starts from the trained model again.
  std::filesystem::remove(dir / "from_run" / "checkpoint.pt");
  std::filesystem::remove(dir / "from_run" / "metrics.jsonl");
  r = run_cli(fmt::format("train --resume {} --set train.epochs=1", path("from_run")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(metrics_lines(path("from_run"))[0]["train_loss"], archive[0]["train_loss"]);

  // Trained otherwise, the same shapes: started, and told.
  r = run_cli(fmt::format("train {} --set train.epochs=1 --set model.input_dropout=0.1 --set train.init={} --out {}",
                          kSmall, path("trained.pt"), path("dropout")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("was trained as another model: model.input_dropout 0.0 there, 0.1 here"), std::string::npos)
      << r.err;
  // A zoo recipe trains as it is (its description is not a section), here from the trained model.
  r = run_cli(fmt::format("train --config {}/models/zoo/undercomplete-32.json {} --set train.epochs=1 --set "
                          "train.init={} --out {}",
                          TORCHAE_SOURCE_DIR, kSmall, path("trained.pt"), path("recipe")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(load_json_file(dir / "recipe" / "config.json")["train"]["schedule"], "cosine");
  EXPECT_FALSE(load_json_file(dir / "recipe" / "config.json").contains("description"));
  // What does not fit is refused, and leaves no run.
  const std::string out = path("refused");
  expect_one_line_error(
      run_cli(fmt::format("train {} --set model.code_size=8 --set train.init={} --out {}", kSmall, path("trained.pt"),
                          out)),
      "train.init: " + path("trained.pt") + ": ");
  expect_one_line_error(
      run_cli(fmt::format("train {} --set model.code_size=8 --set train.init={} --out {}", kSmall, path("trained"), out)),
      "the checkpoint does not fit the model this run's configuration builds");
  expect_one_line_error(run_cli(fmt::format("train {} --set train.init=/nonexistent.pt --out {}", kSmall, out)),
                        "train.init: /nonexistent.pt: no such file");
  expect_one_line_error(run_cli(fmt::format("train {} --set train.init=zoo:nope --out {}", kSmall, out)),
                        "zoo:nope");
  expect_one_line_error(run_cli(fmt::format("train --set data.limit=1200 --set model.family=stacked --set train.init={} "
                                            "--out {}",
                                            path("trained.pt"), out)),
                        "train.init: a model trained in stages");
  EXPECT_FALSE(std::filesystem::exists(out));
}

// A run whose train.device is absent here (trained on a GPU machine, say) is evaluated with
// --device, and exported and drawn as it is; its configuration keeps saying where it trained.
TEST_F(Cli, ARunTrainedOnADeviceAbsentHereIsEvaluatedExportedAndDrawn) {
  TempDir dir;
  const std::filesystem::path run = dir / "run";
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, run.string())).exit_code, 0);
  Json config = Json::parse(read_text(run / "config.json"));
  config["train"]["device"] = "cuda:7";  // no machine here has eight GPUs
  write_text_atomically(run / "config.json", config.dump(2) + "\n");

  expect_one_line_error(run_cli("eval --run " + run.string()), "; evaluate it here with --device auto");
  const CliResult eval = run_cli(fmt::format("eval --run {} --device cpu", run.string()));
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_GT(Json::parse(eval.out)["test_mse"].get<double>(), 0.0);
  EXPECT_FALSE(Json::parse(eval.out).contains("corrupted")) << "not a denoiser, and no --corrupt";
  const CliResult exported = run_cli(fmt::format("export --run {} --out {}", run.string(), (dir / "m.pt").string()));
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(read_model_card(dir / "m.pt")["config"]["train"]["device"], "cuda:7");
  const CliResult drawn =
      run_cli(fmt::format("viz --run {} --what recon --out {}", run.string(), (dir / "r.png").string()));
  ASSERT_EQ(drawn.exit_code, 0) << drawn.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "r.png"));
}

TEST_F(Cli, DivergenceIsAOneLineErrorNamingEpochAndStep) {
  TempDir dir;
  const CliResult r = run_cli(fmt::format(
      "train {} --set model.linear=true --set train.optimizer=sgd --set train.lr=1e8 --out {}", kSmall,
      (dir / "run").string()));
  expect_one_line_error(r, "training diverged: loss is");
  EXPECT_NE(r.err.find("at epoch 1, step"), std::string::npos) << r.err;
}

// Width and height from a PNG's IHDR chunk; {0, 0} when the file is not a PNG.
TEST_F(Cli, VizDrawsFiltersReconstructionsAndMaximisingInputs) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set model.family=denoising --set train.epochs=1 --out {}", kSmall, run))
                .exit_code,
            0);
  // 16 filters of 28x28, enlarged to 84x84, in rows of 10, a colour bar, a title band above.
  CliResult r = run_cli(fmt::format("viz --run {} --what filters --count 16 --out {}", run, (dir / "f.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(test::png_size(dir / "f.png").first, 10 * 85 + 1 + 60);
  EXPECT_GE(test::png_size(dir / "f.png").second, 2 * 85 + 1 + 40);
  // 5 test images: inputs, masked inputs, reconstructions, labelled on the left.
  r = run_cli(fmt::format("viz --run {} --what recon --count 5 --out {}", run, (dir / "r.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(test::png_size(dir / "r.png").first, 5 * 85 + 1 + 100);
  EXPECT_GE(test::png_size(dir / "r.png").second, 3 * 85 + 1 + 30);
  r = run_cli(fmt::format("viz --run {} --what maximize --unit 3 --out {}", run, (dir / "m.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(test::png_size(dir / "m.png").second, 85 + 1 + 40);
  expect_one_line_error(run_cli(fmt::format("viz --run {} --what maximize --unit 99 --out {}", run,
                                            (dir / "x.png").string())),
                        "--unit 99: the code has 16 units");
  expect_one_line_error(run_cli(fmt::format("viz --run {} --what colours --out {}", run, (dir / "x.png").string())),
                        "expected one of filters, recon, maximize, samples, interp, latent");
  expect_one_line_error(run_cli(fmt::format("viz --run {} --what chains --out {}", run, (dir / "x.png").string())),
                        "chains need a Boltzmann machine");
  EXPECT_FALSE(std::filesystem::exists(dir / "x.png"));
}

// The Boltzmann machines through the command line: an RBM's AIS log Z beside the exact one, its
// test log-likelihood, its Gibbs chains and its exported sample(n); a DBN unrolled, evaluated and
// exported; a DBM's likelihood bound, accuracy and export.
TEST_F(Cli, BoltzmannMachinesReportLikelihoodsDrawChainsAndExport) {
  TempDir dir;
  const std::string rbm = (dir / "rbm").string();
  CliResult r = run_cli(fmt::format(
      "train --set model.family=rbm --set model.code_size=16 --set model.binarize=true --set data.limit=1000 "
      "--set train.epochs=2 --set train.batch_size=50 --set train.optimizer=sgd --set train.lr=0.05 "
      "--set train.momentum=0.5 --set train.progress=none --out {}",
      rbm));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string ais = "--ais-temperatures 1000 --ais-runs 20 --fd-samples 100";
  r = run_cli(fmt::format("eval --run {} {}", rbm, ais));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json m = Json::parse(r.out);
  // Within three of AIS's own standard errors (about 0.8 at this few temperatures): a fixed
  // tolerance only held for the random numbers of one seed.
  EXPECT_NEAR(m["ais_log_z"].get<double>(), m["log_z_exact"].get<double>(),
              std::max(0.5, 3 * m["ais_log_z_std_error"].get<double>())) << m;
  EXPECT_LT(m["ais_log_z_std_error"].get<double>(), 1.5) << m;
  EXPECT_LT(m["test_log_likelihood_ais"].get<double>(), 0.0);
  EXPECT_GT(m["test_log_likelihood_ais"].get<double>(), -784 * std::log(2.0)) << "better than uniform";
  EXPECT_LT(m["test_pseudo_log_likelihood"].get<double>(), 0.0);
  EXPECT_EQ(m["binarized"], true);
  EXPECT_EQ(m["ais_runs"], 20);
  expect_one_line_error(run_cli(fmt::format("eval --run {} --ais-temperatures 100", rbm)), "--ais-temperatures");
  r = run_cli(fmt::format("viz --run {} --what chains --count 4 --gibbs-steps 20 --out {}", rbm, (dir / "c.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Steps 0, 1, 2, 5, 10, 20: 6 columns of 84 + 1; a strip of 14 rows above 4 rows of 84 + 1, a
  // title band above, the rows' labels to the left.
  EXPECT_GE(test::png_size(dir / "c.png").first, 6 * 85 + 1 + 60);
  EXPECT_GE(test::png_size(dir / "c.png").second, 14 + 4 * 85 + 1 + 40);
  r = run_cli(fmt::format("viz --run {} --what samples --count 10 --gibbs-steps 5 --out {}", rbm, (dir / "s.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(fmt::format("export --run {} --out {}", rbm, (dir / "rbm.pt").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json card = read_model_card(dir / "rbm.pt");
  EXPECT_EQ(card["methods"], (Json{"forward", "encode", "decode", "sample"}));
  EXPECT_EQ(card["sample_gibbs_steps"], 1000);

  const std::string dbn = (dir / "dbn").string();
  r = run_cli(fmt::format(
      R"(train --set model.family=stacked --set 'model.layers=[{{"units": 32, "family": "rbm"}}, {{"units": 8, "family": "rbm", "hidden_units": "gaussian"}}]' )"
      "--set model.finetune_epochs=1 --set data.limit=600 --set train.epochs=1 --set train.progress=none --out {}",
      dbn));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("eval --run " + dbn);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(Json::parse(r.out)["test_sse_per_image"].get<double>(), 0.0);
  r = run_cli(fmt::format("export --run {} --out {}", dbn, (dir / "dbn.pt").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const std::string dbm = (dir / "dbm").string();
  r = run_cli(fmt::format(
      "train --set model.family=dbm --set model.layers=[32,16] --set model.binarize=true --set model.classify=true "
      "--set model.classify_epochs=2 --set data.limit=600 --set train.epochs=1 --set train.progress=none --out {}",
      dbm));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(fmt::format("eval --run {} {}", dbm, ais));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json d = Json::parse(r.out);
  EXPECT_EQ(d["test_log_likelihood_is_bound"], true);
  EXPECT_FALSE(d.contains("test_pseudo_log_likelihood"));
  EXPECT_LT(d["test_log_likelihood_ais"].get<double>(), 0.0);
  // Two epochs of fine-tuning teach little (DbmTest fine-tunes to an accuracy); it is reported.
  EXPECT_GE(d["test_accuracy"].get<double>(), 0.0) << d;
  r = run_cli(fmt::format("export --run {} --out {}", dbm, (dir / "dbm.pt").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_model_card(dir / "dbm.pt")["methods"], (Json{"forward", "encode", "decode", "sample", "classify"}));
}

// The restoration path end to end: a conv denoiser trained on Fashion-MNIST through the
// command line, exported, then used by restore and scored by restore-eval against NLM.
TEST_F(Cli, AConvDenoiserTrainsExportsRestoresAndIsScored) {
  TempDir dir;
  const std::string run = (dir / "dae").string(), model = (dir / "dae.pt").string();
  CliResult r = run_cli("train --out " + run +
                        " --set model.family=denoising --set model.backbone=conv --set model.code_size=0"
                        " --set model.channels=[8,8] --set model.strides=[1,2] --set model.corruption=gaussian"
                        " --set model.level=0.3 --set model.blind=true --set model.clip=true --set model.loss=mse"
                        " --set data.limit=3000 --set train.epochs=3 --set train.lr=0.003 --set train.batch_size=32"
                        " --set train.progress=none");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("export --run " + run + " --out " + model);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json card = read_model_card(model);
  EXPECT_EQ(card["config"]["model"]["backbone"], "conv");

  // Any size: a 30x45 image (not a multiple of the stride 2 one way) made from test images.
  const torch::Tensor test = load_data(DataOptions{}, true).test.inputs;
  const torch::Tensor image = torch::cat({torch::cat({test[0], test[1]}, 2), torch::cat({test[2], test[3]}, 2)}, 1)
                                  .narrow(1, 0, 45).narrow(2, 0, 30);
  write_image(dir / "in.png", image);
  r = run_cli(fmt::format("restore --model {} --task denoise --noise 51 --in {} --out {}", model,
                          (dir / "in.png").string(), (dir / "out.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const torch::Tensor restored = read_image(dir / "out.png", 1), noisy = read_image(dir / "out_noisy.png", 1);
  EXPECT_EQ(restored.sizes(), image.sizes());
  const auto mse = [&](const torch::Tensor& x) { return (x - image).pow(2).mean().item<double>(); };
  EXPECT_LT(mse(restored), 0.7 * mse(noisy)) << "the denoiser did not denoise";

  r = run_cli(fmt::format("restore-eval --model {} --noise 51 --n 40 --picture {}", model, (dir / "p.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["n"], 40);
  EXPECT_EQ(j["nlm_validation_images"], 40);
  EXPECT_GT(j["methods"]["model"]["psnr_db"].get<double>(), j["methods"]["corrupted"]["psnr_db"].get<double>() + 1);
  EXPECT_GT(j["methods"]["fastNlMeansDenoising"]["psnr_db"].get<double>(), j["methods"]["corrupted"]["psnr_db"].get<double>());
  EXPECT_GT(j["methods"]["dctDenoising"]["psnr_db"].get<double>(), j["methods"]["corrupted"]["psnr_db"].get<double>());
  // Columns: clean, noisy, the model, NLM, the DCT filter; 28x28 images enlarged 6 times (to at
  // most 192 pixels), or their 14x14 centres 13 times; one pixel between the cells.
  EXPECT_EQ(read_image(dir / "p.png", 1).sizes(), (std::vector<int64_t>{1, 8 * 169 + 1, 5 * 169 + 1}));
  r = run_cli(fmt::format("restore-eval --model {} --noise 51 --n 10 --no-baselines --picture {} --picture-crop 14", model,
                          (dir / "c.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const double single = Json::parse(r.out)["methods"]["model"]["psnr_db"].get<double>();
  // Self-ensembled: said in the JSON, and not the single pass (the network is not equivariant).
  r = run_cli(fmt::format("restore-eval --model {} --noise 51 --n 10 --no-baselines --self-ensemble", model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json ensembled = Json::parse(r.out);
  EXPECT_EQ(ensembled["self_ensemble"], true);
  EXPECT_NE(ensembled["methods"]["model"]["psnr_db"].get<double>(), single);
  EXPECT_GT(ensembled["methods"]["model"]["psnr_db"].get<double>(), ensembled["methods"]["corrupted"]["psnr_db"].get<double>() + 1);
  r = run_cli(fmt::format("restore --model {} --task denoise --noise 51 --in {} --out {} --self-ensemble", model,
                          (dir / "in.png").string(), (dir / "out8.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_image(dir / "out8.png", 1).sizes(), image.sizes());
  const torch::Tensor crops = read_image(dir / "c.png", 1);
  EXPECT_EQ(crops.sizes(), (std::vector<int64_t>{1, 8 * 183 + 1, 3 * 183 + 1}));
  // The first cell is the clean image's centre, each pixel a 13x13 block.
  const torch::Tensor first = crops[0].narrow(0, 1, 182).narrow(1, 1, 182);
  EXPECT_TRUE(torch::allclose(first.index({torch::indexing::Slice(0, 182, 13), torch::indexing::Slice(0, 182, 13)}),
                              first.index({torch::indexing::Slice(12, 182, 13), torch::indexing::Slice(12, 182, 13)})));
  expect_one_line_error(run_cli("restore-eval --model " + model + " --picture-crop 2"), "--picture-crop");

  expect_one_line_error(run_cli("restore-eval --model " + model + " --noise-level 20"), "--noise-level is for");
  expect_one_line_error(run_cli(fmt::format("restore --model {} --task denoise --in {} --out {} --noise-level 20", model,
                                            (dir / "in.png").string(), (dir / "x.png").string())),
                        "--noise-level is for");

  // A denoiser told the noise level: given on the command line, or each image's estimate.
  const std::string mapped = (dir / "map").string(), mapped_model = (dir / "map.pt").string();
  r = run_cli("train --out " + mapped +
              " --set model.family=denoising --set model.backbone=conv --set model.code_size=0"
              " --set model.channels=[8,8] --set model.strides=[1,2] --set model.corruption=gaussian"
              " --set model.level=0.3 --set model.blind=true --set model.clip=true --set model.loss=mse"
              " --set model.noise_map=true --set data.limit=500 --set train.epochs=1 --set train.progress=none");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(run_cli("export --run " + mapped + " --out " + mapped_model).exit_code, 0);
  r = run_cli(fmt::format("restore --model {} --task denoise --noise 51 --noise-level 51 --in {} --out {}", mapped_model,
                          (dir / "in.png").string(), (dir / "m.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_image(dir / "m.png", 1).sizes(), image.sizes());
  r = run_cli(fmt::format("restore-eval --model {} --noise 51 --n 10 --no-baselines --noise-level 51", mapped_model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out)["noise_level"], 51.0);
  r = run_cli(fmt::format("restore-eval --model {} --noise 51 --n 10 --no-baselines", mapped_model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out)["noise_level_estimates"].size(), 10u);
  expect_one_line_error(run_cli("restore-eval --model " + mapped_model + " --noise-level 300"), "0-255 units");
  // An image one pixel high has no noise level to estimate: told one, it is denoised.
  write_image(dir / "row.png", image.narrow(1, 0, 1).contiguous());
  const std::string row = fmt::format("restore --model {} --task denoise --in {} --out {}", mapped_model,
                                      (dir / "row.png").string(), (dir / "r.png").string());
  expect_one_line_error(run_cli(row), "the noise level of a 30x1 image cannot be estimated");
  ASSERT_EQ(run_cli(row + " --noise-level 20").exit_code, 0);
  EXPECT_EQ(read_image(dir / "r.png", 1).sizes(), (std::vector<int64_t>{1, 1, 30}));

  expect_one_line_error(run_cli("restore-eval --model " + model + " --task colorize"), "colorize needs a colour model");
  expect_one_line_error(run_cli("restore-eval --model " + model + " --data " + (dir / "nowhere").string()),
                        "no such directory");
}

TEST_F(Cli, BenchPrintsThroughputAsJson) {
  // Without OMP_WAIT_POLICY in its environment (CTest sets it for the tests themselves).
  const CliResult r =
      test::run_command(fmt::format("env -u OMP_WAIT_POLICY '{}' bench --steps 5 --warmup 1 --batch 32", TORCHAE_CLI));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["impl"], "torchae");
  EXPECT_EQ(j["batch"], 32);
  EXPECT_GT(j["samples_per_s"].get<double>(), 0.0);
  EXPECT_EQ(j["omp_wait_policy"], "PASSIVE") << "torchae sets the passive wait policy itself";
}

TEST_F(Cli, BenchChoosesOpenBlasThreadsByTimingTheFirstSteps) {
  // Two OpenBLAS threads to choose from, whatever the machine's cores: the warmup goes on until
  // the trainer has chosen.
  CliResult r = test::run_command(
      fmt::format("env OPENBLAS_NUM_THREADS=2 '{}' bench --steps 5 --warmup 1 --batch 32 --blas-threads auto", TORCHAE_CLI));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json j = Json::parse(r.out);
  ASSERT_TRUE(j.contains("blas_tuning")) << r.out;
  const Json& tuning = j["blas_tuning"];
  EXPECT_EQ(tuning["candidates"], (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(tuning["ms_per_step"].size(), 2u);
  EXPECT_EQ(tuning["chosen"], j["blas_threads"]);
  for (const auto& ms : tuning["ms_per_step"]) EXPECT_GT(ms.get<double>(), 0.0);
  r = run_cli("bench --steps 5 --warmup 1 --batch 32 --blas-threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json::parse(r.out);
  EXPECT_EQ(j["blas_threads"], 1);
  EXPECT_FALSE(j.contains("blas_tuning"));
  expect_one_line_error(run_cli("bench --steps 1 --blas-threads fast"), "--blas-threads: (must be an integer >= 0");
}

TEST_F(Cli, BenchMeasuresTheFloorAndProfilesTheStep) {
  CliResult r = run_cli("bench --steps 20 --warmup 2 --batch 64 --floor --profile 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json j = Json::parse(r.out);
  EXPECT_EQ(j["floor"]["products_per_step"], 11);
  EXPECT_NEAR(j["floor"]["gflop_per_step"].get<double>(), 64 * 4.800512e6 / 1e9, 1e-9);
  EXPECT_EQ(j["floor"]["rounds"], 10);
  // A step does its matrix products and more: below the floor, never above it by much (noise).
  EXPECT_GT(j["of_floor"].get<double>(), 0.05);
  EXPECT_LT(j["of_floor"].get<double>(), 1.3);
  // The products with Adam's update after them, timed in the same rounds (how they compare is
  // the benchmarks' business: two steps a round under a parallel test suite are noise).
  EXPECT_GT(j["floor"]["with_adam_samples_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["of_floor_with_adam"].get<double>(), 0.0);
  const Json& parts = j["profile"]["ms_per_step"];
  for (const char* part : {"matrix products", "element-wise forward", "element-wise backward", "loss", "optimizer",
                           "allocation", "data", "framework", "unprofiled"}) {
    EXPECT_TRUE(parts.contains(part)) << part;
  }
  EXPECT_GT(parts["data"].get<double>(), 0.0);
  expect_one_line_error(run_cli(R"(bench --steps 1 --warmup 0 --floor --model '{"backbone": "conv", "code_size": 0}')"),
                        "is not a Linear layer's: the matrix-product floor is only measured for models made of Linear");
  expect_one_line_error(run_cli("bench --steps 1 --floor --device cuda"), "--floor times CPU matrix products");

  // A stack's second layer, stepped on the first layer's codes (cached once), and its floor.
  const std::string stack = R"('{"family": "stacked", "layers": [{"units": 64}, {"units": 16}]}')";
  r = run_cli("bench --steps 4 --warmup 0 --batch 32 --floor --stage 2 --model " + stack);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json::parse(r.out);
  EXPECT_EQ(j["stage"]["phase"], "pretrain");
  EXPECT_EQ(j["stage"]["layer"], 2);
  EXPECT_EQ(j["stage"]["input_width"], 64);
  EXPECT_EQ(j["floor"]["products_per_step"], 5);  // 64-16 and 16-64: 2 + 3
  expect_one_line_error(run_cli("bench --steps 1 --stage 4 --model " + stack), "--stage 4: the model has 3 stages");
  expect_one_line_error(run_cli("bench --steps 1 --stage 1"), "this model trains in one stage");
}

TEST_F(Cli, BenchStepsABaselineInTheSameRounds) {
  // The reference model against a 784-16-784 autoencoder: about 20 times the products a step.
  CliResult r = run_cli(R"(bench --steps 20 --warmup 2 --batch 32 --baseline '{"hidden": [], "code_size": 16}')");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json j = Json::parse(r.out);
  EXPECT_GT(j["baseline"]["samples_per_s"].get<double>(), j["samples_per_s"].get<double>());
  EXPECT_GT(j["cost"].get<double>(), 1.5);
  // Against itself (the same section, built from the same seed): a cost of about 1.
  const std::string small = R"('{"hidden": [32], "code_size": 8}')";
  r = run_cli("bench --steps 200 --warmup 5 --batch 32 --model " + small + " --baseline " + small);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json::parse(r.out);
  EXPECT_GT(j["cost"].get<double>(), 0.5);
  EXPECT_LT(j["cost"].get<double>(), 2.0);
  // A stack's second stage against a plain stack's, each on its own first layer's codes.
  r = run_cli(R"(bench --steps 4 --warmup 0 --batch 32 --stage 2 )"
              R"(--model '{"family": "stacked", "layers": [{"units": 64}, {"units": 16}]}' )"
              R"(--baseline '{"family": "stacked", "layers": [{"units": 64, "family": "undercomplete"}, )"
              R"({"units": 16, "family": "undercomplete"}]}')");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json::parse(r.out);
  EXPECT_EQ(j["stage"]["input_width"], 64);
  EXPECT_GT(j["cost"].get<double>(), 0.0);
  expect_one_line_error(run_cli("bench --steps 1 --baseline '[1]'"), "--baseline: expected a JSON object");
  expect_one_line_error(run_cli(R"(bench --steps 1 --baseline '{"family": "nope"}')"), "unknown model family \"nope\"");
  expect_one_line_error(run_cli(R"(bench --steps 1 --stage 2 --model '{"family": "stacked", "layers": [{"units": 8}]}' )"
                                R"(--baseline '{"hidden": [8]}')"),
                        "this model trains in one stage");
}

// bench/reference.py is torchae bench's twin in plain PyTorch: the same initialisation, batches
// and arithmetic, so the same loss after the same steps.
TEST_F(Cli, BenchAndItsPyTorchTwinReachTheSameLoss) {
  for (const int batch : {32, 512}) {
    SCOPED_TRACE(batch);
    const CliResult ours = run_cli(fmt::format("bench --steps 20 --warmup 0 --batch {}", batch));
    ASSERT_EQ(ours.exit_code, 0) << ours.err;
    const CliResult theirs = test::run_command(fmt::format("OMP_NUM_THREADS=1 /usr/bin/python3 '{}/bench/reference.py' "
                                                           "--steps 20 --warmup 0 --batch {}",
                                                           TORCHAE_SOURCE_DIR, batch));
    ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
    const double a = Json::parse(ours.out)["final_loss"].get<double>();
    const double b = Json::parse(theirs.out)["final_loss"].get<double>();
    EXPECT_NEAR(a, b, 1e-5);
    EXPECT_LT(a, 0.6);  // it learned: the first step's loss is about 0.69
  }
}

// bench/restore.py is the plain-PyTorch twin of each restoration recipe's model: from the weights,
// batch and corrupted input `bench --twin` writes, it must give torchae's loss and gradients.
TEST_F(Cli, EachRestorationRecipeHasAPyTorchTwin) {
  TempDir dir;
  // The photo denoiser's last layer starts at zero (model.zero_init), which makes every other
  // layer's first gradient zero in both: it is checked again started as LibTorch starts it, and
  // with residual blocks.
  const std::vector<std::string> recipes{"dae-conv-fashion", "dae-conv-natural",
                                         "dae-conv-natural --set model.zero_init=false",
                                         "dae-conv-natural --set model.zero_init=false --set model.blocks=[1,0,1,2]",
                                         "inpaint-conv-natural", "colorize-conv-natural"};
  for (std::size_t i = 0; i < recipes.size(); ++i) {
    const std::string& recipe = recipes[i];
    SCOPED_TRACE(recipe);
    const std::string name = recipe.substr(0, recipe.find(' '));
    const bool zero_init = recipe == "dae-conv-natural";
    const std::filesystem::path twin = dir / fmt::format("{}-{}", name, i);
    CliResult r = run_cli(fmt::format("bench --recipe {} --batch 16 --twin {}", recipe, twin.string()));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(Json::parse(r.out)["batch"], 16);
    EXPECT_EQ(Json::parse(r.out)["model"].value("zero_init", false), zero_init);
    // Only the photo denoiser's 48,000 patches stream; bench then samples their first 8,192.
    EXPECT_EQ(Json::parse(r.out).value("streamed_data_sampled", 0), name == "dae-conv-natural" ? 8192 : 0);
    const std::string bytes = torchae::read_text(twin / "twin.pt");
    const c10::Dict<c10::IValue, c10::IValue> saved =
        torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
    EXPECT_EQ(saved.at("batch").toTensor().size(0), 16);
    EXPECT_EQ(saved.at("pool").toTensor().size(0), 1024);
    EXPECT_EQ(saved.contains("pool_masks"), name == "inpaint-conv-natural");
    r = test::run_command(fmt::format("OMP_NUM_THREADS=1 /usr/bin/python3 '{}/bench/restore.py' '{}' --check",
                                      TORCHAE_SOURCE_DIR, twin.string()));
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(Json::parse(r.out)["check"], "ok");
  }
  // Timed on the recipe's data at its batch size; a model with convolutions takes every core.
  CliResult r = run_cli("bench --recipe dae-conv-fashion --steps 2 --warmup 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["batch"], 128);
  EXPECT_EQ(j["model"]["backbone"], "conv");
  EXPECT_EQ(j["threads"], torchae::cores_per_process());
  expect_one_line_error(run_cli("bench --recipe nosuch --steps 1"), "nosuch");
  expect_one_line_error(run_cli(R"(bench --recipe dae-conv-fashion --model '{}' --steps 1)"),
                        "--recipe and --model both name the model");
  expect_one_line_error(run_cli("bench --set model.skips=false --steps 1"), "--set changes a recipe's keys");
  expect_one_line_error(run_cli("bench --recipe dae-conv-fashion --set model.nosuch=1 --steps 1"), "nosuch");
}

// bench/colorize_decode.py decodes the shipped colouriser's scores other ways; at the archive's own
// decoding it must give the shipped figure (it asserts that itself, exiting non-zero otherwise).
TEST_F(Cli, TheColouriserDecodingScriptReproducesTheShippedFigure) {
  auto decode = [](const std::string& options) {
    const CliResult r = test::run_command(fmt::format("/usr/bin/python3 '{}/bench/colorize_decode.py' --threads 1 {}",
                                                      TORCHAE_SOURCE_DIR, options));
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    const std::string out = r.out.substr(0, r.out.find_last_not_of('\n') + 1);
    return Json::parse(out.substr(out.find_last_of('\n') + 1));
  };
  auto setting = [](const Json& result, bool calibrated, double temperature, bool matched = false) {
    for (const Json& row : result["settings"]) {
      if (row["calibrated"] == calibrated && row["matched"] == matched && row["temperature"] == temperature &&
          row["gain"] == 1.0) {
        return row;
      }
    }
    ADD_FAILURE() << "no setting calibrated=" << calibrated << " matched=" << matched << " T=" << temperature;
    return Json();
  };
  Json result = decode("--temperatures 1 --gains 1 --calibrate --match");
  EXPECT_EQ(result["photographs"]["n"], 5);
  EXPECT_NEAR(result["photographs"]["gray_psnr_db"].get<double>(), 18.61, 0.01);
  // With the rebalancing undone the mean is a less colourful, closer guess.
  const Json plain = setting(result, false, 1.0)["photographs"], calibrated = setting(result, true, 1.0)["photographs"];
  EXPECT_GT(calibrated["psnr_db"].get<double>(), plain["psnr_db"].get<double>());
  EXPECT_LT(calibrated["colourfulness"].get<double>(), plain["colourfulness"].get<double>());
  // Spread by the model's own predicted variance, the calibrated mean gains colour (13.5 to 52.6 measured).
  EXPECT_GT(setting(result, true, 1.0, true)["photographs"]["colourfulness"].get<double>(),
            2 * calibrated["colourfulness"].get<double>());
  // Weights that are all alike (lambda 1) change nothing.
  result = decode("--temperatures 1 --gains 1 --calibrate --rebalance 1");
  for (const char* set : {"photographs", "validation"}) {
    for (const char* figure : {"psnr_db", "colourfulness"}) {
      EXPECT_NEAR(setting(result, true, 1.0)[set][figure].get<double>(),
                  setting(result, false, 1.0)[set][figure].get<double>(), 1e-6)
          << set << " " << figure;
    }
  }
}

TEST_F(Cli, SemanticHashingEvaluatesRetrievalIndexesAndSearches) {
  TempDir dir;
  const std::string run = (dir / "hash").string();
  CliResult r = run_cli(fmt::format("train {} --set model.binary_code=noise --set train.epochs=2 --out {}", test::kSmallRun, run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(fmt::format("eval --run {} --retrieval", run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json retrieval = Json::parse(r.out)["retrieval"];
  EXPECT_EQ(retrieval["bits"], 16);
  EXPECT_EQ(retrieval["queries"], 10000);
  EXPECT_EQ(retrieval["database"], 1200);
  for (const char* method : {"model", "model_float_knn", "pixels_knn", "lsh", "pca", "itq"}) {
    SCOPED_TRACE(method);
    const Json& m = retrieval["methods"][method];
    for (const char* key : {"map", "map_at_1000", "precision_at_100"}) {
      EXPECT_GT(m[key].get<double>(), 0.1) << m;  // ten classes: chance is 0.1
      EXPECT_LE(m[key].get<double>(), 1.0) << m;
    }
    if (std::string(method).find("knn") == std::string::npos) {
      EXPECT_EQ(m["pr_curve"]["recall"].size(), 17u);
      EXPECT_DOUBLE_EQ(m["pr_curve"]["recall"][16].get<double>(), 1.0);
      EXPECT_NEAR(m["pr_curve"]["precision"][16].get<double>(), 0.1, 0.02);  // everything, all classes
    }
  }
  r = run_cli(fmt::format("viz --run {} --what pr --out {}", run, (dir / "pr.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::png_size(dir / "pr.png"), (std::pair<int, int>{820, 600}));

  // Export, index the test set, search it with one of its images: itself among the nearest.
  const std::string model = (dir / "hash.pt").string(), index = (dir / "test.index").string();
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}", run, model)).exit_code, 0);
  EXPECT_EQ(read_model_card(model)["hash_bits"], 16);
  r = run_cli(fmt::format("index --model {} --data fashion-mnist:test --out {}", model, index));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out)["items"], 10000);
  const torch::Tensor images = read_idx(std::string(kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz");
  write_image(dir / "q.png", images[17].unsqueeze(0).to(torch::kFloat) / 255.0);
  const std::string query = (dir / "q.png").string();
  r = run_cli(fmt::format("search --index {} --model {} --query {} -k 5 --picture {}", index, model, query,
                          (dir / "n.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json found = Json::parse(r.out);
  ASSERT_EQ(found["neighbours"].size(), 5u);
  EXPECT_EQ(found["neighbours"][0]["distance"], 0);
  int64_t previous = 0;
  bool itself = false;
  for (const Json& nb : found["neighbours"]) {
    EXPECT_GE(nb["distance"].get<int64_t>(), previous);
    previous = nb["distance"].get<int64_t>();
    itself = itself || nb["name"] == "fashion-mnist:test:17";
  }
  // The image itself is at distance 0, unless more than 5 others tie with it there.
  EXPECT_TRUE(itself || found["neighbours"][4]["distance"] == 0) << found;
  EXPECT_EQ(test::png_size(dir / "n.png"), (std::pair<int, int>{6 * 29 + 1, 14 + 29 + 1}));
  r = run_cli(fmt::format("search --index {} --model {} --query {} -k 10000 --radius 3", index, model, query));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json within = Json::parse(r.out);
  for (const Json& nb : within["neighbours"]) EXPECT_LE(nb["distance"].get<int64_t>(), 3);

  // Bad input: one line each, naming the file or option.
  expect_one_line_error(run_cli(fmt::format("search --index {} --model {} --query {} -k 10001", index, model, query)),
                        "10001 neighbours asked of an index of 10000");
  write_image(dir / "small.png", torch::rand({1, 20, 20}));
  expect_one_line_error(
      run_cli(fmt::format("search --index {} --model {} --query {}", index, model, (dir / "small.png").string())),
      "small.png: 20x20 pixels; the model takes 28x28");
  write_image(dir / "colour.png", torch::rand({3, 28, 28}));
  expect_one_line_error(
      run_cli(fmt::format("search --index {} --model {} --query {}", index, model, (dir / "colour.png").string())),
      "colour.png: a colour (3 channels) image");
  const std::string bytes = read_text(index);
  write_text_atomically(dir / "cut.index", bytes.substr(0, bytes.size() / 2));
  expect_one_line_error(
      run_cli(fmt::format("search --index {} --model {} --query {}", (dir / "cut.index").string(), model, query)),
      "cut.index: truncated index");
  // Another model of the same bits (another seed), and one of other bits.
  const std::string other = (dir / "other").string(), wide = (dir / "wide").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set model.binary_code=sign --set train.epochs=1 --set train.seed=5 --out {}",
                                test::kSmallRun, other))
                .exit_code,
            0);
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}", other, other + ".pt")).exit_code, 0);
  expect_one_line_error(run_cli(fmt::format("search --index {} --model {} --query {}", index, other + ".pt", query)),
                        "built by another model");
  ASSERT_EQ(run_cli(fmt::format("train {} --set model.binary_code=sign --set model.code_size=24 --set train.epochs=1 "
                                "--out {}",
                                test::kSmallRun, wide))
                .exit_code,
            0);
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}", wide, wide + ".pt")).exit_code, 0);
  expect_one_line_error(run_cli(fmt::format("search --index {} --model {} --query {}", index, wide + ".pt", query)),
                        "an index of 16-bit codes");
  // A model without a binary code has no bits to index; eval --retrieval says what it needs.
  const std::string plain = (dir / "plain").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set train.epochs=1 --out {}", test::kSmallRun, plain)).exit_code, 0);
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}", plain, plain + ".pt")).exit_code, 0);
  expect_one_line_error(run_cli(fmt::format("index --model {} --data fashion-mnist:test --out {}", plain + ".pt",
                                            (dir / "x.index").string())),
                        "has no binary code");
  expect_one_line_error(run_cli(fmt::format("eval --run {} --retrieval", plain)), "model.binary_code");
  expect_one_line_error(
      run_cli(fmt::format("index --model {} --data /nonexistent --out {}", model, (dir / "x.index").string())),
      "--data: /nonexistent");
  expect_one_line_error(run_cli(fmt::format("viz --run {} --what pr --out {}", plain, (dir / "p.png").string())),
                        "no retrieval metrics");
}

}  // namespace
}  // namespace torchae
