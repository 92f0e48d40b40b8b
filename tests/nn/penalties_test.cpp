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

}  // namespace
}  // namespace torchae
