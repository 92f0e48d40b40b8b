// The regularized families: what every family must show, then what defines each one.

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/data/dataset.h"
#include "torchae/eval/metrics.h"
#include "torchae/models/contractive.h"
#include "torchae/models/denoising.h"
#include "torchae/models/ksparse.h"
#include "torchae/models/registry.h"
#include "torchae/models/sparse.h"
#include "torchae/nn/penalties.h"
#include "torchae/train/trainer.h"
#include "torchae/viz/pictures.h"

#include <algorithm>
#include <sstream>


namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TorchaeTest;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

std::shared_ptr<Autoencoder> build(const Json& section) { return build_model(section, kSpec).model; }

// Builds `model` for `data` from seed 0, trains it quietly on CPU and returns it in eval mode.
std::shared_ptr<Autoencoder> trained(const Json& model, const DataSplits& data, int64_t epochs) {
  torch::manual_seed(0);
  auto built = build_model(model, data.spec);
  Trainer trainer(built.model, test::quiet_cpu_options(epochs));
  trainer.fit(data.train, data.validation);
  built.model->module().eval();
  return built.model;
}

// The first `limit` Fashion-MNIST training images (split) and the test set.
DataSplits fashion_mnist(int64_t limit) {
  DataOptions options;
  options.limit = limit;
  return load_data(options, /*with_test=*/true);
}

// ---- every family, through the factory -------------------------------------------------

class EveryFamily : public TorchaeTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::shared_ptr<Autoencoder> model() { return build(Json::parse(GetParam())); }
};

TEST_P(EveryFamily, OutputShapes) {
  auto ae = model();
  const torch::Tensor x = torch::rand({4, 1, 6, 5});
  const Output out = ae->forward(x);
  EXPECT_EQ(out.reconstruction.sizes(), x.sizes());
  EXPECT_EQ(out.code.sizes(), (std::vector<int64_t>{4, ae->code_size()}));
  EXPECT_EQ(ae->decode(out.code).sizes(), x.sizes());
  ae->module().eval();
  EXPECT_EQ(ae->encode(x).sizes(), (std::vector<int64_t>{4, ae->code_size()}));
}

