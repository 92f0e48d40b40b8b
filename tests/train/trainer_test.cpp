#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/core/runtime.h"
#include "torchae/models/registry.h"
#include "torchae/nn/fused.h"
#include "torchae/train/run.h"
#include "torchae/train/trainer.h"
#include "torchae/viz/pictures.h"

namespace torchae {
namespace {

using test::TempDir;
using test::TorchaeTest;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

Dataset random_data(int64_t n) { return {torch::rand({n, 1, 6, 5}), torch::arange(n) % 10}; }

std::shared_ptr<Autoencoder> small_model(int64_t seed = 0) {
  torch::manual_seed(seed);
  return build_model({{"code_size", 4}, {"hidden", {12}}}, kSpec).model;
}

TrainOptions small_options(int64_t epochs) {
  TrainOptions o = test::quiet_cpu_options(epochs);
  o.batch_size = 16;
  o.lr = 3e-3;
  return o;
}

std::vector<double> losses_of(const std::filesystem::path& metrics) {
  std::vector<double> values;
  for (const auto& line : test::read_lines(metrics)) {
    const Json j = Json::parse(line);
    values.push_back(j["train_loss"].get<double>());
    values.push_back(j["val_loss"].get<double>());
  }
  return values;
}

// An autoencoder the trainer has never heard of: one affine map each way, and a loss that
// turns NaN on a chosen call, to exercise the divergence guard.
struct ProbeAutoencoder : torch::nn::Module, Autoencoder {
  ProbeAutoencoder() {
    enc = register_module("enc", torch::nn::Linear(30, 3));
    dec = register_module("dec", torch::nn::Linear(3, 30));
  }
  Output forward(const torch::Tensor& x) override {
    Output out;
    out.code = encode(x);
    out.reconstruction = dec->forward(out.code).view(x.sizes());
    return out;
  }
  torch::Tensor encode(const torch::Tensor& x) override { return enc->forward(x.flatten(1)); }
  torch::Tensor decode(const torch::Tensor& h) override { return dec->forward(h); }
  Losses loss(const torch::Tensor& target, const Output& out) override {
    torch::Tensor l = (out.reconstruction - target).pow(2).mean();
    if (is_training() && ++calls == nan_on_call) l = l * std::numeric_limits<float>::quiet_NaN();
    return {l, {{"recon", l}}};
  }
  int64_t code_size() const override { return 3; }
  torch::nn::Module& module() override { return *this; }

