// The restricted Boltzmann machine: its conditionals and free energy against the enumerated
// joint, CD-k's gradient against the exact one, persistent chains that resume exactly, Gaussian
// units that learn, AIS against the exact log Z, a deep belief network unrolled, and bad input.

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/eval/ais.h"
#include "torchae/export/export.h"
#include "torchae/models/rbm.h"
#include "torchae/models/registry.h"
#include "torchae/models/stacked.h"
#include "torchae/train/staged.h"
#include "torchae/viz/pictures.h"

#include <fmt/format.h>

#include <cmath>

namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TempDir;
using test::TorchaeTest;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

// Every binary vector of `n` units, [2^n, n], double.
torch::Tensor all_states(int64_t n) {
  const torch::Tensor bits = torch::pow(2, torch::arange(n, torch::kInt64));
  return torch::arange(int64_t{1} << n, torch::kInt64).unsqueeze(1).bitwise_and(bits).ne(0).to(torch::kDouble);
}

// A Bernoulli RBM of `visible` x `hidden` units with weights of deviation `scale` and random biases.
RBM tiny_rbm(int64_t visible, int64_t hidden, double scale, RBMOptions options = RBMOptions({1}, 1)) {
  options.input_shape({visible}).hidden(hidden);
  RBM rbm(options);
  torch::NoGradGuard no_grad;
  rbm->weights()->weight.normal_(0.0, scale);
  rbm->weights()->bias.normal_(0.0, 0.5);
  rbm->named_parameters()["visible_bias"].normal_(0.0, 0.5);
  return rbm;
}

// -E(v, h) of a Bernoulli RBM for every pair of states, [2^V, 2^H], double.
torch::Tensor negative_energies(RBM& rbm, const torch::Tensor& v, const torch::Tensor& h) {
  const torch::Tensor w = rbm->weights()->weight.detach().to(torch::kDouble);
  const torch::Tensor c = rbm->weights()->bias.detach().to(torch::kDouble);
  const torch::Tensor b = rbm->visible_bias().detach().to(torch::kDouble);
  return torch::mv(v, b).unsqueeze(1) + torch::mv(h, c).unsqueeze(0) + torch::mm(v, torch::mm(w.t(), h.t()));
}

class RbmTest : public TorchaeTest {};

TEST_F(RbmTest, ConditionalsAndFreeEnergyMatchTheEnumeratedJoint) {
  RBM rbm = tiny_rbm(5, 3, 1.0);
  const torch::Tensor v = all_states(5), h = all_states(3);
  const torch::Tensor log_joint = negative_energies(rbm, v, h);  // log p*(v, h)
  // P(h_j = 1 | v) = sum over h with h_j = 1 of p(v, h), over p(v).
  const torch::Tensor p_joint = torch::softmax(log_joint, 1);  // p(h | v), [2^V, 2^H]
  expect_tensors_near(rbm->encode(v.to(torch::kFloat)).to(torch::kDouble), torch::mm(p_joint, h), 1e-6);
  const torch::Tensor p_v_given_h = torch::softmax(log_joint, 0);  // p(v | h)
  expect_tensors_near(rbm->decode(h.to(torch::kFloat)).to(torch::kDouble), torch::mm(p_v_given_h.t(), v), 1e-6);
  // -F(v) = log sum_h exp(-E(v, h)); log Z = log sum_{v, h} exp(-E(v, h)).
  expect_tensors_near(rbm->log_unnormalized(v.to(torch::kFloat)).to(torch::kDouble), torch::logsumexp(log_joint, 1),
                      1e-5);
  ASSERT_TRUE(rbm->exact_log_partition().has_value());
  EXPECT_NEAR(*rbm->exact_log_partition(), torch::logsumexp(log_joint.flatten(), 0).item<double>(), 1e-9);
  // Gibbs sampling's conditionals: the empirical frequency of h_j = 1 given one v.
  torch::manual_seed(3);
  const torch::Tensor v0 = v[11].to(torch::kFloat).unsqueeze(0).expand({20000, 5});
  const torch::Tensor drawn = rbm->gibbs(v0, 1);  // E[v | h], h ~ P(h | v0)
  expect_tensors_near(drawn.mean(0).to(torch::kDouble), torch::mv(torch::mm(p_v_given_h.t(), v).t(), p_joint[11]),
                      0.02);
}