TEST_P(EveryFamily, BackwardReachesEveryParameter) {
  auto ae = model();
  const torch::Tensor x = torch::rand({8, 1, 6, 5});
  Losses losses = ae->loss(x, ae->forward(x));
  ASSERT_TRUE(torch::isfinite(losses.total).item<bool>());
  losses.total.backward();
  for (const auto& p : ae->module().named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  EXPECT_FALSE(losses.terms.empty());
  EXPECT_EQ(losses.terms.front().first, "recon");
}

TEST_P(EveryFamily, SaveLoadRoundTrip) {
  auto a = model();
  torch::manual_seed(77);
  auto b = model();
  a->module().eval();
  b->module().eval();
  const torch::Tensor x = torch::rand({3, 1, 6, 5});
  test::copy_weights(*a, *b);
  expect_tensors_near(b->forward(x).reconstruction, a->forward(x).reconstruction, 0.0);
}

TEST_P(EveryFamily, EvalModeIsDeterministic) {
  auto ae = model();
  ae->module().eval();
  const torch::Tensor x = torch::rand({5, 1, 6, 5});
  EXPECT_TRUE(torch::equal(ae->forward(x).reconstruction, ae->forward(x).reconstruction));
  EXPECT_TRUE(torch::equal(ae->encode(x), ae->encode(x)));
}

INSTANTIATE_TEST_SUITE_P(
    Families, EveryFamily,
    ::testing::ValuesIn(test::family_configs()));

std::vector<std::string> registered_names() {
  std::vector<std::string> names;
  for (const auto* f : Registry::builtin().families()) names.push_back(f->name);
  return names;
}

TEST(Families, RegistryListsEveryFamily) {
  // Each module of the build's family list (models/families.cmake) registers a family of its name.
  const std::vector<std::string> names = registered_names();
  std::stringstream modules(TORCHAE_FAMILY_MODULES);
  int64_t count = 0;
  for (std::string module; std::getline(modules, module, ','); ++count) {
    EXPECT_NE(std::find(names.begin(), names.end(), module), names.end()) << module << " is not registered";
  }
  EXPECT_GT(count, 0);
  EXPECT_GE(static_cast<int64_t>(names.size()), count);
}

TEST(Families, EveryRegisteredFamilyHasTestConfigurations) {
  for (const std::string& name : registered_names()) {
    const auto file = test::family_config_file(name);
    Json configs;
    ASSERT_NO_THROW(configs = load_json_file(file)) << name << ": " << file << " is missing or not JSON";
    ASSERT_TRUE(configs.is_array() && !configs.empty()) << file << ": expected a non-empty list of model sections";
    for (const Json& config : configs) EXPECT_EQ(config.value("family", ""), name) << file << ": " << config;
  }
}

std::string build_error(const Json& section) {
  try {
    build(section);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Families, OptionsAreCheckedByName) {
  EXPECT_NE(build_error({{"family", "sparse"}, {"penalty", "kl"}, {"code_activation", "relu"}})
                .find("model.code_activation: the KL penalty needs a code in [0, 1]"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", "sparse"}, {"rho", 1.0}}).find("model.rho: must be in (0, 1)"), std::string::npos);
  EXPECT_NE(build_error({{"family", "ksparse"}, {"code_size", 10}, {"k", 11}}).find("model.k: must be in [1, 10]"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", "ksparse"}, {"k", 25}, {"anneal_from", 10}}).find("model.anneal_from"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", "denoising"}, {"corruption", "blur"}}).find("model.corruption: expected one of"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", "denoising"}, {"level", 1.5}}).find("model.level: must be in [0, 1]"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", "contractive"}, {"hidden", {16}}, {"method", "analytic"}})
                .find("model.method: analytic is the closed form for one affine layer + sigmoid"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", "dropout"}, {"dropout", 1.0}}).find("model.dropout"), std::string::npos);
  // A contractive model with a deeper encoder defaults to the exact penalty.
  EXPECT_EQ(build_model({{"family", "contractive"}, {"hidden", {16}}}, kSpec).resolved["method"], "exact");
}

// ---- sparse ------------------------------------------------------------------------------

class SparseTest : public TorchaeTest {};

TEST_F(SparseTest, PenaltiesEqualHandComputedValues) {
  const torch::Tensor h = torch::tensor({{1.0, -2.0}, {3.0, 0.0}}, torch::kFloat64);
  EXPECT_DOUBLE_EQ(l1_penalty(h).item<double>(), 3.0);  // (|1| + |-2| + |3| + 0) / 2 examples
  const torch::Tensor s = torch::tensor({{0.1, 0.2}, {0.3, 0.4}}, torch::kFloat64);
  const double rho = 0.05;
  double expected = 0.0;
  for (double rho_hat : {0.2, 0.3}) {
    expected += rho * std::log(rho / rho_hat) + (1 - rho) * std::log((1 - rho) / (1 - rho_hat));
  }
  EXPECT_NEAR(kl_sparsity_penalty(s, rho).item<double>(), expected, 1e-12);
  EXPECT_THROW(kl_sparsity_penalty(h, rho), Error);
}

Json train_and_measure(const Json& model, int64_t epochs) {
  const DataSplits data = fashion_mnist(3000);
  auto ae = trained(model, data, epochs);
  torch::NoGradGuard no_grad;
  const torch::Tensor code = ae->encode(data.test.inputs.narrow(0, 0, 2000));
  return {{"mean_activation", code.mean().item<double>()}, {"mean_abs", code.abs().mean().item<double>()}};
}

TEST_F(SparseTest, KlPenaltyDrivesTheMeanActivationToRho) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  const Json m = train_and_measure({{"family", "sparse"}, {"penalty", "kl"}, {"rho", 0.05}, {"code_size", 64}}, 8);
  RecordProperty("mean_activation", std::to_string(m["mean_activation"].get<double>()));
  EXPECT_NEAR(m["mean_activation"].get<double>(), 0.05, 0.02);
}

TEST_F(SparseTest, L1PenaltyLowersTheMeanAbsoluteCode) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  const Json with = train_and_measure({{"family", "sparse"}, {"lambda", 1e-2}, {"code_size", 64}}, 3);
  const Json without = train_and_measure({{"family", "sparse"}, {"lambda", 0.0}, {"code_size", 64}}, 3);
  RecordProperty("mean_abs_l1", std::to_string(with["mean_abs"].get<double>()));
  RecordProperty("mean_abs_plain", std::to_string(without["mean_abs"].get<double>()));
  EXPECT_LT(with["mean_abs"].get<double>(), 0.5 * without["mean_abs"].get<double>());
}