  torch::nn::Linear enc{nullptr}, dec{nullptr};
  int64_t calls = 0;
  int64_t nan_on_call = -1;
};

class TrainerTest : public TorchaeTest {};

TEST_F(TrainerTest, LearnsAndLogsOneLinePerEpoch) {
  TempDir dir;
  const Dataset train = random_data(256), val = random_data(64);
  Trainer trainer(small_model(), small_options(3), dir.path());
  trainer.fit(train, val);
  const auto lines = test::read_lines(dir / kMetricsFile);
  ASSERT_EQ(lines.size(), 3u);
  const Json first = Json::parse(lines.front()), last = Json::parse(lines.back());
  EXPECT_EQ(first["epoch"], 1);
  EXPECT_EQ(last["epoch"], 3);
  EXPECT_LT(last["train_loss"].get<double>(), first["train_loss"].get<double>());
  EXPECT_TRUE(last["train"].contains("recon"));
  EXPECT_TRUE(last["val"].contains("recon"));
  EXPECT_GT(last["samples_per_s"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(dir / kCheckpointFile));
}

TEST_F(TrainerTest, SameSeedSameResult) {
  const Dataset train = random_data(256), val = random_data(64);
  std::vector<std::vector<double>> runs;
  for (int r = 0; r < 2; ++r) {
    TempDir dir;
    Trainer trainer(small_model(7), small_options(2), dir.path());
    trainer.fit(train, val);
    runs.push_back(losses_of(dir / kMetricsFile));
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST_F(TrainerTest, ResumeContinuesExactly) {
  const Dataset train = random_data(256), val = random_data(64);
  TempDir straight, split;
  {
    Trainer trainer(small_model(), small_options(4), straight.path());
    trainer.fit(train, val);
  }
  {
    Trainer trainer(small_model(), small_options(2), split.path());
    trainer.fit(train, val);
  }
  torch::manual_seed(999);  // whatever the global generator holds now, resume restores it
  auto resumed_model = small_model(42);
  Trainer resumed(resumed_model, small_options(4), split.path());
  ASSERT_TRUE(resumed.resume());
  EXPECT_EQ(resumed.epochs_done(), 2);
  resumed.fit(train, val);
  EXPECT_EQ(losses_of(straight / kMetricsFile), losses_of(split / kMetricsFile));
}

TEST_F(TrainerTest, DivergenceStopsWithEpochAndStepAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  const Dataset train = random_data(64), val = random_data(16);
  auto probe = std::make_shared<ProbeAutoencoder>();
  probe->nan_on_call = 4 + 3;  // 4 steps per epoch (64 / 16): the 3rd step of epoch 2
  Trainer trainer(probe, small_options(5), dir.path());
  try {
    trainer.fit(train, val);
    FAIL() << "expected the divergence guard to stop training";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("loss is nan at epoch 2, step 3 of 4"), std::string::npos) << message;
    EXPECT_NE(message.find("last good checkpoint (epoch 1) is left intact"), std::string::npos) << message;
  }
  auto restored = std::make_shared<ProbeAutoencoder>();
  Trainer check(restored, small_options(5), dir.path());
  ASSERT_TRUE(check.resume());
  EXPECT_EQ(check.epochs_done(), 1);
  for (const auto& p : restored->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  EXPECT_EQ(test::read_lines(dir / kMetricsFile).size(), 1u);
}

TEST_F(TrainerTest, EarlyStoppingAfterPatienceEpochsWithoutImprovement) {
  TempDir dir;
  TrainOptions o = small_options(10);
  o.patience = 2;
  o.min_delta = 1e9;  // no epoch after the first can improve by that much
  Trainer trainer(small_model(), o, dir.path());
  trainer.fit(random_data(64), random_data(16));
  EXPECT_EQ(trainer.epochs_done(), 3);
  EXPECT_TRUE(trainer.stopped_early());
  // Resuming a run that stopped early does nothing more.
  Trainer again(small_model(), o, dir.path());
  ASSERT_TRUE(again.resume());
  again.fit(random_data(64), random_data(16));
  EXPECT_EQ(again.epochs_done(), 3);
}

TEST_F(TrainerTest, LearningRateSchedules) {
  TrainOptions o = small_options(10);
  o.lr = 0.1;
  o.schedule = "step";
  o.step_size = 3;
  o.gamma = 0.5;
  EXPECT_DOUBLE_EQ(o.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(o.lr_at(2), 0.1);
  EXPECT_DOUBLE_EQ(o.lr_at(3), 0.05);
  EXPECT_DOUBLE_EQ(o.lr_at(9), 0.0125);
  o.schedule = "cosine";
  o.min_lr = 0.01;
  EXPECT_DOUBLE_EQ(o.lr_at(0), 0.1);
  EXPECT_NEAR(o.lr_at(5), 0.055, 1e-12);
  EXPECT_GT(o.lr_at(9), 0.01);

  TempDir dir;
  o.epochs = 4;
  o.schedule = "step";
  o.step_size = 2;
  Trainer trainer(small_model(), o, dir.path());
  trainer.fit(random_data(32), random_data(8));
  std::vector<double> lrs;
  for (const auto& line : test::read_lines(dir / kMetricsFile)) lrs.push_back(Json::parse(line)["lr"].get<double>());
  EXPECT_EQ(lrs, (std::vector<double>{0.1, 0.1, 0.05, 0.05}));
}

TEST_F(TrainerTest, GradientClippingBoundsTheUpdate) {
  TrainOptions o = small_options(1);
  o.optimizer = "sgd";
  o.lr = 1.0;
  o.clip_grad_norm = 1e-3;
  auto model = small_model();
  Trainer trainer(model, o);
  std::vector<torch::Tensor> before;
  for (const auto& p : model->module().parameters()) before.push_back(p.detach().clone());
  trainer.step(torch::rand({16, 1, 6, 5}));
  double squared = 0.0;
  const auto after = model->module().parameters();
  for (std::size_t i = 0; i < before.size(); ++i) squared += (after[i] - before[i]).pow(2).sum().item<double>();
  EXPECT_LE(std::sqrt(squared), 1e-3 * (1 + 1e-4));
  EXPECT_GT(std::sqrt(squared), 0.0);
}

TEST_F(TrainerTest, SgdWithNesterovMomentumTrains) {
  TrainOptions o = small_options(3);
  o.optimizer = "sgd";
  o.lr = 0.5;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-4;
  TempDir dir;
  Trainer trainer(small_model(), o, dir.path());
  trainer.fit(random_data(256), random_data(32));
  const auto losses = losses_of(dir / kMetricsFile);
  EXPECT_LT(losses[4], losses[0]);
}

TEST_F(TrainerTest, AModelWithConvolutionsTakesEveryCoreByDefault) {
  const DataSpec images{{1, 8, 8}, 0, 1, 1};
  const auto conv = build_model({{"backbone", "conv"}, {"code_size", 0}, {"channels", {4}}}, images).model;
  const int initial = at::get_num_threads();
  { Trainer mlp(small_model(), small_options(1)); }
  const int library_default = at::get_num_threads();
  { Trainer trainer(conv, small_options(1)); }
  EXPECT_EQ(at::get_num_threads(), cores_per_process());
  // The next trainer does not inherit it; an explicit count wins.
  { Trainer mlp(small_model(), small_options(1)); }
  EXPECT_EQ(at::get_num_threads(), library_default);
  TrainOptions one = small_options(1);
  one.threads = 1;
  { Trainer trainer(conv, one); }
  EXPECT_EQ(at::get_num_threads(), 1);
  at::set_num_threads(initial);
}

TEST_F(TrainerTest, TheBlasThreadTunerTimesEachCandidateInTurnAndChoosesTheFastestByMedian) {
  EXPECT_EQ(BlasThreadTuner(8).candidates(), (std::vector<int64_t>{8, 4, 2, 1}));
  EXPECT_EQ(BlasThreadTuner(3).candidates(), (std::vector<int64_t>{3, 1}));
  BlasThreadTuner tuner(2, /*warmup=*/1, /*rounds=*/3, /*steps_per_turn=*/2);
  // One untimed step, then turns of two steps, the order reversed every other round.
  const std::vector<int64_t> schedule{2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1};
  std::vector<int64_t> ran;
  while (!tuner.measured()) {
    ran.push_back(tuner.next());
    // Two threads take 5 ms a step, one 3 ms, but for one turn of one thread in a busy moment
    // (steps 5 and 6): by their means one thread would lose, by their medians it wins.
    const std::size_t step = ran.size() - 1;
    tuner.record(step == 5 || step == 6 ? 50e-3 : ran.back() == 2 ? 5e-3 : 3e-3);
  }
  EXPECT_EQ(ran, schedule);
  const std::vector<double> per_step = tuner.seconds_per_step();
  ASSERT_EQ(per_step.size(), 2u);
  EXPECT_DOUBLE_EQ(per_step[0], 5e-3);
  EXPECT_DOUBLE_EQ(per_step[1], 3e-3);
  EXPECT_FALSE(tuner.decided());
  tuner.decide(per_step);
  EXPECT_EQ(tuner.choice(), 1);
  EXPECT_EQ(tuner.next(), 1);
  tuner.record(1.0);
  EXPECT_EQ(tuner.timings().size(), schedule.size()) << "nothing is recorded once it has chosen";

  // Restored from a checkpoint's timings, a tuner goes on with the schedule where they stop, or,
  // given the run's choice, runs at it.
  BlasThreadTuner resumed(2, 1, 3, 2);
  resumed.restore({tuner.timings().begin(), tuner.timings().begin() + 6}, 0);
  EXPECT_FALSE(resumed.decided());
  EXPECT_EQ(resumed.next(), schedule[6]);
  BlasThreadTuner chosen(2, 1, 3, 2);
  chosen.restore(tuner.timings(), 1);
  EXPECT_TRUE(chosen.decided());
  EXPECT_EQ(chosen.next(), 1);
}

TEST_F(TrainerTest, BlasThreadsAutoChoosesFromTheRunsFirstStepsAndAResumedRunGoesOnFromItsCheckpoint) {
  // Two OpenBLAS threads to choose from, whatever the machine's cores.
  ASSERT_TRUE(set_blas_threads(2)) << "LibTorch's BLAS here is OpenBLAS (scripts/install-deps.sh installs it)";
  const int64_t own = blas_threads();
  const Dataset train = random_data(160), val = random_data(32);  // 10 steps an epoch
  TrainOptions o = small_options(1);
  o.blas_threads = kAutoBlasThreads;
  TempDir dir;
  {
    Trainer trainer(small_model(), o, dir.path());
    trainer.fit(train, val);
    ASSERT_NE(trainer.blas_tuner(), nullptr);
    EXPECT_FALSE(trainer.blas_tuner()->decided()) << "the trial takes more than an epoch's 10 steps";
    EXPECT_EQ(trainer.blas_tuner()->timings().size(), 10u);
  }
  o.epochs = 3;
  int64_t chosen = 0;
  {
    Trainer trainer(small_model(), o, dir.path());
    ASSERT_TRUE(trainer.resume());
    const std::vector<double> measured = trainer.blas_tuner()->timings();
    ASSERT_EQ(measured.size(), 10u);
    trainer.fit(train, val);
    const BlasThreadTuner& tuner = *trainer.blas_tuner();
    ASSERT_TRUE(tuner.decided());
    EXPECT_EQ(std::vector<double>(tuner.timings().begin(), tuner.timings().begin() + 10), measured);
    EXPECT_EQ(blas_threads(), tuner.choice());
    const auto& candidates = tuner.candidates();
    EXPECT_NE(std::find(candidates.begin(), candidates.end(), tuner.choice()), candidates.end());
    chosen = tuner.choice();
  }
  o.epochs = 4;
  {
    Trainer trainer(small_model(), o, dir.path());
    ASSERT_TRUE(trainer.resume());
    ASSERT_TRUE(trainer.blas_tuner()->decided()) << "a run that has chosen does not measure again";
    EXPECT_EQ(trainer.blas_tuner()->choice(), chosen);
    trainer.fit(train, val);
    EXPECT_EQ(blas_threads(), chosen);
  }
  // The next trainer does not inherit the choice; a count given is set.
  {
    Trainer trainer(small_model(), small_options(1));
    EXPECT_EQ(trainer.blas_tuner(), nullptr);
    EXPECT_EQ(blas_threads(), own);
  }
  TrainOptions one = small_options(1);
  one.blas_threads = 1;
  {
    Trainer trainer(small_model(), one);
    trainer.step(random_data(16).inputs);
    EXPECT_EQ(blas_threads(), 1);
  }
  set_blas_threads(0);
}

// With the step's arithmetic on one core, the trainer has Adam update each parameter on another as
// soon as backward has its gradient (when the process has two cores or more; on one, at the end
// of the step, which the test then checks). For every family, the parameters after a few steps must
// be those of steps that update them all at the end (FusedAdam::step after backward), bit for bit:
// no part of backward may read a parameter after its gradient is final. A model with an adversary
// (WAE-GAN) is always updated at the end (its adversary's loss reads it): its configurations are
// left out here.
class AdamBehindBackwardFamily : public TorchaeTest, public ::testing::WithParamInterface<std::string> {};

// The Adam tests' end: `trained`'s parameters must be `plain`'s bit for bit; then LibTorch's and
// OpenBLAS's threads are set back.
void expect_the_same_parameters(Autoencoder& trained, Autoencoder& plain) {
  const auto expected = plain.module().named_parameters();
  for (const auto& p : trained.module().named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), expected[p.key()])) << p.key();
  }
  set_blas_threads(0);
  set_threads(0);
}

std::vector<std::string> configs_without_an_adversary() {
  std::vector<std::string> configs;
  for (const std::string& config : test::family_configs()) {
    const std::shared_ptr<Autoencoder> model = build_model(Json::parse(config), kSpec).model;
    auto* adversarial = dynamic_cast<Adversarial*>(model.get());
    if (!adversarial || adversarial->adversary_parameters().empty()) configs.push_back(config);
  }
  return configs;
}

// Steps a trainer with `o` on a model of `section` and, beside it, a twin of the model stepped
// by FusedAdam::step after backward, its products paired as the trainer's are (with a helper of
// its own) or not; then expects the same parameters, bit for bit.
void expect_trainer_and_twin_alike(const Json& section, const TrainOptions& o) {
  torch::manual_seed(3);
  const std::shared_ptr<Autoencoder> trained = build_model(section, kSpec).model;
  torch::manual_seed(3);
  const std::shared_ptr<Autoencoder> plain = build_model(section, kSpec).model;
  Trainer trainer(trained, o);
  HelperThread helper;
  std::vector<torch::Tensor> parameters = plain->module().parameters();
  FusedAdam adam(parameters, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
  for (int64_t i = 0; i < 4; ++i) {
    const Dataset batch = random_data(16);
    torch::manual_seed(100 + i);
    trainer.step(batch.inputs, batch.labels);
    ASSERT_EQ(at::get_num_threads(), 1);
    if (o.blas_threads > 0) ASSERT_EQ(blas_threads(), o.blas_threads);
    torch::manual_seed(100 + i);
    for (auto& p : parameters) p.mutable_grad().reset();
    {
      std::optional<PairedProducts> paired;
      if (trainer.paired_products()) paired.emplace(helper);
      const Output out = plain->forward(batch.inputs);
      const Losses losses =
          plain->supervised() ? plain->supervised_loss(out, batch.labels) : plain->loss(batch.inputs, out);
      losses.total.backward();
    }
    adam.step();
  }
  expect_the_same_parameters(*trained, *plain);
}

TEST_P(AdamBehindBackwardFamily, UpdatesEveryParameterAsAnUpdateAtTheEndOfTheStep) {
  TrainOptions o = small_options(1);
  o.threads = 1;
  o.blas_threads = 1;
  o.paired_products = false;  // else the products take the second core, and Adam's update is made in halves after
  expect_trainer_and_twin_alike(Json::parse(GetParam()), o);
}

// With the products paired (two cores, the default), every family trains: its parameters after a
// few steps are those of a twin whose products are paired alike, updated at the end, bit for bit
// (Adam's update made in halves, on the helper and here). On another number of cores nothing is
// paired, and the test checks the plain step.
TEST_P(AdamBehindBackwardFamily, PairedProductsStepAsAPairedTwinUpdatedAtTheEnd) {
  TrainOptions o = small_options(1);
  o.threads = 1;
  expect_trainer_and_twin_alike(Json::parse(GetParam()), o);
}

INSTANTIATE_TEST_SUITE_P(Families, AdamBehindBackwardFamily, ::testing::ValuesIn(configs_without_an_adversary()));

// With OpenBLAS on more threads than one (and LibTorch on one), the trainer splits Adam's update
// after backward in two, each parameter at a multiple of 64 elements near its middle, the second
// halves made on its helper thread (when the process has two cores or more; on one, all of it
// here, which the test then checks). The parameters must be those of FusedAdam::step, bit for bit,
// with the products paired (the default on two cores, the twin's paired alike) and not.
TEST_F(TrainerTest, AdamInTwoHalvesUpdatesAsOnePassOverEachParameter) {
  const DataSpec spec{{1, 28, 28}, 0, 1, 1};
  const Json section{{"code_size", 32}, {"hidden", {256}}};
  for (const bool pairs : {true, false}) {
    SCOPED_TRACE(pairs ? "paired" : "not paired");
    torch::manual_seed(5);
    const std::shared_ptr<Autoencoder> halves = build_model(section, spec).model;
    torch::manual_seed(5);
    const std::shared_ptr<Autoencoder> plain = build_model(section, spec).model;
    std::vector<torch::Tensor> parameters = plain->module().parameters();
    int64_t elements = 0;
    for (const auto& p : parameters) elements += p.numel();
    ASSERT_EQ(elements, 419120);  // over the 128 K under which the update is made here alone
    TrainOptions o = small_options(1);
    o.threads = 1;
    o.blas_threads = 2;
    o.paired_products = pairs;
    Trainer trainer(halves, o);
    EXPECT_EQ(trainer.paired_products(), pairs && cores_per_process() == 2);
    HelperThread helper;
    FusedAdam adam(parameters, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
    for (int64_t i = 0; i < 4; ++i) {
      const torch::Tensor batch = torch::rand({16, 1, 28, 28});
      trainer.step(batch);
      ASSERT_NE(blas_threads(), 1);
      ASSERT_EQ(at::get_num_threads(), 1);
      for (auto& p : parameters) p.mutable_grad().reset();
      {
        std::optional<PairedProducts> paired;
        if (trainer.paired_products()) paired.emplace(helper);
        plain->loss(batch, plain->forward(batch)).total.backward();
      }
      adam.step();
    }
    expect_the_same_parameters(*halves, *plain);
  }
}

std::shared_ptr<Autoencoder> small_denoiser(int64_t seed = 0) {
  torch::manual_seed(seed);
  return build_model({{"family", "denoising"}, {"code_size", 4}, {"hidden", {12}}, {"corruption", "gaussian"},
                      {"level", 0.3}},
                     kSpec)
      .model;
}

std::vector<double> column(const std::filesystem::path& metrics, const char* key) {
  std::vector<double> values;
  for (const auto& line : test::read_lines(metrics)) values.push_back(Json::parse(line)[key].get<double>());
  return values;
}

// With train.validate_corrupted a denoiser is validated on its validation set corrupted once, by
// its own seeded generator: training is the same step for step, and the validation loss is the
// model's loss on that corrupted copy, scored against the clean one.
TEST_F(TrainerTest, ADenoiserIsValidatedOnItsValidationSetCorruptedAsInTraining) {
  const Dataset train = random_data(256), val = random_data(64);
  TempDir clean_dir, corrupted_dir;
  // Each model made just before its training: the seed also starts the corruption's draws.
  auto clean_model = small_denoiser();
  Trainer clean(clean_model, small_options(3), clean_dir.path());
  clean.fit(train, val);
  TrainOptions options = small_options(3);
  options.validate_corrupted = true;
  auto corrupted_model = small_denoiser();
  Trainer corrupted(corrupted_model, options, corrupted_dir.path());
  corrupted.fit(train, val);
  // Training did not see the validation's random numbers: the same losses, the same weights.
  EXPECT_EQ(column(clean_dir / kMetricsFile, "train_loss"), column(corrupted_dir / kMetricsFile, "train_loss"));
  const auto a = clean_model->module().parameters(), b = corrupted_model->module().parameters();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  // The last epoch's validation loss is the trained model's loss on the seeded corruption.
  auto& denoiser = dynamic_cast<Corrupting&>(*corrupted_model);
  const Corrupted noisy = corrupt_seeded(val.inputs, denoiser.corruption(), static_cast<uint64_t>(options.seed));
  EXPECT_FALSE(torch::equal(noisy.input, val.inputs));
  corrupted_model->module().eval();
  double expected = 0.0;
  {
    torch::NoGradGuard no_grad;
    expected = corrupted_model->loss(val.inputs, denoiser.forward_corrupted(noisy)).total.item<double>();
  }
  const std::vector<double> on_clean = column(clean_dir / kMetricsFile, "val_loss"),
                            on_corrupted = column(corrupted_dir / kMetricsFile, "val_loss");
  EXPECT_NEAR(on_corrupted.back(), expected, 1e-6 * expected);
  for (std::size_t i = 0; i < on_clean.size(); ++i) EXPECT_NE(on_corrupted[i], on_clean[i]) << i;
  // The same corrupted inputs every time: evaluated again, the same figure.
  EXPECT_DOUBLE_EQ(corrupted.evaluate(val, noisy).total, corrupted.evaluate(val, noisy).total);
  EXPECT_NEAR(corrupted.evaluate(val, noisy).total, expected, 1e-6 * expected);
  // A model that is not trained on corrupted batches has nothing to validate so.
  try {
    Trainer refused(small_model(), options);
    FAIL() << "a plain autoencoder was given validate_corrupted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.validate_corrupted: the model is not trained on corrupted batches"),
              std::string::npos)
        << e.what();
  }
}

// Resumed with validate_corrupted, a run continues as if it had never stopped (the corruption
// is drawn again from its seed, not from the restored generator).
TEST_F(TrainerTest, ADenoiserValidatedOnCorruptedInputsResumesExactly) {
  const Dataset train = random_data(256), val = random_data(64);
  TrainOptions four = small_options(4), two = small_options(2);
  four.validate_corrupted = two.validate_corrupted = true;
  TempDir straight, split;
  {
    Trainer trainer(small_denoiser(), four, straight.path());
    trainer.fit(train, val);
  }
  {
    Trainer trainer(small_denoiser(), two, split.path());
    trainer.fit(train, val);
  }
  torch::manual_seed(999);
  Trainer resumed(small_denoiser(42), four, split.path());
  ASSERT_TRUE(resumed.resume());
  resumed.fit(train, val);
  EXPECT_EQ(losses_of(straight / kMetricsFile), losses_of(split / kMetricsFile));
}

// A run of `config` whose configuration and checkpoint predate `section`.`key` (erased from both)
// resumes in `run_dir`, as trained with what the key's default does; setting it on resume
// (`set_on_resume`) is refused.
void expect_a_run_from_before_the_key_resumes(const Json& config, const std::string& section, const std::string& key,
                                              const std::string& set_on_resume, const std::filesystem::path& run_dir) {
  torchae::Run old = prepare_run(config, /*with_test=*/false);
  ASSERT_TRUE(old.config[section].contains(key));
  old.config[section].erase(key);
  fit_run(old, run_dir, /*resume=*/false);
  EXPECT_FALSE(load_json_file(run_dir / kConfigFile)[section].contains(key));
  EXPECT_NO_THROW(resume_run(run_dir, {"train.epochs=2"}));
  EXPECT_EQ(test::read_lines(run_dir / kMetricsFile).size(), 2u);
  try {
    resume_run(run_dir, {"train.epochs=3", set_on_resume});
    FAIL() << set_on_resume << " on resume";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only train.epochs"), std::string::npos) << e.what();
  }
}

// A conv run from before model.blocks resumes: its checkpoint, without the key, was trained
// without blocks, a list of zeros (each entry its own leaf of the configuration).
TEST_F(TrainerTest, AConvRunFromBeforeResidualBlocksResumes) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required";
  EXPECT_TRUE(added_with_old_behaviour("model.blocks.0", 0));
  EXPECT_TRUE(added_with_old_behaviour("model.blocks.3", 0));
  EXPECT_FALSE(added_with_old_behaviour("model.blocks.0", 1));
  EXPECT_FALSE(added_with_old_behaviour("model.hidden.0", 0));
  EXPECT_TRUE(added_with_old_behaviour("model.skips", false));
  EXPECT_FALSE(added_with_old_behaviour("train.skips", false));
  TempDir dir;
  expect_a_run_from_before_the_key_resumes({{"model", {{"family", "denoising"}, {"backbone", "conv"}, {"code_size", 0},
                                                       {"channels", {4}}, {"strides", {2}}}},
                                            {"data", {{"limit", 200}}},
                                            {"train", {{"epochs", 1}, {"progress", "none"}}}},
                                           "model", "blocks", "model.blocks=[1]", dir / "old");
}

// Orientation o of an image: mirrored left to right by bit 0, upside down by bit 1, then
// transposed by bit 2: the eight symmetries of the square, each its own.
TEST(OrientImages, GivesTheEightSymmetriesOfTheSquare) {
  const torch::Tensor image = torch::arange(2 * 3 * 3, torch::kFloat).view({1, 2, 3, 3});
  const torch::Tensor oriented = orient_images(image.expand({8, 2, 3, 3}), torch::arange(8));
  for (int64_t o = 0; o < 8; ++o) {
    torch::Tensor expected = image[0];
    if (o & 1) expected = expected.flip(-1);
    if (o & 2) expected = expected.flip(-2);
    if (o & 4) expected = expected.transpose(-1, -2);
    EXPECT_TRUE(torch::equal(oriented[o], expected)) << "orientation " << o;
    for (int64_t other = 0; other < o; ++other) EXPECT_FALSE(torch::equal(oriented[o], oriented[other]));
  }
  EXPECT_TRUE(torch::equal(oriented[0], image[0]));
  // Mirrored (orientations under 4) images need not be square; transposed ones must.
  const torch::Tensor wide = torch::rand({4, 1, 2, 5});
  EXPECT_TRUE(torch::equal(orient_images(wide, torch::tensor({0, 1, 2, 3}))[3], wide[3].flip({-1, -2})));
  EXPECT_THROW(orient_images(wide, torch::tensor({0, 4, 0, 0})), c10::Error);
}

// train.augment orients each training image at random, from a generator of its own: on images
// that every symmetry of the square leaves as they are, a denoiser (whose corruption draws from
// the training's generator) trains to the same parameters, bit for bit, as without it; on others
// it trains otherwise, the same way every time and across a resume. Images it cannot orient are
// one line, before any step.
TEST_F(TrainerTest, AugmentOrientsTheTrainingImagesFromAGeneratorOfItsOwnAndResumesExactly) {
  const DataSpec square{{1, 6, 6}, 0, 1, 1};
  const auto denoiser = [&](int64_t seed) {
    torch::manual_seed(seed);
    return build_model({{"family", "denoising"}, {"code_size", 4}, {"hidden", {12}}, {"corruption", "gaussian"},
                        {"level", 0.3}},
                       square)
        .model;
  };
  const auto options = [](const std::string& augment, int64_t epochs) {
    TrainOptions o = small_options(epochs);
    o.augment = augment;
    return o;
  };
  const auto fitted = [&](const Dataset& train, const Dataset& val, const std::string& augment,
                          const std::filesystem::path& dir) {
    const std::shared_ptr<Autoencoder> model = denoiser(0);
    Trainer trainer(model, options(augment, 2), dir);
    trainer.fit(train, val);
    return model;
  };
  torch::manual_seed(1);
  torch::Tensor symmetric = torch::rand({64, 1, 6, 6});
  symmetric = symmetric + symmetric.flip(-1);
  symmetric = symmetric + symmetric.flip(-2);
  symmetric = (symmetric + symmetric.transpose(-1, -2)) / 8;
  const Dataset plain = random_data(64), square_plain = {torch::rand({64, 1, 6, 6}), torch::arange(64) % 10};
  const Dataset square_symmetric = {symmetric, torch::arange(64) % 10};
  {
    TempDir none, dihedral;
    const auto a = fitted(square_symmetric, square_symmetric, "none", none.path());
    const auto b = fitted(square_symmetric, square_symmetric, "dihedral", dihedral.path());
    expect_the_same_parameters(*b, *a);
    EXPECT_EQ(losses_of(none / kMetricsFile), losses_of(dihedral / kMetricsFile));
  }
  {
    TempDir none, dihedral, again, flip;
    fitted(square_plain, square_plain, "none", none.path());
    fitted(square_plain, square_plain, "dihedral", dihedral.path());
    fitted(square_plain, square_plain, "dihedral", again.path());
    fitted(square_plain, square_plain, "flip", flip.path());
    const std::vector<double> oriented = losses_of(dihedral / kMetricsFile);
    EXPECT_NE(losses_of(none / kMetricsFile)[0], oriented[0]);
    EXPECT_NE(losses_of(flip / kMetricsFile)[0], oriented[0]);
    EXPECT_EQ(losses_of(again / kMetricsFile), oriented);
  }
  {
    TempDir straight, split;
    {
      Trainer trainer(denoiser(0), options("dihedral", 4), straight.path());
      trainer.fit(square_plain, square_plain);
    }
    {
      Trainer trainer(denoiser(0), options("dihedral", 2), split.path());
      trainer.fit(square_plain, square_plain);
    }
    torch::manual_seed(999);
    Trainer resumed(denoiser(42), options("dihedral", 4), split.path());
    ASSERT_TRUE(resumed.resume());
    resumed.fit(square_plain, square_plain);
    EXPECT_EQ(losses_of(straight / kMetricsFile), losses_of(split / kMetricsFile));
  }
  // 6 x 5 images can be mirrored, not turned; flat examples neither.
  {
    Trainer trainer(small_model(), options("flip", 1));
    EXPECT_NO_THROW(trainer.fit(plain, plain));
  }
  const auto refused = [&](const std::string& augment, const Dataset& data, const std::string& says) {
    Trainer trainer(small_model(), options(augment, 1));
    try {
      trainer.fit(data, data);
      FAIL() << augment << " trained";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused("dihedral", plain, "config: train.augment: \"dihedral\" needs square images, and the batches are [16, 1, 6, 5]");
  refused("flip", {plain.inputs.flatten(1), plain.labels}, "config: train.augment: \"flip\" needs images");
}

// A stack validates its denoising layers' pretraining on corrupted codes and its fine-tuning,
// which trains on clean batches, on clean ones; a run from before the option resumes.
TEST_F(TrainerTest, AStackValidatesItsDenoisingLayersOnCorruptedInputsAndOlderRunsResume) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required";
  TempDir dir;
  auto config = [](bool corrupted) {
    return Json{{"model",
                 {{"family", "stacked"},
                  {"layers", {{{"units", 16}, {"family", "denoising"}}, {{"units", 8}, {"family", "denoising"}}}}}},
                {"data", {{"limit", 300}}},
                {"train", {{"epochs", 1}, {"progress", "none"}, {"validate_corrupted", corrupted}}}};
  };
  train_run(config(false), dir / "clean");
  train_run(config(true), dir / "corrupted");
  const auto clean = test::read_lines(dir / "clean" / kMetricsFile),
             corrupted = test::read_lines(dir / "corrupted" / kMetricsFile);
  ASSERT_EQ(clean.size(), corrupted.size());
  int pretrained = 0, finetuned = 0;
  for (std::size_t i = 0; i < clean.size(); ++i) {
    const Json a = Json::parse(clean[i]), b = Json::parse(corrupted[i]);
    SCOPED_TRACE(b.dump());
    EXPECT_EQ(a["train_loss"], b["train_loss"]);
    if (b["phase"] == "pretrain") {
      ++pretrained;
      EXPECT_NE(b["val_loss"], a["val_loss"]);
    } else {
      ++finetuned;
      EXPECT_EQ(a["val_loss"], b["val_loss"]);
    }
  }
  EXPECT_EQ(pretrained, 2);
  EXPECT_EQ(finetuned, 1);
  // The curves say which validation figures they draw.
  EXPECT_EQ(training_curves(dir / "clean").series.at(1).name, "val loss");
  EXPECT_EQ(training_curves(dir / "corrupted").series.at(1).name, "val loss (corrupted while pretraining)");
  train_run({{"model", {{"family", "denoising"}, {"code_size", 4}, {"hidden", {16}}}},
             {"data", {{"limit", 300}}},
             {"train", {{"epochs", 1}, {"progress", "none"}, {"validate_corrupted", true}}}},
            dir / "denoiser");
  EXPECT_EQ(training_curves(dir / "denoiser").series.at(1).name, "val loss (corrupted)");

  // A run whose configuration and checkpoint predate the key resumes (it had the default). Set
  // on resume, it would change what the validation loss of the run means: refused.
  expect_a_run_from_before_the_key_resumes({{"model", {{"family", "denoising"}, {"code_size", 4}, {"hidden", {16}}}},
                                            {"data", {{"limit", 300}}},
                                            {"train", {{"epochs", 1}, {"progress", "none"}}}},
                                           "train", "validate_corrupted", "train.validate_corrupted=true",
                                           dir / "old");
}

// A stack orients the images its first layer and its fine-tuning train on, not the codes its later
// layers train on; a run from before train.augment resumes, and may not take it up on resume.
TEST_F(TrainerTest, AStackOrientsItsImagesNotItsCodesAndRunsFromBeforeTheKeyResume) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required";
  TempDir dir;
  auto config = [](const std::string& augment) {
    return Json{{"model",
                 {{"family", "stacked"},
                  {"layers", {{{"units", 16}, {"family", "denoising"}}, {{"units", 8}, {"family", "denoising"}}}}}},
                {"data", {{"limit", 300}}},
                {"train", {{"epochs", 1}, {"progress", "none"}, {"augment", augment}}}};
  };
  train_run(config("none"), dir / "none");
  train_run(config("dihedral"), dir / "dihedral");
  const auto none = test::read_lines(dir / "none" / kMetricsFile),
             dihedral = test::read_lines(dir / "dihedral" / kMetricsFile);
  ASSERT_EQ(dihedral.size(), 3u);
  ASSERT_EQ(none.size(), 3u);
  EXPECT_NE(Json::parse(none[0])["train_loss"], Json::parse(dihedral[0])["train_loss"]);
  // Each pixel's own mean, taken off before the examples are oriented, would not follow the pixel.
  Json centred = config("flip");
  centred["data"]["center"] = true;
  try {
    prepare_run(centred, /*with_test=*/false);
    FAIL() << "train.augment with data.center";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config: train.augment: orients the examples after data.center"),
              std::string::npos)
        << e.what();
  }
  expect_a_run_from_before_the_key_resumes({{"model", {{"family", "denoising"}, {"code_size", 4}, {"hidden", {16}}}},
                                            {"data", {{"limit", 300}}},
                                            {"train", {{"epochs", 1}, {"progress", "none"}}}},
                                           "train", "augment", "train.augment=flip", dir / "old");
}

TEST_F(TrainerTest, OptionsAreReadStrictly) {
  auto error_of = [](const Json& section) -> std::string {
    try {
      OptionReader r(section, "train");
      TrainOptions::from(r);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(error_of({{"epochs", 0}}), "config: train.epochs: must be >= 1, got 0");
  EXPECT_NE(error_of({{"nesterov", true}}).find("train.nesterov: Nesterov momentum needs optimizer sgd"),
            std::string::npos);
  EXPECT_NE(error_of({{"schedule", "linear"}}).find("train.schedule: expected one of none, step, cosine"),
            std::string::npos);
  EXPECT_NE(error_of({{"batchsize", 3}}).find("train.batchsize: unknown key"), std::string::npos);
  EXPECT_EQ(error_of({{"epochs", 2}, {"optimizer", "sgd"}, {"momentum", 0.9}, {"nesterov", true}}), "(no error)");
  // A cosine schedule from lr "down" to a larger min_lr would climb.
  EXPECT_NE(error_of({{"schedule", "cosine"}, {"lr", 1e-3}, {"min_lr", 1e-2}})
                .find("train.min_lr: must not exceed train.lr (0.001) with schedule cosine"),
            std::string::npos);
  EXPECT_EQ(error_of({{"schedule", "cosine"}, {"lr", 1e-3}, {"min_lr", 1e-3}}), "(no error)");
  EXPECT_EQ(error_of({{"schedule", "step"}, {"lr", 1e-3}, {"min_lr", 1e-2}}), "(no error)");  // unused there
  EXPECT_EQ(error_of({{"blas_threads", "fast"}}),
            "config: train.blas_threads: expected an integer in [0, 1024] or \"auto\", got \"fast\"");
  EXPECT_NE(error_of({{"blas_threads", -1}}).find("config: train.blas_threads: must be"), std::string::npos);
  EXPECT_EQ(error_of({{"blas_threads", "auto"}}), "(no error)");
  EXPECT_EQ(error_of({{"blas_threads", 2}}), "(no error)");
  OptionReader auto_reader(Json{{"blas_threads", "auto"}}, "train");
  const TrainOptions automatic = TrainOptions::from(auto_reader);
  EXPECT_EQ(automatic.blas_threads, kAutoBlasThreads);
  EXPECT_EQ(automatic.to_json()["blas_threads"], "auto");
  EXPECT_EQ(auto_reader.resolved()["blas_threads"], "auto");
}

}  // namespace
}  // namespace torchae