TEST_F(RbmTest, GaussianHiddenFreeEnergyIntegratesTheJoint) {
  // Linear-Gaussian hidden units: F(v) = -b.v - |Wv + c|^2 / 2 up to a constant, so differences of
  // F between two v equal differences of log of the joint integrated over h (here by quadrature in
  // one hidden unit).
  RBM rbm = tiny_rbm(4, 1, 0.8, RBMOptions({1}, 1).hidden_units(Units::gaussian));
  const torch::Tensor v = all_states(4);
  const torch::Tensor grid = torch::linspace(-12, 12, 24001, torch::kDouble).unsqueeze(0);  // h
  const torch::Tensor w = rbm->weights()->weight.detach().to(torch::kDouble);
  const double c = rbm->weights()->bias.item<double>();
  const torch::Tensor b = rbm->visible_bias().detach().to(torch::kDouble);
  const torch::Tensor pre = torch::mv(v, w[0]).unsqueeze(1);
  const torch::Tensor log_integrand = torch::mv(v, b).unsqueeze(1) + c * grid - 0.5 * grid.pow(2) + grid * pre;
  const torch::Tensor log_marginal = torch::logsumexp(log_integrand, 1) + std::log(24.0 / 24000);
  const torch::Tensor lu = rbm->log_unnormalized(v.to(torch::kFloat)).to(torch::kDouble);
  expect_tensors_near(lu - lu[0], log_marginal - log_marginal[0], 1e-4);
  // Its code is E[h | v] = Wv + c.
  const torch::Tensor code = rbm->encode(v.to(torch::kFloat));
  expect_tensors_near(code.to(torch::kDouble), pre + c, 1e-5);
}

// The mean gradient, over `repeats` copies of `data`, of the CD-k surrogate of `rbm` (its loss).
std::vector<torch::Tensor> cd_gradient(RBM& rbm, const torch::Tensor& data, int64_t repeats) {
  rbm->zero_grad();
  rbm->train();
  const torch::Tensor batch = data.repeat({repeats, 1});
  rbm->loss(batch, rbm->forward(batch)).total.backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : rbm->parameters()) grads.push_back(p.grad().clone());
  return grads;
}

// The exact gradient of the mean negative log-likelihood of `data`: F(v) + log Z, all states summed.
std::vector<torch::Tensor> exact_gradient(RBM& rbm, const torch::Tensor& data) {
  rbm->zero_grad();
  const torch::Tensor states = all_states(data.size(1)).to(torch::kFloat);
  const torch::Tensor log_z = torch::logsumexp(-rbm->free_energy(states), 0);
  (rbm->free_energy(data).mean() + log_z).backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : rbm->parameters()) grads.push_back(p.grad().clone());
  return grads;
}

double relative_error(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]).pow(2).sum().item<double>();
    norm += b[i].pow(2).sum().item<double>();
  }
  return std::sqrt(diff / norm);
}

TEST_F(RbmTest, CdGradientTendsToTheExactGradientAsKGrows) {
  const torch::Tensor data = torch::tensor({{1, 1, 1, 0, 0, 0, 1, 0},
                                            {1, 1, 0, 0, 0, 1, 1, 0},
                                            {0, 0, 0, 1, 1, 1, 0, 1},
                                            {0, 1, 0, 1, 1, 1, 0, 1}},
                                           torch::kFloat);
  std::vector<double> errors;
  for (int64_t k : {1, 2, 100}) {
    torch::manual_seed(0);
    RBM rbm = tiny_rbm(8, 4, 3.0, RBMOptions({1}, 1).cd_k(k));
    const auto exact = exact_gradient(rbm, data);
    torch::manual_seed(k);
    errors.push_back(relative_error(cd_gradient(rbm, data, 10000), exact));
  }
  // Measured: 0.19 (k = 1), 0.027 (k = 2), 0.0029 (k = 100).
  EXPECT_GT(errors[0], 0.1) << "CD-1 should be biased for weights this large";
  EXPECT_LT(errors[1], errors[0]);
  EXPECT_LT(errors[2], errors[1]);
  // 40,000 chains: what remains at k = 100 is sampling noise.
  EXPECT_LT(errors[2], 0.015) << errors[0] << " " << errors[1] << " " << errors[2];
}