// ---- k-sparse ----------------------------------------------------------------------------

class KSparseTest : public TorchaeTest {};

TEST_F(KSparseTest, ExactlyKNonZerosWhileTrainingAndAlphaKAtEncode) {
  auto ae = std::dynamic_pointer_cast<KSparseImpl>(build({{"family", "ksparse"}, {"code_size", 40}, {"k", 5}}));
  ASSERT_TRUE(ae);
  const torch::Tensor x = torch::rand({16, 1, 6, 5});
  const Output out = ae->forward(x);
  EXPECT_TRUE(torch::equal((out.code != 0).sum(1), torch::full({16}, 5, torch::kLong)));
  EXPECT_TRUE(torch::equal((ae->encode(x) != 0).sum(1), torch::full({16}, 5, torch::kLong)));
  ae->eval();
  EXPECT_TRUE(torch::equal((ae->encode(x) != 0).sum(1), torch::full({16}, 15, torch::kLong)));  // alpha 3
  EXPECT_TRUE(torch::equal((ae->forward(x).code != 0).sum(1), torch::full({16}, 5, torch::kLong)));
}

TEST_F(KSparseTest, KeptUnitsAreTheLargestAndOnlyTheyGetGradient) {
  const torch::Tensor h = torch::tensor({{0.5, -3.0, 2.0, 1.0}}, torch::requires_grad());
  const torch::Tensor kept = keep_top_k(h, 2);
  expect_tensors_near(kept, torch::tensor({{0.0, 0.0, 2.0, 1.0}}), 0.0);
  kept.sum().backward();
  expect_tensors_near(h.grad(), torch::tensor({{0.0, 0.0, 1.0, 1.0}}), 0.0);

  // Through the whole model, untied: encoder rows of dropped units get no gradient.
  auto ae = build({{"family", "ksparse"}, {"code_size", 12}, {"k", 3}, {"tied", false}});
  const torch::Tensor x = torch::rand({1, 1, 6, 5});
  const Output out = ae->forward(x);
  ae->loss(x, out).total.backward();
  const torch::Tensor row_grad = ae->module().named_parameters()["backbone.encoder.layer0.weight"].grad().abs().sum(1);
  EXPECT_TRUE(torch::equal(row_grad > 0, out.code[0] != 0));
}

TEST_F(KSparseTest, AnnealingScheduleAndTrainerHook) {
  auto ae = std::dynamic_pointer_cast<KSparseImpl>(
      build({{"family", "ksparse"}, {"code_size", 100}, {"k", 10}, {"anneal_from", 90}, {"anneal_fraction", 0.5}}));
  ASSERT_TRUE(ae);
  // 10 epochs, annealed over the first 5: 90, 74, 58, 42, 26, then 10.
  std::vector<int64_t> ks;
  for (int64_t e = 0; e < 10; ++e) ks.push_back(ae->k_at(e, 10));
  EXPECT_EQ(ks, (std::vector<int64_t>{90, 74, 58, 42, 26, 10, 10, 10, 10, 10}));
  Trainer trainer(ae, test::quiet_cpu_options(2));
  const Dataset data{torch::rand({32, 1, 6, 5}), {}};
  trainer.fit(data, data);
  // Over 2 epochs the annealing span is round(0.5 * 2) = 1 epoch: 90 in epoch 0, 10 in epoch 1.
  EXPECT_EQ(ae->k_at(0, 2), 90);
  EXPECT_EQ(ae->current_k(), 10);  // the trainer set the last epoch's k
}

// ---- denoising ---------------------------------------------------------------------------

class DenoisingTest : public TorchaeTest {};

