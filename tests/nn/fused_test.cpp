#include "test_tools.h"

#include "torchae/core/parallel.h"
#include "torchae/nn/fused.h"

#include <torch/nn/functional/loss.h>

#include <torch/nn/functional/linear.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace torchae {
namespace {

using test::TorchaeTest;

class FusedTest : public TorchaeTest {};

namespace F = torch::nn::functional;

// A few parameters of the shapes a step has (a matrix, a vector, one of odd size so that the
// vector loops' remainders run), with gradients set by `fill`.
std::vector<torch::Tensor> parameters_like_a_step() {
  return {torch::randn({300, 257}), torch::randn({257}), torch::randn({13, 7})};
}

void set_gradients(std::vector<torch::Tensor>& params, int64_t step) {
  torch::manual_seed(100 + step);
  for (auto& p : params) p.mutable_grad() = torch::randn_like(p) * (1.0 + static_cast<double>(step));
}

// Steps FusedAdam on `ours` and LibTorch's Adam on a copy of them, with the same gradients;
// returns the copy.
std::vector<torch::Tensor> step_beside_libtorchs_adam(std::vector<torch::Tensor>& ours,
                                                      const torch::optim::AdamOptions& options, int64_t steps) {
  std::vector<torch::Tensor> theirs;
  for (const auto& p : ours) theirs.push_back(p.clone());
  FusedAdam fused(ours, options);
  torch::optim::Adam reference(theirs, options);
  for (int64_t step = 0; step < steps; ++step) {
    set_gradients(ours, step);
    set_gradients(theirs, step);
    fused.step();
    reference.step();
  }
  return theirs;
}

TEST_F(FusedTest, AdamStepsAsLibTorchsAdam) {
  for (const double weight_decay : {0.0, 0.01}) {
    std::vector<torch::Tensor> ours = parameters_like_a_step();
    const auto options = torch::optim::AdamOptions(3e-3).betas({0.8, 0.99}).weight_decay(weight_decay);
    const std::vector<torch::Tensor> theirs = step_beside_libtorchs_adam(ours, options, 25);
    for (std::size_t i = 0; i < ours.size(); ++i) test::expect_tensors_near(ours[i], theirs[i], 2e-6, 1e-5);
  }
}

TEST_F(FusedTest, AdamFlushesSubnormalMomentsAndMovesTheParametersAsLibTorchsAdam) {
  // Half the rows stop getting gradients (a unit that no longer fires): their first moments
  // shrink by beta1 a step, into subnormal floats in LibTorch's Adam, where they stay (0.9 times
  // the smallest one rounds back to it); FusedAdam stores zeros. The parameters do not notice.
  std::vector<torch::Tensor> ours{torch::randn({64, 257})};
  std::vector<torch::Tensor> theirs{ours[0].clone()};
  const auto options = torch::optim::AdamOptions(1e-3);
  FusedAdam fused(ours, options);
  torch::optim::Adam reference(theirs, options);
  for (int64_t step = 0; step < 1000; ++step) {
    torch::manual_seed(200 + step);
    torch::Tensor grad = torch::randn({64, 257});
    if (step >= 5) grad.narrow(0, 0, 32).zero_();
    ours[0].mutable_grad() = grad;
    theirs[0].mutable_grad() = grad.clone();
    fused.step();
    reference.step();
  }
  const auto moments = [](const torch::optim::Optimizer& optimizer, const torch::Tensor& p) {
    const auto& state = static_cast<const torch::optim::AdamParamState&>(
        *optimizer.state().at(c10::guts::to_string(p.unsafeGetTensorImpl())));
    return state.exp_avg();
  };
  const float smallest_normal = std::numeric_limits<float>::min();
  const torch::Tensor their_m = moments(reference, theirs[0]).narrow(0, 0, 32).abs();
  const torch::Tensor our_m = moments(fused, ours[0]).narrow(0, 0, 32);
  // Without gradients the moments are all subnormal in LibTorch's Adam (the test's premise).
  EXPECT_TRUE(((their_m > 0) & (their_m < smallest_normal)).all().item<bool>());
#if defined(__x86_64__) || defined(__i386__)
  EXPECT_TRUE(our_m.eq(0).all().item<bool>());
#endif
  test::expect_tensors_near(ours[0], theirs[0], 2e-6, 1e-5);
}

TEST_F(FusedTest, AdamTakesLibTorchsPathWhereItCannotFuse) {
  // amsgrad, double and non-contiguous parameters: LibTorch's operations, so the same result.
  std::vector<torch::Tensor> ours{torch::randn({40, 30}, torch::kFloat64), torch::randn({30, 40}).t()};
  ASSERT_FALSE(ours[1].is_contiguous());
  const std::vector<torch::Tensor> theirs =
      step_beside_libtorchs_adam(ours, torch::optim::AdamOptions(1e-2).amsgrad(true), 5);
  ASSERT_FALSE(theirs[1].is_contiguous());
  for (std::size_t i = 0; i < ours.size(); ++i) test::expect_tensors_near(ours[i], theirs[i], 0.0);
}

TEST_F(FusedTest, AdamCheckpointsAreLibTorchsAdams) {
  // A checkpoint written by FusedAdam resumes in LibTorch's Adam and back, step count included.
  std::vector<torch::Tensor> params = parameters_like_a_step();
  FusedAdam fused(params, torch::optim::AdamOptions(1e-3));
  for (int64_t step = 0; step < 3; ++step) {
    set_gradients(params, step);
    fused.step();
  }
  std::stringstream saved;
  torch::save(fused, saved);
  std::vector<torch::Tensor> copies;
  for (const auto& p : params) copies.push_back(p.detach().clone());
  torch::optim::Adam resumed(copies, torch::optim::AdamOptions(1e-3));
  torch::load(resumed, saved);
  set_gradients(params, 3);
  set_gradients(copies, 3);
  fused.step();
  resumed.step();
  for (std::size_t i = 0; i < params.size(); ++i) test::expect_tensors_near(params[i], copies[i], 1e-6, 1e-5);
  const auto& state = static_cast<const torch::optim::AdamParamState&>(
      *resumed.state().at(c10::guts::to_string(copies[0].unsafeGetTensorImpl())));
  EXPECT_EQ(state.step(), 4);
}

TEST_F(FusedTest, BinaryCrossEntropyFromLogitsIsLibTorchsInValueAndGradient) {
  // Logits from tiny to saturating, targets in [0, 1] and exactly 0 and 1; an odd element count.
  torch::Tensor logits = (torch::randn({37, 101}) * 6.0);
  logits.index_put_({0, torch::indexing::Slice(0, 4)}, torch::tensor({-40.0, 40.0, 0.0, 1e-4}));
  logits.requires_grad_(true);
  torch::Tensor target = torch::rand({37, 101});
  target.index_put_({1}, 0.0);
  target.index_put_({2}, 1.0);
  const torch::Tensor ours = binary_cross_entropy_from_logits(logits, torch::sigmoid(logits), target);
  const torch::Tensor grad_ours = torch::autograd::grad({ours * 3.0}, {logits})[0];
  const torch::Tensor theirs = F::binary_cross_entropy_with_logits(logits, target);
  const torch::Tensor grad_theirs = torch::autograd::grad({theirs * 3.0}, {logits})[0];
  EXPECT_NEAR(ours.item<double>(), theirs.item<double>(), 1e-6 * theirs.item<double>());
  test::expect_tensors_near(grad_ours, grad_theirs, 1e-9, 1e-5);
  // Against the definition in double precision, element by element.
  const torch::Tensor x = logits.detach().to(torch::kFloat64), t = target.to(torch::kFloat64);
  const double exact = (x.clamp_min(0) - x * t + torch::log1p(torch::exp(-x.abs()))).mean().item<double>();
  EXPECT_NEAR(ours.item<double>(), exact, 1e-6 * exact);
}

TEST_F(FusedTest, BinaryCrossEntropyFallsBackWhereItCannotFuse) {
  // A target that needs a gradient gets LibTorch's (which differentiates in the target too).
  const torch::Tensor logits = torch::randn({8, 5}, torch::requires_grad());
  const torch::Tensor target = torch::rand({8, 5}, torch::requires_grad());
  const torch::Tensor loss = binary_cross_entropy_from_logits(logits, torch::sigmoid(logits), target);
  const auto grads = torch::autograd::grad({loss}, {logits, target});
  const torch::Tensor reference = F::binary_cross_entropy_with_logits(logits, target);
  const auto reference_grads = torch::autograd::grad({reference}, {logits, target});
  EXPECT_NEAR(loss.item<double>(), reference.item<double>(), 1e-7);
  test::expect_tensors_near(grads[1], reference_grads[1], 1e-7);
  // Double precision likewise.
  const torch::Tensor x = torch::randn({4, 3}, torch::kFloat64), t = torch::rand({4, 3}, torch::kFloat64);
  EXPECT_NEAR(binary_cross_entropy_from_logits(x, torch::sigmoid(x), t).item<double>(),
              F::binary_cross_entropy_with_logits(x, t).item<double>(), 1e-15);
}

// The same seed gives the same numbers (`drawn`, after manual_seed(seed)) on one thread or two.
void expect_the_same_draws_on_another_thread_count(uint64_t seed, const torch::Tensor& drawn,
                                                   const std::function<torch::Tensor()>& draw) {
  const int threads = at::get_num_threads();
  at::set_num_threads(threads == 1 ? 2 : 1);
  torch::manual_seed(seed);
  EXPECT_TRUE(torch::equal(drawn, draw()));
  at::set_num_threads(threads);
}

// Paired products: a layer's value and its three gradients as LibTorch's linear gives them, to
// rounding, for a hidden layer (its input needs a gradient: each thread's part of it added), a
// first layer (none: the weight's rows in halves), an odd number of outputs (unequal halves) and
// a transposed weight (a tied decoder's).
TEST_F(FusedTest, PairedLinearIsLibTorchsLinearInValueAndGradients) {
  HelperThread helper;
  struct Case {
    int64_t batch, in, out;
    bool input_grad, transposed;
  };
  for (const Case c : {Case{32, 784, 512, true, false}, Case{32, 784, 512, false, false}, Case{5, 9, 7, true, false},
                       Case{16, 40, 24, true, true}}) {
    SCOPED_TRACE(::testing::Message() << c.batch << "x" << c.in << "->" << c.out << (c.transposed ? " transposed" : ""));
    const torch::Tensor x = torch::randn({c.batch, c.in}).requires_grad_(c.input_grad);
    const torch::Tensor stored = (c.transposed ? torch::randn({c.in, c.out}) : torch::randn({c.out, c.in})).requires_grad_();
    const torch::Tensor bias = torch::randn({c.out}).requires_grad_();
    const torch::Tensor upstream = torch::randn({c.batch, c.out});
    const auto gradients = [&](bool paired) {
      std::optional<PairedProducts> pairs;
      if (paired) pairs.emplace(helper);
      const torch::Tensor weight = c.transposed ? stored.t() : stored;
      const torch::Tensor y = paired ? linear(x, weight, bias) : torch::nn::functional::linear(x, weight, bias);
      std::vector<torch::Tensor> inputs{stored, bias};
      if (c.input_grad) inputs.push_back(x);
      std::vector<torch::Tensor> out = torch::autograd::grad({y}, inputs, {upstream});
      out.insert(out.begin(), y.detach());
      return out;
    };
    const std::vector<torch::Tensor> ours = gradients(true), theirs = gradients(false);
    ASSERT_EQ(ours.size(), theirs.size());
    // Sums of hundreds of products in another order: within 1e-5 of the largest element.
    for (std::size_t i = 0; i < ours.size(); ++i) {
      const double difference = (ours[i] - theirs[i]).abs().max().item<double>();
      EXPECT_LE(difference, 1e-5 * theirs[i].abs().max().item<double>()) << "output " << i;
    }
  }
}

// Outside PairedProducts it is LibTorch's linear, bit for bit; inside, a backward that builds a
// graph gives second derivatives (the contractive penalty's), as LibTorch's does.
TEST_F(FusedTest, PairedLinearFallsBackOutsideAndDifferentiatesTwice) {
  const torch::Tensor x = torch::randn({8, 12}).requires_grad_();
  const torch::Tensor weight = torch::randn({6, 12}).requires_grad_(), bias = torch::randn({6}).requires_grad_();
  EXPECT_TRUE(torch::equal(linear(x, weight, bias), torch::nn::functional::linear(x, weight, bias)));
  EXPECT_FALSE(PairedProducts::current());
  HelperThread helper;
  const auto second_derivative = [&](bool paired) {
    std::optional<PairedProducts> pairs;
    if (paired) pairs.emplace(helper);
    const torch::Tensor y = torch::sigmoid(paired ? linear(x, weight, bias) : torch::nn::functional::linear(x, weight, bias));
    const torch::Tensor dx = torch::autograd::grad({y.sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    return torch::autograd::grad({dx.pow(2).sum()}, {weight})[0];
  };
  const torch::Tensor ours = second_derivative(true), theirs = second_derivative(false);
  EXPECT_TRUE(torch::allclose(ours, theirs, 1e-5, 1e-6)) << (ours - theirs).abs().max().item<double>();
}

TEST_F(FusedTest, HelperThreadRunsBothSidesAndRethrowsEitherSidesError) {
  HelperThread helper;
  std::thread::id there, here;
  helper.both([&] { there = std::this_thread::get_id(); }, [&] { here = std::this_thread::get_id(); });
  EXPECT_EQ(here, std::this_thread::get_id());
  EXPECT_NE(there, here);
  bool ran_here = false;
  EXPECT_THROW(helper.both([] { throw std::runtime_error("there"); }, [&] { ran_here = true; }), std::runtime_error);
  EXPECT_TRUE(ran_here);
  bool ran_there = false;
  try {
    helper.both([&] { ran_there = true; }, [] { throw std::logic_error("here"); });
    ADD_FAILURE() << "no error";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "here");
  }
  EXPECT_TRUE(ran_there);
  // After a wait long enough that the helper sleeps, it still takes the next task.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  int count = 0;
  for (int i = 0; i < 100; ++i) helper.both([&] { ++count; }, [] {});
  EXPECT_EQ(count, 100);
}

// torchae's loops on LibTorch's threads (at::parallel_for runs them on one: see parallel.h).
TEST_F(FusedTest, ParallelForSplitsTheRangeOverLibTorchsThreads) {
  ASSERT_TRUE(parallel_for_available()) << "LibTorch's OpenMP runtime (libgomp) was not found in the process";
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const int64_t n = 100003;
  std::vector<int> visits(n, 0);
  std::mutex mutex;
  std::set<std::thread::id> ran_on;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  parallel_for(0, n, 1000, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) ++visits[i];
    std::lock_guard<std::mutex> lock(mutex);
    ran_on.insert(std::this_thread::get_id());
    pieces.emplace_back(begin, end);
  });
  EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), n);
  EXPECT_EQ(ran_on.size(), 2u);
  EXPECT_EQ(pieces.size(), 2u);
  // A range of no more than `grain` elements, and a call from inside a region, stay on their thread.
  std::set<std::thread::id> small;
  parallel_for(0, 1000, 1000, [&](int64_t, int64_t) { small.insert(std::this_thread::get_id()); });
  EXPECT_EQ(small, std::set<std::thread::id>{std::this_thread::get_id()});
  std::atomic<int> inner_calls{0};
  parallel_for(0, 2, 1, [&](int64_t, int64_t) {
    const auto here = std::this_thread::get_id();
    parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      EXPECT_EQ(std::this_thread::get_id(), here);
      EXPECT_EQ(end - begin, n);
      ++inner_calls;
    });
  });
  EXPECT_EQ(inner_calls.load(), 2);
  // A piece's exception reaches the caller; the other pieces still ran.
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(0, n, 1,
                            [&](int64_t begin, int64_t) {
                              ++ran;
                              if (begin == 0) throw std::runtime_error("first piece");
                            }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 2);
  // The sum of pieces is added in their order whatever the threads: terms of very different
  // sizes, whose sum depends on the order they are added in.
  const torch::Tensor terms = torch::randn({n}, torch::kFloat64) * torch::pow(10.0, torch::randint(-8, 9, {n}).to(torch::kFloat64));
  const double* t = terms.data_ptr<double>();
  const auto piece_sum = [&](int64_t begin, int64_t end) { return std::accumulate(t + begin, t + end, 0.0); };
  double expected = 0.0;
  for (int64_t begin = 0; begin < n; begin += 4096) expected += piece_sum(begin, std::min(n, begin + 4096));
  EXPECT_EQ(parallel_sum(0, n, 4096, piece_sum), expected);
  at::set_num_threads(1);
  EXPECT_EQ(parallel_sum(0, n, 4096, piece_sum), expected);
  EXPECT_EQ(parallel_sum(5, 5, 4096, piece_sum), 0.0);
  // So the fused binary cross-entropy is the same number on one thread and on two.
  const torch::Tensor logits = torch::randn({512, 784}) * 4;
  const torch::Tensor target = torch::rand({512, 784});
  const torch::Tensor one = binary_cross_entropy_from_logits(logits, torch::sigmoid(logits), target);
  at::set_num_threads(2);
  EXPECT_TRUE(torch::equal(one, binary_cross_entropy_from_logits(logits, torch::sigmoid(logits), target)));
  at::set_num_threads(threads);
}

