#include "test_tools.h"

#include "torchae/data/dataset.h"
#include "torchae/eval/metrics.h"
#include "torchae/models/registry.h"
#include "torchae/models/undercomplete.h"
#include "torchae/train/trainer.h"

#include <cmath>

namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TorchaeTest;

class MetricsTest : public TorchaeTest {};

TEST_F(MetricsTest, ReconstructionMetricsByHand) {
  const Dataset data{torch::rand({10, 1, 4, 5}), {}};
  const ReconstructionMetrics perfect = reconstruction_metrics([](const torch::Tensor& x) { return x; }, data, 1.0, 3);
  EXPECT_EQ(perfect.mse, 0.0);
  EXPECT_NEAR(perfect.psnr_db, 100.0, 1e-9);
  // A constant error of 0.1 per pixel: MSE 0.01, SSE 0.2 per 20-pixel image, PSNR 20 dB.
  const ReconstructionMetrics off = reconstruction_metrics([](const torch::Tensor& x) { return x + 0.1; }, data, 1.0, 3);
  EXPECT_NEAR(off.mse, 0.01, 1e-8);
  EXPECT_NEAR(off.sse_per_example, 0.2, 1e-7);
  EXPECT_NEAR(off.psnr_db, 20.0, 1e-5);
  EXPECT_NEAR(reconstruction_metrics([](const torch::Tensor& x) { return x + 0.1; }, data, 2.0).psnr_db,
              20.0 + 20.0 * std::log10(2.0), 1e-5);
}

TEST_F(MetricsTest, PrincipalAnglesOfKnownSubspaces) {
  const double a = 30.0 * M_PI / 180.0;
  const torch::Tensor x = torch::tensor({1.0, 0.0, 0.0}, torch::kFloat64).view({3, 1});
  const torch::Tensor y = torch::tensor({std::cos(a), std::sin(a), 0.0}, torch::kFloat64).view({3, 1});
  EXPECT_NEAR(largest_principal_angle_degrees(x, y), 30.0, 1e-9);
  // A basis change does not move a subspace.
  const torch::Tensor basis = torch::randn({8, 3}, torch::kFloat64);
  EXPECT_NEAR(largest_principal_angle_degrees(basis, basis.mm(torch::randn({3, 3}, torch::kFloat64))), 0.0, 1e-5);
}

TEST_F(MetricsTest, PcaRecoversAPlantedSubspace) {
  const torch::Tensor basis = torch::randn({20, 3}, torch::kFloat64);
  const torch::Tensor scales = torch::tensor({5.0, 3.0, 2.0}, torch::kFloat64);
  const torch::Tensor data = (torch::randn({2000, 3}, torch::kFloat64) * scales).mm(basis.t()) + 7.0 +
                             0.01 * torch::randn({2000, 20}, torch::kFloat64);
  const PCA pca = PCA::fit(data, 3);
  EXPECT_LT(largest_principal_angle_degrees(pca.components, basis), 0.1);
  expect_tensors_near(pca.components.t().mm(pca.components), torch::eye(3, torch::kFloat64), 1e-10);
  EXPECT_TRUE((pca.variances.narrow(0, 0, 2) >= pca.variances.narrow(0, 1, 2)).all().item<bool>());
  // Points of the fitted affine subspace reconstruct exactly; the orthogonal part is removed.
  const torch::Tensor on_plane = torch::randn({5, 3}, torch::kFloat64).mm(pca.components.t()) + pca.mean;
  expect_tensors_near(pca.reconstruct(on_plane), on_plane, 1e-10);
  const torch::Tensor off = on_plane + 0.5 * torch::randn({5, 20}, torch::kFloat64);
  expect_tensors_near(pca.reconstruct(off), on_plane + (off - on_plane).mm(pca.components).mm(pca.components.t()), 1e-10);
}

// The theorem behind the `linear` option (Baldi & Hornik, 1989): a linear autoencoder trained
// with MSE on centred data spans the top-k principal subspace, and so matches PCA's error.
TEST_F(MetricsTest, LinearAutoencoderLearnsThePcaSubspace) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  DataOptions data_options;
  data_options.limit = 4000;
  data_options.center = true;
  const DataSplits data = load_data(data_options, /*with_test=*/true);
  const int64_t k = 4;
  torch::manual_seed(GTEST_FLAG_GET(random_seed));
  auto built = build_model({{"linear", true}, {"code_size", k}, {"hidden", Json::array()}}, data.spec);
  TrainOptions options = test::quiet_cpu_options(60);
  options.batch_size = 128;
  // Adam at 1e-3 or 3e-3 is still far from the optimum after 30 epochs (measured: 68 degrees
  // at 3e-3); at 1e-2 with a cosine decay over ~1,700 steps it reaches the subspace.
  options.lr = 1e-2;
  options.schedule = "cosine";
  Trainer trainer(built.model, options);
  trainer.fit(data.train, data.validation);

  const auto ae = std::dynamic_pointer_cast<UndercompleteImpl>(built.model);
  ASSERT_TRUE(ae);
  const PCA pca = PCA::fit(data.train.inputs.flatten(1), k);
  const double angle = largest_principal_angle_degrees(ae->decoder_matrix().detach(), pca.components);
  const Json metrics = evaluate_reconstruction(*built.model, data, torch::kCPU);
  const double ratio = metrics["test_mse"].get<double>() / metrics["pca_test_mse"].get<double>();
  RecordProperty("largest_principal_angle_deg", std::to_string(angle));
  RecordProperty("test_mse_over_pca", std::to_string(ratio));
  EXPECT_LT(angle, 5.0);
  EXPECT_LT(std::abs(ratio - 1.0), 0.02) << metrics.dump();
}

}  // namespace
}  // namespace torchae