TEST_F(DenoisingTest, CorruptsTheInputOnlyWhileTraining) {
  auto ae = build({{"family", "denoising"}, {"corruption", "masking"}, {"level", 0.5}});
  const torch::Tensor x = torch::rand({4, 1, 6, 5}) + 0.1;  // no exact zeros
  const Output out = ae->forward(x);
  ASSERT_TRUE(out.input.defined());
  EXPECT_TRUE(torch::equal(out.input == 0, out.mask));
  EXPECT_TRUE(torch::equal(out.mask.flatten(1).sum(1), torch::full({4}, 15, torch::kLong)));
  ae->module().eval();
  EXPECT_FALSE(ae->forward(x).input.defined());
}

TEST_F(DenoisingTest, EmphasisedLossEqualsHandComputedValue) {
  auto ae = build({{"family", "denoising"}, {"loss", "mse"}, {"alpha", 2.0}, {"beta", 0.5}});
  Output out;
  out.reconstruction = torch::tensor({{0.0, 1.0}, {1.0, 1.0}});
  out.logits = out.reconstruction;
  out.mask = torch::tensor({{true, false}, {false, true}});
  const torch::Tensor target = torch::tensor({{1.0, 0.0}, {0.5, 0.0}});
  // squared errors 1, 1, 0.25, 1; weights 2, 0.5, 0.5, 2 -> (2 + 0.5 + 0.125 + 2) / 4
  EXPECT_NEAR(ae->loss(target, out).total.item<double>(), 4.625 / 4, 1e-7);
}

TEST_F(DenoisingTest, ReconstructsMaskedInputsBetterThanAPlainAutoencoder) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  const DataSplits data = fashion_mnist(6000);
  const Dataset test{data.test.inputs.narrow(0, 0, 2000), {}};
  const CorruptionOptions masking{CorruptionKind::masking, 0.5};
  torch::manual_seed(1);
  const torch::Tensor corrupted = corrupt(test.inputs, masking).input;
  double mse[2];
  int i = 0;
  const Json plain = {{"family", "undercomplete"}, {"code_size", 32}, {"hidden", {256}}};
  Json denoising = plain;
  denoising["family"] = "denoising";
  denoising["level"] = 0.5;
  for (const Json& model : {plain, denoising}) {
    auto ae = trained(model, data, 5);
    torch::NoGradGuard no_grad;
    mse[i++] = (ae->forward(corrupted).reconstruction - test.inputs).pow(2).mean().item<double>();
  }
  RecordProperty("masked50_mse_plain", std::to_string(mse[0]));
  RecordProperty("masked50_mse_denoising", std::to_string(mse[1]));
  EXPECT_LT(mse[1], 0.8 * mse[0]);
}

// ---- contractive ------------------------------------------------------------------------

TEST(ContractiveFamily, LowersTheTestJacobianNormAgainstAPlainAutoencoder) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  const DataSplits data = fashion_mnist(3000);
  const Json plain = {{"family", "undercomplete"}, {"hidden", Json::array()}, {"code_size", 64},
                      {"code_activation", "sigmoid"}};
  Json contractive = plain;
  contractive["family"] = "contractive";
  contractive["lambda"] = 0.1;
  double norm[2];
  int i = 0;
  for (const Json& model : {plain, contractive}) {
    auto ae = trained(model, data, 4);
    const torch::Tensor x = data.test.inputs.narrow(0, 0, 500).detach().requires_grad_(true);
    norm[i++] = std::sqrt(jacobian_penalty(ae->encode(x), x, JacobianMethod::exact).item<double>());
  }
  RecordProperty("test_jacobian_norm_plain", std::to_string(norm[0]));
  RecordProperty("test_jacobian_norm_contractive", std::to_string(norm[1]));
  EXPECT_LT(norm[1], 0.7 * norm[0]);
}

