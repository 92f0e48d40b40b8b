// What every family must show on CUDA: the numbers of the CPU from the same weights, training
// through the generic trainer (adversaries and layerwise stages included), checkpoints that
// move between devices, and export to a CPU archive. Each test skips without a CUDA device.

#include "test_tools.h"

#include "torchae/core/io.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/models/stacked.h"
#include "torchae/train/staged.h"
#include "torchae/train/trainer.h"

namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TempDir;
using test::TorchaeTest;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (this LibTorch or machine has none)"

Dataset random_data(int64_t n) { return {torch::rand({n, 1, 6, 5}), torch::arange(n) % 3}; }

TrainOptions cuda_options(int64_t epochs) {
  TrainOptions o = test::quiet_cpu_options(epochs);
  o.device = "cuda";
  o.batch_size = 16;
  o.lr = 3e-3;
  return o;
}

std::shared_ptr<Autoencoder> build(const std::string& config, int64_t seed = 0) {
  torch::manual_seed(seed);
  return build_model(Json::parse(config), kSpec).model;
}

class CudaEveryFamily : public TorchaeTest, public ::testing::WithParamInterface<std::string> {};

// In eval mode every family is deterministic: forward, encode and decode give the CPU's numbers.
TEST_P(CudaEveryFamily, EvalOutputsMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  auto cpu = build(GetParam());
  auto gpu = build(GetParam(), 1);
  test::copy_weights(*cpu, *gpu);
  gpu->module().to(torch::kCUDA);
  cpu->module().eval();
  gpu->module().eval();
  const torch::Tensor x = torch::rand({5, 1, 6, 5});
  const torch::Tensor x_gpu = x.cuda();
  const Output a = cpu->forward(x), b = gpu->forward(x_gpu);
  ASSERT_TRUE(b.reconstruction.is_cuda());
  expect_tensors_near(b.reconstruction, a.reconstruction, 1e-5, 1e-4);
  expect_tensors_near(gpu->encode(x_gpu), cpu->encode(x), 1e-5, 1e-4);
  const torch::Tensor code = cpu->encode(x);
  expect_tensors_near(gpu->decode(code.cuda()), cpu->decode(code), 1e-5, 1e-4);
  // The reconstruction term (penalties may draw from the device's generator: probes, prior samples).
  const double ra = cpu->loss(x, a).terms.front().second.item<double>();
  const double rb = gpu->loss(x_gpu, b).terms.front().second.item<double>();
  EXPECT_NEAR(rb, ra, 1e-4 * std::max(1.0, std::abs(ra)));
}

// The generic trainer drives each family on CUDA (an adversary with its own optimizer too); the
// trained model exports to a CPU archive that reproduces it.
TEST_P(CudaEveryFamily, TrainsOnCudaAndExportsToTheCpu) {
  SKIP_WITHOUT_CUDA();
  auto model = build(GetParam());
  const Dataset train = random_data(64), val = random_data(32);
  Trainer trainer(model, cuda_options(2));
  ASSERT_TRUE(trainer.device().is_cuda());
  trainer.fit(train, val);
  for (const auto& p : model->module().named_parameters()) {
    EXPECT_TRUE(p.value().is_cuda()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value()).all().item<bool>()) << p.key();
  }
  const LossSummary summary = trainer.evaluate(val);
  EXPECT_TRUE(std::isfinite(summary.total)) << summary.total;

  const torch::Tensor probe = val.inputs.narrow(0, 0, 4);
  torch::jit::Module archive = to_torchscript(*model, probe);
  ASSERT_TRUE(model->module().parameters().front().device().is_cpu());
  const torch::Tensor scripted = archive.forward({probe}).toTensor();
  expect_tensors_near(scripted, model->forward(probe).reconstruction, kExportTolerance);
}

INSTANTIATE_TEST_SUITE_P(Families, CudaEveryFamily, ::testing::ValuesIn(test::family_configs()));

class CudaTest : public TorchaeTest {};

// The same steps on CUDA and on the CPU, from the same weights and batches, give the same
// losses and weights: the trainer does nothing device-specific.
TEST_F(CudaTest, TrainingStepsMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  const Dataset data = random_data(64);
  std::shared_ptr<Autoencoder> models[2];
  std::vector<double> losses[2];
  for (int k = 0; k < 2; ++k) {
    models[k] = build(R"({"code_size": 4, "hidden": [12]})");
    TrainOptions o = cuda_options(1);
    o.device = k == 0 ? "cpu" : "cuda";
    Trainer trainer(models[k], o);
    for (int64_t i = 0; i < 4; ++i) {
      losses[k].push_back(trainer.step(data.inputs.narrow(0, 16 * i, 16).to(trainer.device())).total.item<double>());
    }
  }
  for (std::size_t i = 0; i < losses[0].size(); ++i) EXPECT_NEAR(losses[0][i], losses[1][i], 1e-5) << "step " << i;
  const auto a = models[0]->module().named_parameters(), b = models[1]->module().named_parameters();
  for (const auto& p : a) expect_tensors_near(b[p.key()], p.value(), 1e-5, 1e-4);
}

