// Data-parallel training on c10d. The library's trainer with ranks in threads of this process (each
// its own TCPStore client and Gloo group, as separate processes would have), and the command line
// with ranks as processes: under PyTorch's torchrun, or started by hand with torchrun's variables
// where a test must know each rank's process (to kill one, to give one another program).

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/data/image_io.h"
#include "torchae/models/registry.h"
#include "torchae/train/distributed.h"
#include "torchae/train/run.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

namespace torchae {
namespace {

using test::CliResult;
using test::run_command;
using test::TempDir;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

// A port on 127.0.0.1 that nothing listens on at the moment of asking.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// How a family's data-parallel step differs from the one-process step on the same global batch.
enum class Split {
  /// Not at all, up to the order of floating-point sums: its loss is a mean of per-example terms.
  exact,
  /// Its loss couples the examples of a batch beyond a mean (KL sparsity of the batch's mean
  /// activation): each rank's batch statistic is over its part.
  coupled,
  /// It draws random numbers per example (corruption noise, reparameterisation noise, dropout
  /// masks, prior samples, Hutchinson probes): each rank draws its own.
  random,
};

Split split_of(const Json& model) {
  const std::string family = model.value("family", "undercomplete");
  // An RBM's negative phase draws its samples (and each rank keeps its own persistent chains).
  if (family == "denoising" || family == "vae" || family == "dropout" || family == "wae" || family == "rbm" ||
      family == "dbm") {
    return Split::random;
  }
  if (family == "contractive" && model.value("method", "") == "hutchinson") return Split::random;
  if (family == "sparse" && model.value("penalty", "l1") == "kl") return Split::coupled;
  if (family == "stacked") {
    for (const Json& layer : model["layers"]) {
      const std::string layer_family = layer.value("family", "undercomplete");
      if (layer_family == "denoising" || layer_family == "rbm") return Split::random;
    }
  }
  return Split::exact;
}

struct Stepped {
  std::vector<double> losses;
  std::shared_ptr<Autoencoder> model;
};

// `steps` optimisation steps on the global batches of `data` (16 each), by one process or by
// `world` ranks in threads, each on its part; every rank starts from `initial`'s weights.
Stepped step_ranks(const Json& section, const Autoencoder& initial, const torch::Tensor& data, int world,
                   int64_t steps = 5) {
  const int64_t global = 16;
  std::vector<Stepped> ranks(world);
  for (auto& rank : ranks) {
    rank.model = build_model(section, kSpec).model;
    test::copy_weights(const_cast<Autoencoder&>(initial), *rank.model);
  }
  const int port = free_port();
  std::vector<std::string> errors(world);
  const auto train = [&](int r) {
    try {
      TrainOptions options = test::quiet_cpu_options(1);
      options.batch_size = global;
      options.threads = 1;
      if (world > 1) options.group = std::make_shared<ProcessGroup>(ProcessPlace{r, world, r, "127.0.0.1", port, false},
                                                                    std::chrono::seconds(30));
      Trainer trainer(ranks[r].model, options);
      for (int64_t s = 0; s < steps; ++s) {
        const auto [start, length] = shard_of(global, r, world);
        ranks[r].losses.push_back(trainer.step(data.narrow(0, s * global + start, length)).total.item<double>());
      }
    } catch (const std::exception& e) {
      errors[r] = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(train, r);
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  for (int r = 1; r < world; ++r) EXPECT_EQ(ranks[r].losses, ranks[0].losses) << "every rank reports the global loss";
  return ranks[0];
}

class DataParallelFamily : public test::TorchaeTest, public ::testing::WithParamInterface<std::string> {};

double mean_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += std::abs(a[i] - b[i]);
  return sum / static_cast<double>(a.size());
}

// The data-parallel step is the one-process step on the same global batch: losses and weights
// agree to 1e-5 relative for every family whose step does not depend on the split. A step that
// couples a batch's examples stays within 15% of it; a step that draws random numbers differs from
// it no more than (3x) one process differs from itself under other seeds.
TEST_P(DataParallelFamily, TwoRanksStepLikeOneProcessOnTheGlobalBatch) {
  const Json section = Json::parse(GetParam());
  const auto initial = build_model(section, kSpec).model;
  const torch::Tensor data = torch::rand({80, 1, 6, 5});
  torch::manual_seed(1);
  const Stepped one = step_ranks(section, *initial, data, 1);
  torch::manual_seed(1);
  const Stepped two = step_ranks(section, *initial, data, 2);
  ASSERT_EQ(one.losses.size(), two.losses.size());
  switch (split_of(section)) {
    case Split::exact: {
      for (std::size_t s = 0; s < one.losses.size(); ++s) {
        EXPECT_NEAR(two.losses[s], one.losses[s], 1e-5 * std::abs(one.losses[s])) << "step " << s;
      }
      const auto a = one.model->module().named_parameters(), b = two.model->module().named_parameters();
      for (const auto& p : a) {
        SCOPED_TRACE(p.key());
        test::expect_tensors_near(b[p.key()], p.value(), 1e-6, 1e-5);
      }
      break;
    }
    case Split::coupled:
      for (std::size_t s = 0; s < one.losses.size(); ++s) {
        EXPECT_NEAR(two.losses[s], one.losses[s], 0.15 * std::abs(one.losses[s])) << "step " << s;
      }
      break;
    case Split::random: {
      double spread = 0.0, scale = 0.0;
      for (uint64_t seed : {2, 3, 4}) {
        torch::manual_seed(seed);
        spread = std::max(spread, mean_difference(step_ranks(section, *initial, data, 1).losses, one.losses));
      }
      for (double loss : one.losses) scale += std::abs(loss) / static_cast<double>(one.losses.size());
      // Below 0.1% of the loss, the two are not told apart.
      EXPECT_LE(mean_difference(two.losses, one.losses), std::max(3 * spread, 1e-3 * scale))
          << "two ranks against one process, beside one process under other seeds";
      break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, DataParallelFamily, ::testing::ValuesIn(test::family_configs()));

TEST(Sharding, RanksTogetherTakeEachBatchOnce) {
  for (int64_t n : {1, 7, 16, 17}) {
    for (int parts : {1, 2, 3, 5}) {
      int64_t next = 0;
      for (int p = 0; p < parts; ++p) {
        const auto [start, length] = shard_of(n, p, parts);
        EXPECT_EQ(start, next);
        EXPECT_GE(length, n / parts);
        EXPECT_LE(length, n / parts + 1);
        next = start + length;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ProcessPlace, ReadsTorchrunsVariablesAndRefusesHalfOfThem) {
  const auto with = [](std::vector<std::pair<const char*, const char*>> variables) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                             "TORCHELASTIC_USE_AGENT_STORE"}) {
      ::unsetenv(name);
    }
    for (const auto& [name, value] : variables) ::setenv(name, value, 1);
  };
  const auto error_of = [] {
    try {
      ProcessPlace::from_environment();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  with({});
  EXPECT_EQ(ProcessPlace::from_environment(), nullptr);
  with({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29511"},
        {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  const auto place = ProcessPlace::from_environment();
  ASSERT_NE(place, nullptr);
  EXPECT_EQ(place->rank, 1);
  EXPECT_EQ(place->world_size, 4);
  EXPECT_EQ(place->store_port, 29511);
  EXPECT_TRUE(place->agent_store);
  with({{"RANK", "0"}});
  EXPECT_NE(error_of().find("RANK is set but WORLD_SIZE is not"), std::string::npos);
  with({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29511"}});
  EXPECT_NE(error_of().find("RANK=2: expected an integer from 0 to 1"), std::string::npos);
  with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29511"}});
  EXPECT_NE(error_of().find("MASTER_ADDR is not set"), std::string::npos);
  with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "70000"}});
  EXPECT_NE(error_of().find("MASTER_PORT=70000: expected an integer from 1 to 65535"), std::string::npos);
  with({});
}

// ---- The command line, ranks as processes ----

const std::string& kSmall = test::kSmallRun;

std::string cli() { return fmt::format("'{}'", TORCHAE_CLI); }

// torchrun's agent keeps each run's logs in a new folder tempfile.mkdtemp("torchelastic_") makes
// and never removes: the commands here that start torchrun give it a TMPDIR of this process's
// own, removed at exit, so that the suite leaves nothing in /tmp.
std::string torchrun_tmpdir() {
  static const TempDir dir;
  return fmt::format("TMPDIR='{}' ", dir.path().string());
}

// `PROGRAM ARGS` as `nproc` ranks under torchrun on this machine. Not --standalone: its rendezvous
// is always on port 29400, and tests run side by side. Debian 12's torchrun needs -r and -t (see
// README); with 2, each rank's stderr reaches ours, behind "[default<rank>]:".
std::string under_torchrun(int nproc, const std::string& args, const std::string& program = cli()) {
  const int port = free_port();
  return fmt::format("{}torchrun --nnodes 1 --nproc_per_node {} --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:{} "
                     "--rdzv_id t{} -r 2 -t 2 --no_python {} {}",
                     torchrun_tmpdir(), nproc, port, port, program, args);
}

// Starts `program ARGS` as rank `rank` of `world` with the store at 127.0.0.1:port, in the
// background, as torchrun's env:// workers are started (rank 0 hosts the store); its output goes
// to DIR/rank<r>.out and .err, its process id to DIR/rank<r>.pid, its exit code to DIR/rank<r>.rc.
// Returns the shell command.
std::string by_hand(const std::filesystem::path& dir, int rank, int world, int port, const std::string& args,
                    const std::string& program = cli()) {
  const auto file = [&](const char* ext) { return (dir / fmt::format("rank{}.{}", rank, ext)).string(); };
  return fmt::format(
      "(RANK={} WORLD_SIZE={} LOCAL_RANK={} MASTER_ADDR=127.0.0.1 MASTER_PORT={} {} {} > '{}' 2> '{}' & "
      "echo $! > '{}'; wait $!; echo $? > '{}') &",
      rank, world, rank, port, program, args, file("out"), file("err"), file("pid"), file("rc"));
}

struct RankOutcome {
  int exit_code = -1;
  std::string err;
};

// Waits (up to 2 minutes) for rank `r`, started `by_hand` in `dir`, to finish.
RankOutcome wait_for_rank(const std::filesystem::path& dir, int r) {
  const auto rc = dir / fmt::format("rank{}.rc", r);
  for (int i = 0; i < 1200 && !std::filesystem::exists(rc); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the rest of its line
  if (!std::filesystem::exists(rc)) return {};
  return {std::stoi(read_text(rc)), read_text(dir / fmt::format("rank{}.err", r))};
}

std::vector<RankOutcome> wait_for_ranks(const std::filesystem::path& dir, int world) {
  std::vector<RankOutcome> outcomes;
  for (int r = 0; r < world; ++r) outcomes.push_back(wait_for_rank(dir, r));
  return outcomes;
}

// Expects every rank to have failed with one line, "torchae: error: ..." holding `fragment`.
void expect_every_rank_fails(const std::vector<RankOutcome>& ranks, const std::string& fragment) {
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    SCOPED_TRACE(fmt::format("rank {}", r));
    test::expect_one_line_error(CliResult{ranks[r].exit_code, "", ranks[r].err}, fragment);
  }
}

std::vector<Json> metrics_of(const std::filesystem::path& run) {
  std::vector<Json> lines;
  for (const auto& line : test::read_lines(run / "metrics.jsonl")) lines.push_back(Json::parse(line));
  return lines;
}

// The per-epoch losses of two runs agree to `rtol`, stage by stage.
void expect_same_losses(const std::filesystem::path& a, const std::filesystem::path& b, double rtol) {
  const auto x = metrics_of(a), y = metrics_of(b);
  ASSERT_EQ(x.size(), y.size());
  ASSERT_FALSE(x.empty());
  for (std::size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(fmt::format("line {}: {} vs {}", i + 1, x[i].dump(), y[i].dump()));
    EXPECT_EQ(x[i].value("stage", 0), y[i].value("stage", 0));
    EXPECT_EQ(x[i]["epoch"], y[i]["epoch"]);
    for (const char* key : {"train_loss", "val_loss"}) {
      const double u = x[i][key].get<double>(), v = y[i][key].get<double>();
      EXPECT_NEAR(u, v, rtol * std::abs(v)) << key;
    }
  }
}

class DistributedCli : public test::TorchaeTest {
 protected:
  void SetUp() override {
    TorchaeTest::SetUp();
    ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
    ASSERT_EQ(run_command("command -v torchrun").exit_code, 0) << "torchrun comes with python3-torch";
  }
};

TEST_F(DistributedCli, TwoRanksUnderTorchrunTrainAsOneProcessAndOnlyRankZeroWrites) {
  TempDir dir;
  const std::string args = kSmall + " --set train.epochs=2 --set train.batch_size=63";
  const CliResult one = test::run_cli(fmt::format("train {} --out {}", args, (dir / "one").string()));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const CliResult two = run_command(under_torchrun(2, fmt::format("train {} --out {}", args, (dir / "two").string())));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  // The last batch of 1,080 examples in batches of 63 has 9: parts of 5 and 4.
  expect_same_losses(dir / "two", dir / "one", 1e-5);
  // The weights after 34 Adam steps, each tensor to 1e-5 of its norm.
  const auto a = load_run(dir / "one", false), b = load_run(dir / "two", false);
  for (const auto& p : a.model.model->module().named_parameters()) {
    const torch::Tensor other = b.model.model->module().named_parameters()[p.key()];
    EXPECT_LE((other - p.value()).norm().item<double>(), 1e-5 * p.value().norm().item<double>()) << p.key();
  }
  EXPECT_EQ(read_text(dir / "one" / "config.json"), read_text(dir / "two" / "config.json"));
  // eval under torchrun: each rank its shard of the test split, the means reduced; rank 0 reports.
  const CliResult eval_one = test::run_cli("eval --run " + (dir / "one").string());
  const CliResult eval_two = run_command(under_torchrun(2, "eval --run " + (dir / "one").string()));
  ASSERT_EQ(eval_one.exit_code, 0) << eval_one.err;
  ASSERT_EQ(eval_two.exit_code, 0) << eval_two.err;
  const Json alone = Json::parse(eval_one.out), reduced = Json::parse(eval_two.out);
  for (const char* key : {"test_mse", "test_psnr_db", "test_loss", "pca_test_mse", "pca_test_psnr_db"}) {
    EXPECT_NEAR(reduced[key].get<double>(), alone[key].get<double>(), 1e-6 * std::abs(alone[key].get<double>())) << key;
  }
  EXPECT_EQ(reduced["n_test"], alone["n_test"]);
  std::size_t epoch_lines = 0;
  for (std::size_t at = two.out.find("epoch 2/2"); at != std::string::npos; at = two.out.find("epoch 2/2", at + 1)) {
    ++epoch_lines;
  }
  EXPECT_EQ(epoch_lines, 1u) << "rank 0 alone prints:\n" << two.out;
}

// (With train.augment: each rank orients its part of a batch as one process orients the batch.)
TEST_F(DistributedCli, NprocIsTorchrunOnThisMachine) {
  TempDir dir;
  const std::string args = kSmall + " --set train.epochs=1 --set train.augment=dihedral";
  ASSERT_EQ(test::run_cli(fmt::format("train {} --out {}", args, (dir / "one").string())).exit_code, 0);
  const CliResult two = run_command(
      fmt::format("{}{} train --nproc 2 {} --out {}", torchrun_tmpdir(), cli(), args, (dir / "two").string()));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  expect_same_losses(dir / "two", dir / "one", 1e-5);
  test::expect_one_line_error(test::run_cli("train --nproc 0 --out " + (dir / "x").string()),
                              "--nproc: must be an integer >= 1, got 0");
}

// train.init under torchrun: rank 0 reads the archive and the trainer gives the other rank its
// weights, so two ranks train the one-process run; resumed before its first checkpoint, the run
// starts from the archive again (rank 0's decision, told to the other).
TEST_F(DistributedCli, ARunStartedFromATrainedModelTrainsAsInOneProcess) {
  TempDir dir;
  const auto path = [&](const char* name) { return (dir / name).string(); };
  ASSERT_EQ(test::run_cli(fmt::format("train {} --set train.epochs=1 --out {}", kSmall, path("trained"))).exit_code, 0);
  ASSERT_EQ(test::run_cli(fmt::format("export --run {} --out {}", path("trained"), path("trained.pt"))).exit_code, 0);
  const std::string args = fmt::format("{} --set train.epochs=2 --set train.init={}", kSmall, path("trained.pt"));
  const CliResult one = test::run_cli(fmt::format("train {} --out {}", args, path("one")));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const CliResult two = run_command(under_torchrun(2, fmt::format("train {} --out {}", args, path("two"))));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  expect_same_losses(dir / "two", dir / "one", 1e-5);
  // Not a fresh start: the first epoch ends below the trained run's own first.
  EXPECT_LT(metrics_of(dir / "two")[0]["val_loss"].get<double>(), metrics_of(dir / "trained")[0]["val_loss"].get<double>());
  std::filesystem::remove(dir / "two" / "checkpoint.pt");
  std::filesystem::remove(dir / "two" / "metrics.jsonl");
  const CliResult again = run_command(under_torchrun(2, "train --resume " + path("two")));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  expect_same_losses(dir / "two", dir / "one", 1e-5);
}

// Streamed data under torchrun: each rank loads only its part of every batch (its crops, its IDX
// examples), and the run is the one-process run; resumed on 2 ranks, it continues exactly.
TEST_F(DistributedCli, StreamedDataIsShardedAcrossTheRanks) {
  TempDir dir;
  const auto photos = dir / "photos";
  std::filesystem::create_directories(photos);
  for (int i = 0; i < 12; ++i) write_image(photos / fmt::format("img{:02d}.png", i), test::smooth_colour(40, 36, i));
  const std::string images = fmt::format(
      "--set data.dataset=images --set data.path={} --set data.patch=16 --set data.patches=300 --set data.source=stream "
      "--set train.batch_size=30 --set model.hidden=[32] --set model.code_size=8 --set train.progress=lines",
      photos.string());
  const std::string idx = kSmall + " --set data.source=stream";
  for (const auto& [name, args] : {std::pair{"images", images}, std::pair{"idx", idx}}) {
    SCOPED_TRACE(name);
    const auto one = dir / (std::string(name) + "_one"), two = dir / (std::string(name) + "_two");
    ASSERT_EQ(test::run_cli(fmt::format("train {} --set train.epochs=2 --out {}", args, one.string())).exit_code, 0);
    const CliResult r =
        run_command(under_torchrun(2, fmt::format("train {} --set train.epochs=1 --out {}", args, two.string())));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const CliResult resumed =
        run_command(under_torchrun(2, fmt::format("train --resume {} --set train.epochs=2", two.string())));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    expect_same_losses(two, one, 1e-5);
  }
  // The loader's settings are each rank's own (data.workers defaults to its machine's cores):
  // ranks that differ in them train the same run.
  const int port = free_port();
  const auto own = dir / "own_loaders";
  const std::string args = fmt::format("train {} --set train.epochs=2 --out {}", images, own.string());
  run_command(by_hand(dir.path(), 0, 2, port, args + " --set data.workers=0") + " " +
              by_hand(dir.path(), 1, 2, port, args + " --set data.workers=3 --set data.prefetch=1"));
  for (const RankOutcome& rank : wait_for_ranks(dir.path(), 2)) EXPECT_EQ(rank.exit_code, 0) << rank.err;
  expect_same_losses(own, dir / "images_one", 1e-5);
}

// A small denoising run (it draws corruption noise on every rank) of `epochs` epochs into `out`,
// by 2 ranks under torchrun.
void train_denoising_on_two_ranks(int64_t epochs, const std::filesystem::path& out) {
  const CliResult r = run_command(under_torchrun(
      2, fmt::format("train {} --set model.family=denoising --set model.level=0.3 --set train.epochs={} --out {}",
                     kSmall, epochs, out.string())));
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// Exact resume needs each rank's generator.
TEST_F(DistributedCli, ResumeUnderTheSameWorldSizeContinuesExactly) {
  TempDir dir;
  const auto whole = dir / "whole", parts = dir / "parts";
  ASSERT_NO_FATAL_FAILURE(train_denoising_on_two_ranks(3, whole));
  ASSERT_NO_FATAL_FAILURE(train_denoising_on_two_ranks(1, parts));
  const CliResult resumed =
      run_command(under_torchrun(2, fmt::format("train --resume {} --set train.epochs=3", parts.string())));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  expect_same_losses(parts, whole, 0.0);
}

TEST_F(DistributedCli, ResumeUnderAnotherWorldSizeKeepsTheGlobalBatch) {
  TempDir dir;
  const auto whole = dir / "whole", parts = dir / "parts";
  ASSERT_NO_FATAL_FAILURE(train_denoising_on_two_ranks(4, whole));
  ASSERT_NO_FATAL_FAILURE(train_denoising_on_two_ranks(2, parts));
  // Two ranks, then one process: the same global batches, other noise on the rank that is gone.
  const CliResult resumed = test::run_cli(fmt::format("train --resume {} --set train.epochs=4", parts.string()));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto x = metrics_of(parts), y = metrics_of(whole);
  ASSERT_EQ(x.size(), 4u);
  for (std::size_t i = 0; i < 2; ++i) EXPECT_EQ(x[i]["train_loss"], y[i]["train_loss"]);
  for (std::size_t i = 2; i < 4; ++i) {
    EXPECT_NEAR(x[i]["train_loss"].get<double>(), y[i]["train_loss"].get<double>(),
                0.02 * y[i]["train_loss"].get<double>());
    EXPECT_NEAR(x[i]["val_loss"].get<double>(), y[i]["val_loss"].get<double>(), 0.02 * y[i]["val_loss"].get<double>());
  }
}

TEST_F(DistributedCli, StagesAdversariesEarlyStoppingAndDivergenceAreDistributed) {
  TempDir dir;
  // A stack of split-independent layers, pretrained then fine-tuned with a classifier head.
  const std::string stack = "--set data.limit=1200 --set train.batch_size=64 --set train.progress=lines"
                            R"( --set 'model.family=stacked' --set 'model.layers=[{"units": 24, "family": "ksparse", )"
                            R"("k": 6}, {"units": 8, "family": "contractive"}]' --set model.classify=true --set model.classify_dropout=0 )"
                            R"(--set train.epochs=1)";
  ASSERT_EQ(test::run_cli(fmt::format("train {} --out {}", stack, (dir / "stack1").string())).exit_code, 0);
  const CliResult stack2 = run_command(under_torchrun(2, fmt::format("train {} --out {}", stack, (dir / "stack2").string())));
  ASSERT_EQ(stack2.exit_code, 0) << stack2.err;
  expect_same_losses(dir / "stack2", dir / "stack1", 1e-5);
  EXPECT_GE(metrics_of(dir / "stack2").size(), 3u);

  // The adversary of a WAE-GAN is stepped and reduced like the model.
  const CliResult gan = run_command(under_torchrun(
      2, fmt::format("train {} --set model.family=wae --set model.penalty=gan --set train.epochs=2 --out {}", kSmall,
                     (dir / "gan").string())));
  ASSERT_EQ(gan.exit_code, 0) << gan.err;
  const auto gan_lines = metrics_of(dir / "gan");
  ASSERT_EQ(gan_lines.size(), 2u);
  EXPECT_GE(gan_lines[1]["train"].size(), 2u) << gan_lines[1].dump();

  // Early stopping: the ranks decide on the same reduced validation loss, and stop together.
  const std::string patient = kSmall + " --set train.epochs=6 --set train.patience=1 --set train.min_delta=10";
  ASSERT_EQ(test::run_cli(fmt::format("train {} --out {}", patient, (dir / "early1").string())).exit_code, 0);
  const CliResult early2 = run_command(under_torchrun(2, fmt::format("train {} --out {}", patient, (dir / "early2").string())));
  ASSERT_EQ(early2.exit_code, 0) << early2.err;
  expect_same_losses(dir / "early2", dir / "early1", 1e-5);
  EXPECT_EQ(metrics_of(dir / "early2").size(), 2u);

  // A denoiser validated on corrupted inputs: every rank corrupts the whole validation set alike
  // and scores its shard. (Training noise is each rank's own, so the losses are not one
  // process's; the corrupted validation of the same weights is: the first model, evaluated again
  // in one process, gives the same figure.)
  const std::string denoiser = kSmall + " --set model.family=denoising --set model.corruption=gaussian --set "
                                        "model.level=0.3 --set train.epochs=1 --set train.validate_corrupted=true";
  const CliResult noisy = run_command(under_torchrun(2, fmt::format("train {} --out {}", denoiser, (dir / "dae").string())));
  ASSERT_EQ(noisy.exit_code, 0) << noisy.err;
  ASSERT_EQ(metrics_of(dir / "dae").size(), 1u);
  {
    torchae::Run run = load_run(dir / "dae", false);
    Trainer alone(run.model.model, run.train_options);
    const Corrupted corrupted = corrupt_seeded(run.data.validation.inputs,
                                               dynamic_cast<Corrupting&>(*run.model.model).corruption(),
                                               static_cast<uint64_t>(run.train_options.seed));
    const double reduced = metrics_of(dir / "dae")[0]["val_loss"].get<double>();
    EXPECT_NEAR(alone.evaluate(run.data.validation, corrupted).total, reduced, 1e-6 * reduced);
    EXPECT_NE(alone.evaluate(run.data.validation).total, reduced);  // not the clean inputs' figure
  }

  // Divergence: every rank sees the same global loss and stops with the same line.
  const auto diverging = dir / "nan";
  const int port = free_port();
  const std::string nan_args =
      fmt::format("train {} --set model.linear=true --set train.optimizer=sgd --set train.lr=1e8 --out {}", kSmall,
                  diverging.string());
  ASSERT_EQ(run_command(by_hand(dir.path(), 0, 2, port, nan_args) + " " + by_hand(dir.path(), 1, 2, port, nan_args))
                .exit_code,
            0);
  const auto ranks = wait_for_ranks(dir.path(), 2);
  expect_every_rank_fails(ranks, "training diverged: loss is");
  EXPECT_EQ(ranks[0].err, ranks[1].err);
}

TEST_F(DistributedCli, AKilledOrHungRankStopsTheOthersWithinTheTimeoutAndTheCheckpointResumes) {
  TempDir dir;
  const auto run = dir / "run";
  const int port = free_port();
  const std::string args = fmt::format("train {} --set train.epochs=300 --timeout 20 --out {}", kSmall, run.string());
  ASSERT_EQ(run_command(by_hand(dir.path(), 1, 2, port, args)).exit_code, 0);
  ASSERT_EQ(run_command(by_hand(dir.path(), 0, 2, port, args)).exit_code, 0);
  for (int i = 0; i < 600 && !std::filesystem::exists(run / "checkpoint.pt"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(std::filesystem::exists(run / "checkpoint.pt"));
  const int pid = std::stoi(read_text(dir / "rank1.pid"));  // written before the rank starts training
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  const RankOutcome rank0 = wait_for_rank(dir.path(), 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_LT(seconds, 20.0) << "rank 0 stops well within its timeout";
  test::expect_one_line_error(CliResult{rank0.exit_code, "", rank0.err}, "rank 1 did not answer");
  EXPECT_NE(rank0.err.find("rank 0 of 2"), std::string::npos) << rank0.err;
  // A rank that hangs: the others stop once the timeout has passed.
  {
    TempDir here;
    const int hang_port = free_port();
    const std::string hung = fmt::format("train {} --set train.epochs=300 --timeout 3 --out {}", kSmall,
                                         (here / "run").string());
    ASSERT_EQ(run_command(by_hand(here.path(), 1, 2, hang_port, hung)).exit_code, 0);
    ASSERT_EQ(run_command(by_hand(here.path(), 0, 2, hang_port, hung)).exit_code, 0);
    for (int i = 0; i < 600 && !std::filesystem::exists(here / "run" / "checkpoint.pt"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const int stopped = std::stoi(read_text(here / "rank1.pid"));
    ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
    const auto since = std::chrono::steady_clock::now();
    const RankOutcome waited = wait_for_rank(here.path(), 0);
    ::kill(stopped, SIGKILL);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count(), 15.0);
    test::expect_one_line_error(CliResult{waited.exit_code, "", waited.err}, "rank 1 did not answer");
  }
  // The last checkpoint is whole: one process continues it.
  const std::size_t done = metrics_of(run).size();
  ASSERT_GE(done, 1u);
  const CliResult resumed =
      test::run_cli(fmt::format("train --resume {} --set train.epochs={}", run.string(), done + 1));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(metrics_of(run).size(), done + 1);
}

TEST_F(DistributedCli, BadLaunchesAreOneLineOnEveryRank) {
  TempDir dir;
  // A global batch smaller than the world, under torchrun: every rank says so, nothing is trained.
  const CliResult small = run_command(under_torchrun(
      2, fmt::format("train {} --set train.batch_size=1 --out {}", kSmall, (dir / "small").string())));
  EXPECT_NE(small.exit_code, 0);
  for (const char* rank : {"[default0]:", "[default1]:"}) {
    EXPECT_NE(small.err.find(fmt::format("{}torchae: error: config: train.batch_size: 1 is smaller than the 2 ranks",
                                         rank)),
              std::string::npos)
        << small.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "small" / "checkpoint.pt"));

  // Configurations that differ between ranks.
  {
    TempDir here;
    const int port = free_port();
    const auto out = (here / "run").string();
    run_command(by_hand(here.path(), 0, 2, port, fmt::format("train {} --out {}", kSmall, out)) + " " +
                by_hand(here.path(), 1, 2, port, fmt::format("train {} --set model.code_size=8 --out {}", kSmall, out)));
    expect_every_rank_fails(wait_for_ranks(here.path(), 2),
                            "the ranks were given different configurations: model.code_size is 16 on rank 0 and 8 on "
                            "rank 1");
    EXPECT_FALSE(std::filesystem::exists(here / "run" / "checkpoint.pt"));
  }
  // A rank started from another build of the program.
  {
    TempDir here;
    const auto copy = here / "torchae-other";
    std::filesystem::copy_file(TORCHAE_CLI, copy);
    std::ofstream(copy, std::ios::app) << '\n';
    const int port = free_port();
    const std::string args = fmt::format("train {} --out {}", kSmall, (here / "run").string());
    run_command(by_hand(here.path(), 0, 2, port, args) + " " +
                by_hand(here.path(), 1, 2, port, args, fmt::format("'{}'", copy.string())));
    expect_every_rank_fails(wait_for_ranks(here.path(), 2), "the ranks run different programs: rank 0 runs torchae");
  }
  // A store nobody hosts.
  {
    TempDir here;
    const int port = free_port();
    run_command(by_hand(here.path(), 1, 2, port, fmt::format("train {} --timeout 2 --out {}", kSmall, (here / "r").string())));
    const RankOutcome rank = wait_for_rank(here.path(), 1);
    test::expect_one_line_error(CliResult{rank.exit_code, "", rank.err},
                                fmt::format("rank 1: cannot reach the store at 127.0.0.1:{} (MASTER_ADDR:MASTER_PORT) "
                                            "within 2 s",
                                            port));
  }
  // A port already in use.
  {
    TempDir here;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(fd, 1), 0);
    socklen_t length = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    const int port = ntohs(address.sin_port);
    run_command(by_hand(here.path(), 0, 2, port, fmt::format("train {} --timeout 2 --out {}", kSmall, (here / "r").string())));
    const RankOutcome rank = wait_for_rank(here.path(), 0);
    ::close(fd);
    test::expect_one_line_error(CliResult{rank.exit_code, "", rank.err},
                                fmt::format("rank 0: cannot host the store at 127.0.0.1:{}: the port is in use", port));
  }
}

// Two torchrun agents on this machine, each of one rank, meet through a c10d rendezvous on the
// loopback address and train the run one agent of two ranks trains.
TEST_F(DistributedCli, TwoNodesOfOneRankTrainAsOneNodeOfTwo) {
  TempDir dir;
  const std::string args = kSmall + " --set train.epochs=2";
  const CliResult one_node =
      run_command(under_torchrun(2, fmt::format("train {} --out {}", args, (dir / "one_node").string())));
  ASSERT_EQ(one_node.exit_code, 0) << one_node.err;
  const int port = free_port();
  const std::string agent = fmt::format(
      "{}torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:{} --rdzv_id t{} "
      "-r 2 -t 2 --no_python {} train {} --out {}",
      torchrun_tmpdir(), port, port, cli(), args, (dir / "two_nodes").string());
  const CliResult nodes = run_command(fmt::format("({} > '{}' 2>&1 &) ; {}", agent, (dir / "node1.log").string(), agent));
  ASSERT_EQ(nodes.exit_code, 0) << nodes.err;
  for (int i = 0; i < 300 && metrics_of(dir / "two_nodes").size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  expect_same_losses(dir / "two_nodes", dir / "one_node", 1e-6);
}

// The library's research script (tools/examples/train_data_parallel.cpp) under torchrun.
TEST_F(DistributedCli, TheLibraryExampleTrainsAlikeAloneAndUnderTorchrun) {
  TempDir dir;
  const CliResult alone = run_command(fmt::format("'{}' {} 2000", TORCHAE_DATA_PARALLEL_EXAMPLE, (dir / "a").string()));
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  const CliResult ranks = run_command(under_torchrun(2, (dir / "b").string() + " 2000",
                                                     fmt::format("'{}'", TORCHAE_DATA_PARALLEL_EXAMPLE)));
  ASSERT_EQ(ranks.exit_code, 0) << ranks.err;
  const auto loss = [](const std::string& out) {
    const auto at = out.find("validation loss ");
    return at == std::string::npos ? -1.0 : std::stod(out.substr(at + 16));
  };
  ASSERT_GT(loss(alone.out), 0.0) << alone.out;
  EXPECT_NEAR(loss(ranks.out), loss(alone.out), 1e-5 * loss(alone.out)) << ranks.out;
  expect_same_losses(dir / "b", dir / "a", 1e-5);
}

}  // namespace
}  // namespace torchae