// The loss takes both phases' free energies in one batch: its value and gradients are those of
// F(v_data).mean() - F(v_model).mean() taken apart, with CD's negatives and with persistent
// chains (as many as 5, against a batch of 7), Bernoulli and Gaussian units.
TEST_F(RbmTest, TheFreeEnergyGapTakesBothPhasesInOneBatch) {
  for (const auto& options : {RBMOptions({1}, 1).cd_k(2), RBMOptions({1}, 1).persistent(true).chains(5),
                              RBMOptions({1}, 1).hidden_units(Units::gaussian)}) {
    torch::manual_seed(3);
    RBM rbm = tiny_rbm(9, 4, 0.5, options);
    rbm->train();
    const torch::Tensor batch = (torch::rand({7, 9}) < 0.5).to(torch::kFloat);
    const Output out = rbm->forward(batch);
    const auto gradients = [&](const torch::Tensor& loss) {
      std::vector<torch::Tensor> grads;
      for (const auto& g : torch::autograd::grad({loss}, rbm->parameters(), {}, /*retain_graph=*/true)) grads.push_back(g);
      grads.push_back(loss.detach());
      return grads;
    };
    const Losses losses = rbm->loss(batch, out);
    const auto ours = gradients(losses.total);
    const auto apart = gradients(rbm->free_energy(out.input).mean() - rbm->free_energy(out.negative).mean());
    ASSERT_EQ(ours.size(), apart.size());
    for (std::size_t i = 0; i < ours.size(); ++i) expect_tensors_near(ours[i], apart[i], 1e-5);
  }
}

// The exact mean log-likelihood of `data` under `rbm`, every visible state summed over.
double exact_log_likelihood(RBMImpl& rbm, const torch::Tensor& data) {
  torch::NoGradGuard no_grad;
  const torch::Tensor log_z = torch::logsumexp(-rbm.free_energy(all_states(data.size(1)).to(torch::kFloat)), 0);
  return (-rbm.free_energy(data).mean() - log_z).item<double>();
}

TEST_F(RbmTest, PersistentChainsFitTheDataBetterThanCd1) {
  // Tieleman 2008: PCD follows the model's own distribution where CD-1 stays near the data, so
  // it reaches a higher likelihood. 10 visible units, 16 patterns of two prototypes with noise.
  const torch::Tensor prototypes = torch::tensor({{1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 1, 1, 1, 1, 1, 1}},
                                                 torch::kFloat);
  const torch::Tensor flips = (torch::rand({400, 10}) < 0.05).to(torch::kFloat);
  const torch::Tensor data = (prototypes.index_select(0, torch::arange(400) % 2) - flips).abs();
  std::vector<double> likelihood;
  for (bool persistent : {false, true}) {
    torch::manual_seed(0);
    auto model = build_model({{"family", "rbm"}, {"code_size", 6}, {"persistent", persistent}, {"chains", 50}},
                             DataSpec{{10}, 0, 1, 1}).model;
    TrainOptions o = test::quiet_cpu_options(60);
    o.optimizer = "sgd";
    o.lr = 0.05;
    o.momentum = 0.5;
    o.batch_size = 50;
    Trainer(model, o).fit(Dataset{data, {}}, Dataset{data.narrow(0, 0, 50), {}});
    likelihood.push_back(exact_log_likelihood(dynamic_cast<RBMImpl&>(*model), data));
  }
  // Measured: CD-1 -3.121, PCD -2.730 nats; the data's entropy is about 2.68 (log 2 + 10 H(0.05)).
  EXPECT_GT(likelihood[1], likelihood[0]) << "CD-1 " << likelihood[0] << ", PCD " << likelihood[1];
}

