#include "test_tools.h"

#include "torchae/data/corruption.h"
#include "torchae/nn/penalties.h"

namespace torchae {
namespace {

using test::TorchaeTest;

class PenaltiesTest : public TorchaeTest {};

// One affine layer + sigmoid, in float64: the setting where the closed form holds.
struct SigmoidLayer {
  torch::Tensor weight = torch::randn({7, 12}, torch::kFloat64) * 0.5;
  torch::Tensor bias = torch::randn({7}, torch::kFloat64);
  torch::Tensor operator()(const torch::Tensor& x) const { return torch::sigmoid(x.mm(weight.t()) + bias); }
};

TEST_F(PenaltiesTest, ExactDoubleBackwardEqualsTheClosedForm) {
  const SigmoidLayer f;
  const torch::Tensor x = torch::randn({9, 12}, torch::kFloat64).requires_grad_(true);
  const torch::Tensor h = f(x);
  const double exact = jacobian_penalty(h, x, JacobianMethod::exact).item<double>();
  const double analytic = sigmoid_jacobian_penalty(h, f.weight).item<double>();
  EXPECT_NEAR(exact, analytic, 1e-5 * analytic);
  // Against the Jacobian built column by column with torch::autograd, per example.
  double brute = 0.0;
  for (int64_t b = 0; b < x.size(0); ++b) {
    for (int64_t j = 0; j < h.size(1); ++j) {
      brute += torch::autograd::grad({h[b][j]}, {x}, {}, true)[0].pow(2).sum().item<double>();
    }
  }
  EXPECT_NEAR(exact, brute / static_cast<double>(x.size(0)), 1e-10);
}

TEST_F(PenaltiesTest, HutchinsonIsUnbiased) {
  const SigmoidLayer f;
  const torch::Tensor x = torch::randn({16, 12}, torch::kFloat64).requires_grad_(true);
  const torch::Tensor h = f(x);
  const double exact = jacobian_penalty(h, x, JacobianMethod::exact).item<double>();
  const double estimate = jacobian_penalty(h, x, JacobianMethod::hutchinson, 4000).item<double>();
  EXPECT_NEAR(estimate, exact, 0.02 * exact);
}

// Minimising reconstruction + penalty through double backward must lower the penalty, for a
// two-layer MLP encoder and for a convolutional one.
void expect_penalty_trains(torch::nn::Module& encoder, const std::function<torch::Tensor(const torch::Tensor&)>& f,
                           const torch::Tensor& x) {
  torch::optim::Adam optimizer(encoder.parameters(), torch::optim::AdamOptions(1e-2));
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 40; ++step) {
    const torch::Tensor leaf = x.detach().requires_grad_(true);
    const torch::Tensor penalty = jacobian_penalty(f(leaf), leaf, JacobianMethod::exact);
    optimizer.zero_grad();
    penalty.backward();
    optimizer.step();
    (step == 0 ? first : last) = penalty.item<double>();
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST_F(PenaltiesTest, PenaltyTrainsATwoLayerMlpEncoder) {
  torch::nn::Sequential mlp(torch::nn::Linear(20, 16), torch::nn::Tanh(), torch::nn::Linear(16, 4), torch::nn::Sigmoid());
  expect_penalty_trains(*mlp, [&](const torch::Tensor& in) { return mlp->forward(in); }, torch::randn({8, 20}));
}

TEST_F(PenaltiesTest, PenaltyTrainsAConvolutionalEncoder) {
  torch::nn::Sequential conv(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).stride(2)), torch::nn::ReLU(),
                             torch::nn::Flatten(), torch::nn::Linear(4 * 3 * 3, 5));
  expect_penalty_trains(*conv, [&](const torch::Tensor& in) { return conv->forward(in); }, torch::rand({6, 1, 7, 7}));
}

class CorruptionTest : public TorchaeTest {};

TEST_F(CorruptionTest, MaskingZeroesExactlyTheChosenFraction) {
  const torch::Tensor x = torch::rand({64, 1, 10, 10}) + 0.5;
  const Corrupted c = corrupt(x, {CorruptionKind::masking, 0.25});
  EXPECT_TRUE(torch::equal(c.mask.flatten(1).sum(1), torch::full({64}, 25, torch::kLong)));
  EXPECT_TRUE(torch::equal(c.input == 0, c.mask));
  EXPECT_TRUE(torch::equal(c.input.masked_select(~c.mask), x.masked_select(~c.mask)));
  // Every component is as likely to be chosen: each column's rate is near 0.25.
  const torch::Tensor rate = corrupt(torch::ones({4000, 100}), {CorruptionKind::masking, 0.25}).mask.to(torch::kFloat).mean(0);
  EXPECT_LT((rate - 0.25).abs().max().item<float>(), 0.04f);
}

TEST_F(CorruptionTest, SaltAndPepperUsesTheDataRangeHalfEach) {
  CorruptionOptions o{CorruptionKind::salt_pepper, 0.1, -1.0, 2.0};
  const torch::Tensor x = torch::rand({200, 50});
  const Corrupted c = corrupt(x, o);
  EXPECT_TRUE(torch::equal(c.mask.sum(1), torch::full({200}, 5, torch::kLong)));
  const torch::Tensor values = c.input.masked_select(c.mask);
  EXPECT_TRUE(((values == -1.0) | (values == 2.0)).all().item<bool>());
  EXPECT_NEAR((values == 2.0).to(torch::kFloat).mean().item<float>(), 0.5, 0.05);
  EXPECT_TRUE(torch::equal(c.input.masked_select(~c.mask), x.masked_select(~c.mask)));
}

TEST_F(CorruptionTest, GaussianNoiseHasTheRequestedSigma) {
  const torch::Tensor x = torch::rand({500, 200});
  const Corrupted c = corrupt(x, {CorruptionKind::gaussian, 0.3});
  const torch::Tensor noise = c.input - x;
  EXPECT_NEAR(noise.std().item<double>(), 0.3, 0.3 * 0.02);
  EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.003);
  EXPECT_TRUE(c.mask.all().item<bool>());
  EXPECT_TRUE(torch::equal(corrupt(x, {CorruptionKind::none, 0.0}).input, x));
}

