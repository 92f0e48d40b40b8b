#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/runtime.h"
#include "torchae/models/registry.h"
#include "torchae/train/benchmark.h"

#include <map>

namespace torchae {
namespace {

using test::TorchaeTest;

class BenchmarkTest : public TorchaeTest {};

const DataSpec kImages{{1, 28, 28}, 0, 1, 1};

TEST_F(BenchmarkTest, TheFloorIsTheStepsMatrixProducts) {
  const BuiltModel built = build_model(
      Json{{"family", "undercomplete"}, {"hidden", {512}}, {"code_size", 128}, {"loss", "bce"}}, kImages);
  const auto layers = linear_layers_of(built.model->module());
  const std::vector<std::pair<int64_t, int64_t>> expected{{784, 512}, {512, 128}, {128, 512}, {512, 784}};
  EXPECT_EQ(layers, expected);
  GemmFloor floor(layers, 32);
  // Forward and weight gradient for each layer, the input gradient for all but the first.
  EXPECT_EQ(floor.products(), 11);
  const double per_layer = 2.0 * 32 * (784 * 512 + 512 * 128 + 128 * 512 + 512 * 784);
  EXPECT_DOUBLE_EQ(floor.flops_per_step(), 3 * per_layer - 2.0 * 32 * 784 * 512);
  const double seconds = floor.time(3);
  EXPECT_GT(seconds, 0.0);
  // With Adam: the update of as many parameters as the model has, weights and biases.
  int64_t parameters = 0;
  for (const auto& p : built.model->module().parameters()) parameters += p.numel();
  EXPECT_EQ(floor.parameters(), parameters);
  EXPECT_GT(floor.time_with_adam(3), 0.0);
}

TEST_F(BenchmarkTest, TheFloorIsTheFastestOfOpenBlasOnItsThreadsOnOneAndPaired) {
  const int64_t threads = blas_threads();
  // OpenBLAS is torchae's BLAS (scripts/install-deps.sh installs libopenblas0-pthread; without it
  // every product runs on the reference BLAS), so its absence is a failure, not a skip.
  ASSERT_GT(threads, 0) << "this process's BLAS is not OpenBLAS";
  ASSERT_TRUE(set_blas_threads(2));
  EXPECT_EQ(blas_threads(), 2);
  GemmFloor floor({{64, 32}, {32, 64}}, 8);
  const double seconds = floor.time(4);
  const auto& by_threads = floor.seconds_by_blas_threads();
  ASSERT_EQ(by_threads.size(), 2u);
  ASSERT_EQ(by_threads.count(1), 1u);
  ASSERT_EQ(by_threads.count(2), 1u);
  // Paired as the trainer pairs a step's products, in a process with two cores or more.
  const double paired = floor.paired_seconds();
  EXPECT_EQ(paired > 0, cores_per_process() >= 2);
  EXPECT_DOUBLE_EQ(seconds, std::min({by_threads.at(1), by_threads.at(2), paired > 0 ? paired : seconds}));
  EXPECT_EQ(blas_threads(), 2) << "the floor leaves OpenBLAS as it found it";
  EXPECT_GT(floor.time_with_adam(2), 0.0);
  EXPECT_EQ(blas_threads(), 2);
  // Already on one thread: the one setting.
  ASSERT_TRUE(set_blas_threads(1));
  GemmFloor single({{64, 32}}, 8);
  single.time(2);
  EXPECT_EQ(single.seconds_by_blas_threads().size(), 1u);
  EXPECT_EQ(single.seconds_by_blas_threads().count(1), 1u);
  // 0: back to what the process started with.
  ASSERT_TRUE(set_blas_threads(0));
  EXPECT_EQ(blas_threads(), threads);
}

TEST_F(BenchmarkTest, TheFloorRefusesModelsBeyondLinearLayers) {
  const BuiltModel conv = build_model(Json{{"family", "undercomplete"},
                                           {"backbone", "conv"},
                                           {"channels", {8}},
                                           {"strides", {2}},
                                           {"code_size", 0}},
                                      kImages);
  try {
    linear_layers_of(conv.model->module());
    FAIL() << "a convolutional model has no floor of Linear layers";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a Linear layer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(GemmFloor({}, 8), Error);
}

TEST_F(BenchmarkTest, TheProfileAccountsForTheStep) {
  const BuiltModel built =
      build_model(Json{{"family", "undercomplete"}, {"hidden", {64}}, {"code_size", 16}, {"loss", "bce"}}, kImages);
  TrainOptions options = test::quiet_cpu_options(1);
  Trainer trainer(built.model, options);
  const torch::Tensor batch = torch::rand({32, 1, 28, 28});
  const StepProfile profile = profile_steps([&] { trainer.step(batch); }, 5);
  EXPECT_EQ(profile.steps, 5);
  double parts = 0.0;
  std::map<std::string, double> by_name;
  for (const auto& [name, ms] : profile.ms_per_step) {
    EXPECT_GE(ms, 0.0) << name;
    parts += ms;
    by_name[name] = ms;
  }
  // Every part of the step is somewhere: the parts add up to the wall time (to the profiler's
  // microsecond rounding), and the step's own parts are there.
  EXPECT_NEAR(parts, profile.wall_ms_per_step, 0.05 * profile.wall_ms_per_step + 0.05);
  EXPECT_GT(by_name.at("matrix products"), 0.0);
  EXPECT_GT(by_name.at("optimizer"), 0.0);
  EXPECT_GT(by_name.at("loss"), 0.0);
  EXPECT_GT(by_name.at("element-wise forward"), 0.0);
  EXPECT_GT(by_name.at("element-wise backward"), 0.0);
  EXPECT_EQ(by_name.at("data"), 0.0);  // the batch was made outside the scope
  ASSERT_FALSE(profile.top_ops.empty());
  const Json json = profile.to_json();
  EXPECT_EQ(json.at("ms_per_step").size(), profile.ms_per_step.size());
}

}  // namespace
}  // namespace torchae