// A run stopped on CUDA and resumed there ends where the uninterrupted one does (the CUDA
// generator is part of the checkpoint: the denoising corruption draws from it).
TEST_F(CudaTest, ResumeOnCudaContinuesExactly) {
  SKIP_WITHOUT_CUDA();
  const char* config = R"({"family": "denoising", "code_size": 4, "hidden": [12]})";
  const Dataset train = random_data(128), val = random_data(32);
  TempDir straight, split;
  Trainer(build(config), cuda_options(4), straight.path()).fit(train, val);
  Trainer(build(config), cuda_options(2), split.path()).fit(train, val);
  torch::cuda::manual_seed_all(999);
  Trainer resumed(build(config, 5), cuda_options(4), split.path());
  ASSERT_TRUE(resumed.resume());
  resumed.fit(train, val);
  const auto a = test::read_lines(straight / kMetricsFile), b = test::read_lines(split / kMetricsFile);
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const Json ja = Json::parse(a[i]), jb = Json::parse(b[i]);
    EXPECT_DOUBLE_EQ(ja["train_loss"].get<double>(), jb["train_loss"].get<double>()) << "epoch " << i + 1;
    EXPECT_DOUBLE_EQ(ja["val_loss"].get<double>(), jb["val_loss"].get<double>()) << "epoch " << i + 1;
  }
}

// A checkpoint written on CUDA resumes on the CPU, and one written on the CPU resumes on CUDA:
// a run started on a GPU server can be finished on a laptop, and the other way round.
TEST_F(CudaTest, CheckpointsMoveBetweenDevices) {
  SKIP_WITHOUT_CUDA();
  const char* config = R"({"family": "wae", "code_size": 2, "penalty": "gan", "discriminator_hidden": [8]})";
  const Dataset train = random_data(64), val = random_data(16);
  for (const char* first : {"cuda", "cpu"}) {
    TempDir dir;
    TrainOptions o = cuda_options(1);
    o.device = first;
    Trainer(build(config), o, dir.path()).fit(train, val);
    o.epochs = 2;
    o.device = std::string(first) == "cuda" ? "cpu" : "cuda";
    auto model = build(config, 3);
    Trainer resumed(model, o, dir.path());
    ASSERT_TRUE(resumed.resume()) << first;
    resumed.fit(train, val);
    EXPECT_EQ(resumed.epochs_done(), 2) << first;
    EXPECT_EQ(test::read_lines(dir / kMetricsFile).size(), 2u) << first;
    EXPECT_EQ(model->module().parameters().front().device().type(), resumed.device().type());
  }
}

// The layerwise pretrainer computes each layer's codes on the model's device and runs every
// phase there; a linear probe of the codes runs there too.
TEST_F(CudaTest, StackedPhasesRunOnCuda) {
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(0);
  const Json section = {{"family", "stacked"},
                        {"layers",
                         {{{"units", 12}, {"family", "denoising"}, {"epochs", 2}},
                          {{"units", 5}, {"family", "contractive"}, {"epochs", 2}}}},
                        {"classify", true},
                        {"classes", 3},
                        {"finetune_epochs", 1},
                        {"classify_epochs", 2}};
  Stacked stack(std::dynamic_pointer_cast<StackedImpl>(build_model(section, kSpec).model));
  TempDir dir;
  StagedTrainer pretrainer(stack, cuda_options(1), dir.path());
  pretrainer.fit(random_data(96), random_data(32));
  EXPECT_EQ(test::read_lines(dir / kMetricsFile).size(), 2u + 2u + 1u + 2u);
  for (const auto& p : stack->named_parameters()) EXPECT_TRUE(p.value().is_cuda()) << p.key();
  stack->eval();
  const torch::Tensor scores = stack->classify(torch::rand({4, 1, 6, 5}).cuda());
  EXPECT_EQ(scores.sizes(), (std::vector<int64_t>{4, 3}));
  EXPECT_TRUE(scores.is_cuda());
  const Dataset codes = encode_dataset(*stack, random_data(40));
  EXPECT_TRUE(codes.inputs.is_cuda());
  EXPECT_EQ(codes.inputs.sizes(), (std::vector<int64_t>{40, 5}));
}

}  // namespace
}  // namespace torchae