TEST_F(FusedTest, UniformDrawsAreUniformReproducibleAndThreadIndependent) {
  const torch::Tensor like = torch::empty({1000, 1000});
  torch::manual_seed(7);
  const torch::Tensor u = uniform_like(like);
  EXPECT_EQ(u.sizes(), like.sizes());
  EXPECT_GE(u.min().item<float>(), 0.0f);
  EXPECT_LT(u.max().item<float>(), 1.0f);
  EXPECT_NEAR(u.mean().item<double>(), 0.5, 1e-3);
  EXPECT_NEAR(u.var().item<double>(), 1.0 / 12.0, 1e-3);
  // 100 equal bins: a chi-square of 99 degrees of freedom, whose 99.9% point is 149.
  const torch::Tensor counts = torch::histc(u, 100, 0, 1);
  const double expected = 1e6 / 100;
  EXPECT_LT(((counts - expected).pow(2) / expected).sum().item<double>(), 149.0);
  // Neighbours are uncorrelated, and the next draw is another sequence.
  const torch::Tensor flat = u.flatten() - 0.5;
  EXPECT_NEAR((flat.narrow(0, 0, 999999) * flat.narrow(0, 1, 999999)).mean().item<double>() * 12, 0.0, 5e-3);
  EXPECT_FALSE(torch::equal(u, uniform_like(like)));
  expect_the_same_draws_on_another_thread_count(7, u, [&] { return uniform_like(like); });
  // Bernoulli samples follow their probabilities.
  const torch::Tensor p = torch::linspace(0, 1, 11).repeat({20000, 1});
  const torch::Tensor frequency = sample_bernoulli(p).mean(0);
  test::expect_tensors_near(frequency, torch::linspace(0, 1, 11), 0.01);
  EXPECT_EQ(frequency[0].item<float>(), 0.0f);
  EXPECT_EQ(frequency[10].item<float>(), 1.0f);
}

