#include "test_tools.h"

#include "torchae/data/corruption.h"
#include "torchae/nn/fused.h"
#include "torchae/nn/mlp.h"
#include "torchae/nn/penalties.h"

namespace torchae {
namespace {

using test::expect_tensors_near;
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

TEST_F(PenaltiesTest, TheSigmoidLayerWithItsPenaltyInOneNodeIsTheComposite) {
  for (const bool bias : {true, false}) {
    const torch::Tensor weight = (torch::randn({7, 12}, torch::kFloat64) * 0.5).requires_grad_(true);
    const torch::Tensor b = bias ? torch::randn({7}, torch::kFloat64).requires_grad_(true) : torch::Tensor();
    const torch::Tensor x = torch::randn({9, 12}, torch::kFloat64).requires_grad_(true);
    const torch::Tensor target = torch::rand({9, 7}, torch::kFloat64);
    std::vector<torch::Tensor> inputs{x, weight};
    if (bias) inputs.push_back(b);
    // A loss of the code and of the penalty, so that both gradients flow.
    const auto [h, penalty] = sigmoid_layer_with_jacobian_penalty(x, weight, b);
    const torch::Tensor h_ref = torch::sigmoid(bias ? torch::addmm(b, x, weight.t()) : x.mm(weight.t()));
    const torch::Tensor penalty_ref = sigmoid_jacobian_penalty(h_ref, weight);
    expect_tensors_near(h, h_ref, 1e-14);
    EXPECT_NEAR(penalty.item<double>(), penalty_ref.item<double>(), 1e-14);
    const auto fused = torch::autograd::grad({(h - target).pow(2).sum() + 3.0 * penalty}, inputs);
    const auto composite = torch::autograd::grad({(h_ref - target).pow(2).sum() + 3.0 * penalty_ref}, inputs);
    for (std::size_t i = 0; i < inputs.size(); ++i) expect_tensors_near(fused[i], composite[i], 1e-12);
  }
}

TEST_F(PenaltiesTest, HutchinsonIsUnbiased) {
  const SigmoidLayer f;
  const torch::Tensor x = torch::randn({16, 12}, torch::kFloat64).requires_grad_(true);
  const torch::Tensor h = f(x);
  const double exact = jacobian_penalty(h, x, JacobianMethod::exact).item<double>();
  const double estimate = jacobian_penalty(h, x, JacobianMethod::hutchinson, 4000).item<double>();
  EXPECT_NEAR(estimate, exact, 0.02 * exact);
}

// J v by reverse mode alone, for reference: J^T u is linear in u, and its gradient w.r.t. u
// along v is J v; both built with create_graph, so that J v can be differentiated again.
torch::Tensor jvp_by_double_backward(const std::function<torch::Tensor(const torch::Tensor&)>& f,
                                     const torch::Tensor& x, const torch::Tensor& v) {
  const torch::Tensor leaf = x.detach().requires_grad_(true);
  const torch::Tensor y = f(leaf);
  const torch::Tensor u = torch::zeros_like(y).requires_grad_(true);
  const torch::Tensor jtu = torch::autograd::grad({y}, {leaf}, {u}, true, true)[0];
  return torch::autograd::grad({jtu}, {u}, {v}, true, true)[0];
}

TEST_F(PenaltiesTest, MlpTangentsAreJacobianVectorProductsAndTrainLikeThem) {
  for (const Activation activation : {Activation::relu, Activation::sigmoid, Activation::tanh, Activation::identity}) {
    SCOPED_TRACE(to_string(activation));
    for (const bool bias : {true, false}) {
      MLP mlp(MLPOptions({7, 6, 5, 4}).activation(activation).output_activation(activation).bias(bias));
      mlp->to(torch::kFloat64);
      const torch::Tensor x = torch::randn({9, 7}, torch::kFloat64);
      const torch::Tensor directions = torch::randn({3, 9, 7}, torch::kFloat64);
      auto [y, tangents] = mlp->forward_with_tangents(x, directions);
      ASSERT_EQ(tangents.sizes(), (std::vector<int64_t>{3, 9, 4}));
      expect_tensors_near(y, mlp->forward(x), 1e-12);
      torch::Tensor reference_penalty = torch::zeros({}, torch::kFloat64);
      for (int64_t p = 0; p < 3; ++p) {
        const torch::Tensor jv =
            jvp_by_double_backward([&](const torch::Tensor& in) { return mlp->forward(in); }, x, directions[p]);
        expect_tensors_near(tangents[p], jv, 1e-12);
        reference_penalty = reference_penalty + jv.pow(2).sum();
      }
      // The gradients of a loss of both outputs, against those through reverse mode alone.
      const auto gradients = [&](const torch::Tensor& loss) {
        return torch::autograd::grad({loss}, mlp->parameters(), {}, true);
      };
      const auto pushed = gradients(tangents.pow(2).sum() + y.sum());
      const auto reference = gradients(reference_penalty + mlp->forward(x).sum());
      for (std::size_t i = 0; i < pushed.size(); ++i) expect_tensors_near(pushed[i], reference[i], 1e-10);
    }
  }
}

TEST_F(PenaltiesTest, MlpTangentsShareTheDropoutMasks) {
  MLP mlp(MLPOptions({8, 6, 5}).activation(Activation::tanh).output_activation(Activation::sigmoid).dropout(0.4));
  mlp->to(torch::kFloat64);
  mlp->train();
  const torch::Tensor x = torch::randn({5, 8}, torch::kFloat64), v = torch::randn({1, 5, 8}, torch::kFloat64);
  const auto at = [&](const torch::Tensor& in, const torch::Tensor& direction) {
    torch::manual_seed(11);  // the same masks in each call
    return mlp->forward_with_tangents(in, direction);
  };
  const auto [y, tangents] = at(x, v);
  const double eps = 1e-6;
  const torch::Tensor difference = (at(x + eps * v[0], v).first - at(x - eps * v[0], v).first) / (2 * eps);
  expect_tensors_near(tangents[0], difference, 1e-7);
  // The masks are drawn: another seed, another output; in eval mode none.
  torch::manual_seed(12);
  EXPECT_FALSE(torch::allclose(mlp->forward_with_tangents(x, v).first, y));
  mlp->eval();
  expect_tensors_near(mlp->forward_with_tangents(x, v).first, mlp->forward(x), 1e-12);
}

TEST_F(PenaltiesTest, HutchinsonFromPushedTangentsIsUnbiased) {
  MLP mlp(MLPOptions({12, 7}).output_activation(Activation::sigmoid));
  mlp->to(torch::kFloat64);
  const torch::Tensor x = torch::randn({16, 12}, torch::kFloat64);
  const torch::Tensor directions = rademacher_like(torch::empty({4000, 16, 12}, torch::kFloat64));
  const auto [h, tangents] = mlp->forward_with_tangents(x, directions);
  const double exact = sigmoid_jacobian_penalty(h, mlp->layers()[0]->weight).item<double>();
  EXPECT_NEAR(hutchinson_penalty(tangents).item<double>(), exact, 0.02 * exact);
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

// The MMD written out with LibTorch's operations, for reference.
torch::Tensor mmd_by_composite(const torch::Tensor& x, const torch::Tensor& y, MmdKernel kernel, double base) {
  const auto k = [&](const torch::Tensor& a, const torch::Tensor& b) {
    const torch::Tensor d = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(2);
    torch::Tensor total = torch::zeros_like(d);
    for (double s : mmd_kernel_scales()) {
      const double c = base * s;
      total = total + (kernel == MmdKernel::inverse_multiquadratic ? c / (c + d) : torch::exp(-d / c));
    }
    return total;
  };
  const auto off_diagonal_mean = [](const torch::Tensor& m) {
    const double n = static_cast<double>(m.size(0));
    return (m.sum() - m.diagonal().sum()) / (n * (n - 1));
  };
  return off_diagonal_mean(k(x, x)) + off_diagonal_mean(k(y, y)) - 2 * k(x, y).mean();
}

TEST_F(MmdTest, ValueAndGradientAreTheCompositesInFloatAndDouble) {
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (MmdKernel kernel : {MmdKernel::inverse_multiquadratic, MmdKernel::rbf}) {
      SCOPED_TRACE(static_cast<int>(kernel));
      const torch::Tensor x0 = torch::randn({70, 6}, torch::kFloat64);
      const torch::Tensor y0 = torch::randn({50, 6}, torch::kFloat64) * 1.5 + 0.3;
      // The reference in double; the tested one in `dtype` (float runs torchae's loop).
      const torch::Tensor x = x0.to(dtype).requires_grad_(true), y = y0.to(dtype).requires_grad_(true);
      const torch::Tensor xr = x0.clone().requires_grad_(true), yr = y0.clone().requires_grad_(true);
      const torch::Tensor value = mmd_penalty(x, y, kernel, 12.0);
      const torch::Tensor reference = mmd_by_composite(xr, yr, kernel, 12.0);
      const double tolerance = dtype == torch::kFloat32 ? 2e-5 : 1e-12;
      EXPECT_NEAR(value.item<double>(), reference.item<double>(), tolerance * 10);
      const auto g = torch::autograd::grad({value}, {x, y});
      const auto gr = torch::autograd::grad({reference}, {xr, yr});
      const double scale = gr[0].abs().max().item<double>();
      expect_tensors_near(g[0], gr[0], tolerance * scale * 10);
      expect_tensors_near(g[1], gr[1], tolerance * scale * 10);
    }
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