TEST_F(RbmTest, PersistentChainsAreStateThatResumesExactly) {
  const Json section = {{"family", "rbm"}, {"code_size", 4}, {"persistent", true}, {"chains", 7}, {"cd_k", 2}};
  const Dataset train{torch::rand({96, 1, 6, 5}), {}}, val{torch::rand({16, 1, 6, 5}), {}};
  auto options = [](int64_t epochs) {
    TrainOptions o = test::quiet_cpu_options(epochs);
    o.batch_size = 16;
    o.lr = 0.01;
    return o;
  };
  TempDir straight, split;
  torch::manual_seed(0);
  auto straight_model = build_model(section, kSpec).model;
  const torch::Tensor initial_chains = dynamic_cast<RBMImpl&>(*straight_model).chains().clone();
  Trainer(straight_model, options(4), straight.path()).fit(train, val);
  EXPECT_FALSE(torch::equal(dynamic_cast<RBMImpl&>(*straight_model).chains(), initial_chains)) << "the chains moved";
  torch::manual_seed(0);
  Trainer(build_model(section, kSpec).model, options(2), split.path()).fit(train, val);
  torch::manual_seed(99);
  auto resumed_model = build_model(section, kSpec).model;
  Trainer resumed(resumed_model, options(4), split.path());
  ASSERT_TRUE(resumed.resume());
  resumed.fit(train, val);
  const auto& a = dynamic_cast<RBMImpl&>(*straight_model);
  const auto& b = dynamic_cast<RBMImpl&>(*resumed_model);
  EXPECT_TRUE(torch::equal(a.chains(), b.chains()));
  EXPECT_TRUE(torch::equal(a.weights()->weight, b.weights()->weight));
  EXPECT_TRUE(torch::equal(a.visible_bias(), b.visible_bias()));
}

TEST_F(RbmTest, GaussianVisibleUnitsLearnStandardisedData) {
  // Standardised data from 3 latent factors in 20 dimensions.
  const torch::Tensor mixing = torch::randn({3, 20});
  torch::Tensor x = torch::mm(torch::randn({2000, 3}), mixing) + 0.3 * torch::randn({2000, 20});
  x = (x - x.mean(0)) / x.std(0);
  const Dataset train{x.narrow(0, 0, 1600), {}}, val{x.narrow(0, 1600, 400), {}};
  DataSpec spec{{20}, x.min().item<double>(), x.max().item<double>(), 1.0};
  spec.standardized = true;
  auto model = build_model({{"family", "rbm"}, {"code_size", 16}, {"visible_units", "gaussian"}}, spec).model;
  TrainOptions o = test::quiet_cpu_options(15);
  o.optimizer = "sgd";
  o.momentum = 0.9;
  o.lr = 0.005;
  o.batch_size = 50;
  Trainer trainer(model, o);
  const double before = trainer.evaluate(val).total;
  trainer.fit(train, val);
  const double after = trainer.evaluate(val).total;
  EXPECT_LT(after, 0.6 * before) << before << " -> " << after;
}

TEST_F(RbmTest, StandardisedDataHasUnitVarianceForGaussianUnits) {
  DataOptions options;
  options.limit = 2000;
  options.standardize = true;
  const DataSplits data = load_data(options, /*with_test=*/false);
  EXPECT_TRUE(data.spec.standardized);
  const torch::Tensor x = data.train.inputs.flatten(1);
  EXPECT_LT(x.mean(0).abs().max().item<double>(), 1e-4);
  const torch::Tensor deviation = x.std(0, /*unbiased=*/false);
  // Every feature has unit variance, but a constant one (left at 0).
  EXPECT_TRUE(((deviation - 1).abs() < 1e-3).logical_or(deviation < 1e-6).all().item<bool>());
  EXPECT_LE(data.spec.min, x.min().item<double>() + 1e-6);
  EXPECT_GE(data.spec.max, x.max().item<double>() - 1e-6);
  OptionReader both(Json{{"center", true}, {"standardize", true}}, "data");
  EXPECT_THROW(DataOptions::from(both), Error);
}

// The first `n` Fashion-MNIST training images, binarised by a fixed generator.
torch::Tensor binary_fashion(int64_t n) {
  DataOptions options;
  options.limit = n;
  options.validation_fraction = 0.0;
  const DataSplits data = load_data(options, /*with_test=*/false);
  return torch::bernoulli(data.train.inputs, at::detail::createCPUGenerator(7));
}