TEST(ContractiveFamily, HutchinsonPushesProbesThroughAnMlpEncoderAndAveragesToTheExactPenalty) {
  torch::manual_seed(0);
  const Json exact = {{"family", "contractive"}, {"hidden", {5}}, {"code_size", 4}, {"method", "exact"}};
  Json hutchinson = exact;
  hutchinson["method"] = "hutchinson";
  hutchinson["probes"] = 3000;
  auto a = build(exact), b = build(hutchinson);
  torch::NoGradGuard no_grad;
  const auto from = a->module().parameters();
  const auto to = b->module().parameters();
  for (std::size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  const torch::Tensor x = torch::rand({16, 1, 6, 5});
  const auto term = [](const Losses& losses) {
    for (const auto& [name, value] : losses.terms) {
      if (name == "contractive") return value;
    }
    return torch::Tensor();
  };
  torch::Tensor exact_term, estimate;
  {
    torch::AutoGradMode enable(true);
    exact_term = term(a->loss(x, a->forward(x)));
    const Output out = b->forward(x);
    // Forward mode: the probes' J v ride with the output; the input needs no gradient.
    EXPECT_EQ(out.code_tangents.sizes(), (std::vector<int64_t>{3000, 16, 4}));
    EXPECT_FALSE(out.input.defined());
    estimate = term(b->loss(x, out));
  }
  EXPECT_NEAR(estimate.item<double>(), exact_term.item<double>(), 0.03 * exact_term.item<double>());
}

// ---- pictures ----------------------------------------------------------------------------

TEST(Pictures, ActivationMaximisationBeatsRandomInputsOfTheSameNorm) {
  torch::manual_seed(0);
  auto ae = build({{"family", "undercomplete"}, {"code_size", 6}, {"hidden", {16}}, {"code_activation", "tanh"}});
  const torch::Tensor best = maximize_unit(*ae, 2, kSpec.shape, 3.0);
  EXPECT_NEAR(best.norm().item<double>(), 3.0, 1e-4);
  torch::NoGradGuard no_grad;
  torch::Tensor random = torch::randn({200, 1, 6, 5});
  random = random * (3.0 / random.flatten(1).norm(2, {1}).view({-1, 1, 1, 1}));
  const double top = ae->encode(best)[0][2].item<double>();
  EXPECT_GT(top, ae->encode(random).select(1, 2).max().item<double>());
}

// For one affine layer and a monotone activation, the maximiser on the sphere is the filter
// direction, however saturated the unit gets on the way.
TEST(Pictures, ActivationMaximisationOfOneLayerFindsTheFilter) {
  torch::manual_seed(0);
  auto ae = build({{"family", "contractive"}, {"code_size", 6}});  // one sigmoid layer
  const torch::Tensor best = maximize_unit(*ae, 4, kSpec.shape, 40.0).flatten();
  const torch::Tensor filter = first_layer_filters(*ae, kSpec.shape)[4].flatten();
  EXPECT_GT(torch::dot(best, filter).item<double>() / best.norm().item<double>(), 0.99);
}

TEST(Pictures, FiltersAreUnitNormRowsOfTheFirstLayer) {
  torch::manual_seed(0);
  auto ae = build({{"family", "denoising"}, {"code_size", 6}, {"hidden", {16}}});
  const torch::Tensor filters = first_layer_filters(*ae, kSpec.shape);
  EXPECT_EQ(filters.sizes(), (std::vector<int64_t>{16, 1, 6, 5}));
  expect_tensors_near(filters.flatten(1).norm(2, {1}), torch::ones({16}), 1e-5);
  const torch::Tensor w = ae->module().named_parameters()["backbone.encoder.layer0.weight"];
  expect_tensors_near(filters.flatten(1) * w.norm(2, {1}, true), w, 1e-5);
  const torch::Tensor grid = image_grid(filters, 10, true);
  EXPECT_EQ(grid.sizes(), (std::vector<int64_t>{2 * 7 + 1, 10 * 6 + 1, 1}));
}

// ---- dropout -----------------------------------------------------------------------------

TEST(DropoutFamily, ActiveWhileTrainingOffInEval) {
  torch::manual_seed(0);
  auto ae = build({{"family", "dropout"}, {"input_dropout", 0.3}, {"dropout", 0.5}});
  const torch::Tensor x = torch::rand({4, 1, 6, 5});
  EXPECT_FALSE(torch::equal(ae->forward(x).reconstruction, ae->forward(x).reconstruction));
  ae->module().eval();
  EXPECT_TRUE(torch::equal(ae->forward(x).reconstruction, ae->forward(x).reconstruction));
}

}  // namespace
}  // namespace torchae