// ---- MMD ---------------------------------------------------------------------------------

class MmdTest : public TorchaeTest {};

TEST_F(MmdTest, NearZeroForOneDistributionClearlyPositiveForTwo) {
  const double base = 2.0 * 8;  // C = 2 d sigma^2 for d = 8, sigma = 1
  for (MmdKernel kernel : {MmdKernel::inverse_multiquadratic, MmdKernel::rbf}) {
    const torch::Tensor x = torch::randn({400, 8}, torch::kFloat64);
    const double same = mmd_penalty(x, torch::randn({400, 8}, torch::kFloat64), kernel, base).item<double>();
    const double shifted = mmd_penalty(x, torch::randn({400, 8}, torch::kFloat64) + 1.0, kernel, base).item<double>();
    const double wider = mmd_penalty(x, 2.0 * torch::randn({400, 8}, torch::kFloat64), kernel, base).item<double>();
    EXPECT_LT(std::abs(same), 0.01) << static_cast<int>(kernel);
    EXPECT_GT(shifted, 0.1) << static_cast<int>(kernel);
    EXPECT_GT(wider, 0.1) << static_cast<int>(kernel);
    EXPECT_GT(shifted, 20 * std::abs(same)) << static_cast<int>(kernel);
  }
}

TEST_F(MmdTest, TheUStatisticIsUnbiased) {
  // Over many draws of small samples of one distribution the estimate averages to zero; the
  // biased (V-statistic) estimate, which keeps k(x_i, x_i), would sit near 2 * 7 * (1 - E k) / n,
  // above 0.1 here, which the standard error below is small enough to tell apart.
  const int draws = 2000;
  const int64_t n = 20;
  std::vector<double> values;
  for (int i = 0; i < draws; ++i) {
    values.push_back(mmd_penalty(torch::randn({n, 4}, torch::kFloat64), torch::randn({n, 4}, torch::kFloat64),
                                 MmdKernel::inverse_multiquadratic, 8.0)
                         .item<double>());
  }
  const torch::Tensor v = torch::tensor(values, torch::kFloat64);
  const double mean = v.mean().item<double>();
  const double standard_error = v.std().item<double>() / std::sqrt(static_cast<double>(draws));
  RecordProperty("mean", std::to_string(mean));
  RecordProperty("standard_error", std::to_string(standard_error));
  EXPECT_LT(3 * standard_error, 0.02);
  EXPECT_LT(std::abs(mean), 3 * standard_error);
  EXPECT_TRUE(v.lt(0).any().item<bool>()) << "an unbiased estimate of zero must sometimes be negative";
}

}  // namespace
}  // namespace torchae