TEST_F(RbmTest, AisMatchesTheExactLogPartitionOfASmallRbm) {
  // 784 visible and 15 hidden units, trained a little on Fashion-MNIST so that the distribution
  // is far from the base rates: 2^15 hidden states to sum over.
  const torch::Tensor images = binary_fashion(3000);
  torch::manual_seed(0);
  auto model = build_model({{"family", "rbm"}, {"code_size", 15}}, DataSpec{{1, 28, 28}, 0, 1, 1}).model;
  TrainOptions o = test::quiet_cpu_options(3);
  o.optimizer = "sgd";
  o.momentum = 0.5;
  o.lr = 0.05;
  o.batch_size = 50;
  Trainer(model, o).fit(Dataset{images, {}}, Dataset{images.narrow(0, 0, 100), {}});
  auto& rbm = dynamic_cast<RBMImpl&>(*model);
  const double exact = *rbm.exact_log_partition();
  auto path = rbm.annealing_path(images);
  ASSERT_TRUE(path);
  EXPECT_GT(std::abs(exact - path->base_log_partition()), 20.0) << "the model is far from its base";
  torch::manual_seed(1);
  // A third of Salakhutdinov & Murray's temperatures, to keep the test short (with all 14,500
  // the estimate was 348.360 against the exact 348.357, the base model's 304.3).
  const AisEstimate estimate = ais_log_partition(*path, 5000, kDefaultAisRuns);
  EXPECT_NEAR(estimate.log_z, exact, 0.1);
  EXPECT_LT(estimate.log_z_lower, exact + 0.1);
  EXPECT_GT(estimate.log_z_upper, exact - 0.1);
  // The spread shrinks as the runs grow (as 1 / sqrt(runs)).
  torch::manual_seed(2);
  const AisEstimate few = ais_log_partition(*path, 1000, 10);
  torch::manual_seed(2);
  const AisEstimate many = ais_log_partition(*path, 1000, 400);
  EXPECT_LT(many.log_z_std_error, few.log_z_std_error);
  EXPECT_LT(many.log_z_upper - many.log_z_lower, few.log_z_upper - few.log_z_lower);
  EXPECT_LT(std::abs(many.log_z - exact), 1.0);
}

TEST_F(RbmTest, AisScheduleFollowsSalakhutdinovAndMurray) {
  const torch::Tensor betas = ais_schedule(14500);
  ASSERT_EQ(betas.numel(), 14501);
  EXPECT_EQ(betas[0].item<double>(), 0.0);
  EXPECT_EQ(betas[-1].item<double>(), 1.0);
  EXPECT_NEAR(betas[500].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(betas[4500].item<double>(), 0.9, 1e-12);
  EXPECT_TRUE((betas.narrow(0, 1, 14500) > betas.narrow(0, 0, 14500)).all().item<bool>());
  RBM rbm = tiny_rbm(4, 2, 0.1);
  auto path = rbm->annealing_path(torch::rand({10, 4}));
  EXPECT_THROW(ais_log_partition(*path, 999, 100), Error);
  EXPECT_THROW(ais_log_partition(*path, 1000, 1), Error);
}

TEST_F(RbmTest, SamplesAndChainsComeFromTheGibbsSampler) {
  RBM rbm = tiny_rbm(30, 6, 0.5, RBMOptions({1}, 1).gibbs_steps(5));
  rbm->options.input_shape({1, 6, 5});
  rbm->eval();
  const torch::Tensor samples = rbm->sample(12);
  EXPECT_EQ(samples.sizes(), (std::vector<int64_t>{12, 1, 6, 5}));
  EXPECT_TRUE((samples >= 0).all().item<bool>() && (samples <= 1).all().item<bool>());
  EXPECT_EQ(chain_steps(1000), (std::vector<int64_t>{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}));
  EXPECT_EQ(chain_steps(30), (std::vector<int64_t>{0, 1, 2, 5, 10, 20, 30}));
  const torch::Tensor starts = rbm->random_visible(4);
  const torch::Tensor grid = gibbs_chain_grid(*rbm, starts, chain_steps(30));
  // A strip of 14 rows of step counts above 4 rows of 7 pictures, 6 x 5 enlarged 14 times (to 84 x
  // 70), with a border.
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{14 + 4 * 85 + 1, 7 * 71 + 1, 1}));
  // Column 0 is the start itself.
  const torch::Tensor first = grid.narrow(0, 14 + 1, 84).narrow(1, 1, 70).squeeze(2);
  expect_tensors_near(first.to(torch::kFloat), enlarged(starts.narrow(0, 0, 1))[0][0] * 255, 0.5);
}