TEST_F(FusedTest, RademacherSignsAreBalancedIndependentAndReproducible) {
  // 1,000,003 elements: not a multiple of 64, so the last word is partial; parallel chunks start
  // mid-word.
  const torch::Tensor like = torch::empty({1000003});
  torch::manual_seed(3);
  const torch::Tensor v = rademacher_like(like);
  EXPECT_TRUE(torch::equal(v.abs(), torch::ones_like(v)));
  // Mean within 4 standard deviations (1 / sqrt(n)); neighbours, and elements 64 apart (one bit
  // of successive hashes), uncorrelated.
  EXPECT_NEAR(v.mean().item<double>(), 0.0, 4e-3);
  const int64_t n = v.numel();
  EXPECT_NEAR((v.narrow(0, 0, n - 1) * v.narrow(0, 1, n - 1)).mean().item<double>(), 0.0, 4e-3);
  EXPECT_NEAR((v.narrow(0, 0, n - 64) * v.narrow(0, 64, n - 64)).mean().item<double>(), 0.0, 4e-3);
  // Each of the 64 bit positions is balanced.
  EXPECT_LT(v.narrow(0, 0, 999936).view({-1, 64}).mean(0).abs().max().item<double>(), 0.03);
  EXPECT_FALSE(torch::equal(v, rademacher_like(like)));
  expect_the_same_draws_on_another_thread_count(3, v, [&] { return rademacher_like(like); });
  // Other types: signs too.
  const torch::Tensor d = rademacher_like(torch::empty({1000}, torch::kFloat64));
  EXPECT_EQ(d.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::equal(d.abs(), torch::ones_like(d)));
}

TEST_F(FusedTest, ChooseExactlySetsExactlyMOfEachRowUniformly) {
  const int64_t rows = 20000, d = 50, m = 12;
  const torch::Tensor mask = choose_exactly(rows, d, m);
  EXPECT_TRUE(torch::equal(mask.sum(1), torch::full({rows}, m, torch::kLong)));
  // Every position equally likely (m/d), and no two rows alike beyond chance.
  test::expect_tensors_near(mask.to(torch::kFloat).mean(0), torch::full({d}, double(m) / d), 0.015);
  EXPECT_FALSE(torch::equal(mask[0], mask[1]));
  // Pairs are as likely as a uniform m-subset makes them: m(m-1) / (d(d-1)).
  const torch::Tensor f = mask.to(torch::kFloat);
  const double pair = (f.select(1, 3) * f.select(1, 17)).mean().item<double>();
  EXPECT_NEAR(pair, double(m * (m - 1)) / (d * (d - 1)), 0.01);
  EXPECT_EQ(choose_exactly(3, 5, 0).sum().item<int64_t>(), 0);
  EXPECT_EQ(choose_exactly(3, 5, 5).sum().item<int64_t>(), 15);
}

}  // namespace
}  // namespace torchae