TEST_F(RbmTest, ExportedSampleRunsTheStatedGibbsSteps) {
  RBM rbm = tiny_rbm(30, 6, 1.0, RBMOptions({1}, 1).gibbs_steps(20));
  rbm->options.input_shape({1, 6, 5});
  rbm->eval();
  torch::jit::Module archive = to_torchscript(*rbm, torch::rand({8, 1, 6, 5}));
  torch::manual_seed(5);
  const torch::Tensor exported = archive.get_method("sample")({int64_t{4000}}).toTensor();
  const torch::Tensor native = rbm->sample(4000);
  EXPECT_EQ(exported.sizes(), native.sizes());
  // The same distribution: the mean image agrees within sampling noise.
  expect_tensors_near(exported.mean(0), native.mean(0), 0.05);
}

// ---- a deep belief network: a stack of RBMs, unrolled -------------------------------------

Json dbn(bool finetune) {
  return {{"family", "stacked"},
          {"layers",
           {{{"units", 12}, {"family", "rbm"}, {"epochs", 2}},
            {{"units", 4}, {"family", "rbm"}, {"hidden_units", "gaussian"}, {"epochs", 2}, {"lr", 0.001}}}},
          {"finetune", finetune},
          {"finetune_epochs", 2}};
}

TEST_F(RbmTest, DeepBeliefNetworkUnrollsIntoAnAutoencoderThatFineTunes) {
  const Dataset train{torch::rand({128, 1, 6, 5}), {}}, val{torch::rand({32, 1, 6, 5}), {}};
  TempDir dir;
  torch::manual_seed(0);
  auto built = build_model(dbn(true), kSpec);
  EXPECT_EQ(built.resolved["layers"][0]["visible_units"], "bernoulli");
  EXPECT_EQ(built.resolved["layers"][1]["visible_units"], "bernoulli");  // the sigmoid codes below
  auto& stack = dynamic_cast<StackedImpl&>(*built.model);
  StagedTrainer trainer(built.model, test::quiet_cpu_options(1), dir.path());
  trainer.fit(train, val);
  for (const auto& layer : stack.layers()) {
    const auto& rbm = dynamic_cast<const RBMImpl&>(*layer);
    ASSERT_TRUE(rbm.unrolled());
    // Fine-tuning moved the decoder away from the encoder's transpose.
    EXPECT_FALSE(torch::allclose(rbm.named_parameters()["decoder_weight"], rbm.weights()->weight.t()));
  }
  // A fresh model reads the unrolled checkpoint: its layers' decoders are made, then loaded.
  torch::manual_seed(1);
  auto fresh = build_model(dbn(true), kSpec).model;
  torch::serialize::InputArchive archive;
  archive.load_from((dir / kCheckpointFile).string());
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  fresh->module().load(model_archive);
  fresh->module().eval();
  built.model->module().eval();
  const torch::Tensor x = torch::rand({5, 1, 6, 5});
  expect_tensors_near(fresh->forward(x).reconstruction, built.model->forward(x).reconstruction, 0.0);
}

TEST_F(RbmTest, BadInputIsRefusedNamingTheKey) {
  const DataSpec centred{{1, 6, 5}, -0.5, 0.5, 1};
  test::expect_refused({{"family", "rbm"}}, centred, "model.visible_units");
  test::expect_refused({{"family", "rbm"}, {"cd_k", 0}}, kSpec, "model.cd_k");
  test::expect_refused({{"family", "rbm"}, {"visible_units", "gaussian"}, {"hidden_units", "gaussian"}}, kSpec, "model.hidden_units");
  test::expect_refused({{"family", "rbm"}, {"visible_units", "gaussian"}, {"binarize", true}}, kSpec, "model.binarize");
  test::expect_refused({{"family", "rbm"}, {"sparsity_target", 1.5}}, kSpec, "model.sparsity_target");
  // A Bernoulli RBM above a layer of unbounded codes.
  test::expect_refused({{"family", "stacked"},
           {"layers",
            {{{"units", 8}, {"code_activation", "identity"}}, {{"units", 4}, {"family", "rbm"}, {"visible_units", "bernoulli"}}}}},
          kSpec, "model.layers[1].visible_units");
}

}  // namespace
}  // namespace torchae
