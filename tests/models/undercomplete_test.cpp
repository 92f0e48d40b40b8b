#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/models/registry.h"
#include "torchae/models/undercomplete.h"


namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TorchaeTest;

class UndercompleteTest : public TorchaeTest {};

const std::vector<int64_t> kShape{1, 6, 5};

std::shared_ptr<Autoencoder> from_json(const Json& section, DataSpec spec = {kShape, 0, 1, 1}) {
  return build_model(section, spec).model;
}

std::string build_error(const Json& section, DataSpec spec = {kShape, 0, 1, 1}) {
  try {
    build_model(section, spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(UndercompleteTest, OutputShapes) {
  Undercomplete ae(UndercompleteOptions(BackboneOptions(kShape, 7).hidden({16, 12})));
  const torch::Tensor x = torch::rand({4, 1, 6, 5});
  const Output out = ae->forward(x);
  EXPECT_EQ(out.reconstruction.sizes(), x.sizes());
  EXPECT_EQ(out.logits.sizes(), x.sizes());
  EXPECT_EQ(out.code.sizes(), (std::vector<int64_t>{4, 7}));
  EXPECT_EQ(ae->encode(x).sizes(), (std::vector<int64_t>{4, 7}));
  EXPECT_EQ(ae->decode(out.code).sizes(), x.sizes());
  EXPECT_GE(out.reconstruction.min().item<float>(), 0.0f);  // sigmoid output
  EXPECT_LE(out.reconstruction.max().item<float>(), 1.0f);
}

TEST_F(UndercompleteTest, BackwardReachesEveryParameterAndMatchesFiniteDifferences) {
  for (bool tied : {false, true}) {
    Undercomplete ae(UndercompleteOptions(BackboneOptions(kShape, 5).hidden({9}).activation(Activation::tanh)).tied(tied));
    ae->to(torch::kFloat64);
    const torch::Tensor x = torch::rand({3, 1, 6, 5}, torch::kFloat64);
    Losses losses = ae->loss(x, ae->forward(x));
    losses.total.backward();
    for (const auto& p : ae->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
    }
    // d loss / d input, through encoder and (tied or not) decoder.
    test::check_gradient([&](const torch::Tensor& in) { return ae->loss(x, ae->forward(in)).total; }, x);
  }
}

TEST_F(UndercompleteTest, LossesAreNamedAndMatchTheirDefinitions) {
  Undercomplete bce(UndercompleteOptions(kShape, 4));
  const torch::Tensor x = torch::rand({5, 1, 6, 5});
  const Output out = bce->forward(x);
  const Losses l = bce->loss(x, out);
  ASSERT_EQ(l.terms.size(), 1u);
  EXPECT_EQ(l.terms[0].first, "recon");
  const torch::Tensor p = out.reconstruction.to(torch::kFloat64);
  const torch::Tensor expected = -(x * p.log() + (1 - x) * (1 - p).log()).mean();
  EXPECT_NEAR(l.total.item<double>(), expected.item<double>(), 1e-5);

  Undercomplete mse(UndercompleteOptions(kShape, 4).loss(ReconstructionLoss::mse));
  const Output o2 = mse->forward(x);
  EXPECT_NEAR(mse->loss(x, o2).total.item<double>(), (o2.reconstruction - x).pow(2).mean().item<double>(), 1e-7);
}

TEST_F(UndercompleteTest, TiedDecoderIsTheEncoderTransposed) {
  Undercomplete tied(UndercompleteOptions(BackboneOptions(kShape, 4).hidden({8})).tied(true));
  Undercomplete untied(UndercompleteOptions(BackboneOptions(kShape, 4).hidden({8})));
  // Untied: encoder 30*8+8 + 8*4+4, decoder 4*8+8 + 8*30+30. Tied keeps only decoder biases.
  auto count = [](torch::nn::Module& m) {
    int64_t n = 0;
    for (const auto& p : m.parameters()) n += p.numel();
    return n;
  };
  EXPECT_EQ(count(*untied), (30 * 8 + 8) + (8 * 4 + 4) + (4 * 8 + 8) + (8 * 30 + 30));
  EXPECT_EQ(count(*tied), (30 * 8 + 8) + (8 * 4 + 4) + 8 + 30);
  // One layer, linear: the decoder matrix is exactly W_e^T.
  Undercomplete one(UndercompleteOptions(BackboneOptions(kShape, 3).hidden({}).activation(Activation::identity))
                        .tied(true).linear(true).code_activation(Activation::identity)
                        .output_activation(Activation::identity).loss(ReconstructionLoss::mse));
  const torch::Tensor w = one->named_parameters()["encoder.layer0.weight"];
  expect_tensors_near(one->decoder_matrix(), w.t(), 0.0);
  const torch::Tensor h = torch::randn({2, 3});
  expect_tensors_near(one->decode(h).flatten(1), h.mm(w) + one->named_parameters()["decoder_bias0"], 1e-6);
}

TEST_F(UndercompleteTest, LinearModeHasNoNonLinearity) {
  auto ae = std::dynamic_pointer_cast<UndercompleteImpl>(from_json({{"linear", true}, {"code_size", 3}, {"hidden", Json::array()}}));
  ASSERT_TRUE(ae);
  EXPECT_EQ(ae->options.loss(), ReconstructionLoss::mse);
  // f and g are affine: f(a + b) - f(b) = f(a) - f(0).
  const torch::Tensor a = torch::randn({1, 1, 6, 5}), b = torch::randn({1, 1, 6, 5});
  const torch::Tensor zero = torch::zeros({1, 1, 6, 5});
  expect_tensors_near(ae->forward(a + b).reconstruction - ae->forward(b).reconstruction,
                      ae->forward(a).reconstruction - ae->forward(zero).reconstruction, 1e-5);
}

TEST_F(UndercompleteTest, FactoryRefusesBadOptionsNamingTheKey) {
  EXPECT_EQ(build_error({{"family", "nope"}}),
            "unknown model family \"nope\" (known: contractive, dbm, denoising, dropout, ksparse, rbm, sparse, stacked, undercomplete, vae, wae)");
  EXPECT_NE(build_error({{"code_size", 0}}).find("model.code_size: must be >= 1"), std::string::npos);
  EXPECT_NE(build_error({{"hidden", {8, "x"}}}).find("model.hidden: expected a list of integers"), std::string::npos);
  EXPECT_NE(build_error({{"activation", "gelu"}}).find("model.activation: expected one of relu, sigmoid, tanh, identity"),
            std::string::npos);
  EXPECT_NE(build_error({{"widths", {8}}}).find("model.widths: unknown key"), std::string::npos);
  EXPECT_NE(build_error({{"linear", true}, {"activation", "relu"}}).find("model.activation: must be identity"),
            std::string::npos);
  EXPECT_NE(build_error({{"output_activation", "identity"}}).find("model.loss: bce is computed from logits"),
            std::string::npos);
  EXPECT_NE(build_error(Json::object(), DataSpec{kShape, -0.5, 0.5, 1}).find("model.loss: bce needs data in [0, 1]"),
            std::string::npos);
  EXPECT_NE(build_error({{"family", 3}}).find("model.family: expected a string"), std::string::npos);
}

TEST_F(UndercompleteTest, FactoryResolvesDefaults) {
  const BuiltModel built = build_model(Json::object(), DataSpec{kShape, 0, 1, 1});
  EXPECT_EQ(built.resolved["family"], "undercomplete");
  EXPECT_EQ(built.resolved["code_size"], 32);
  EXPECT_EQ(built.resolved["code_activation"], "identity");
  EXPECT_EQ(built.resolved["hidden"], Json({512}));
  EXPECT_EQ(built.resolved["loss"], "bce");
  // Building again from the resolved section gives the same model.
  EXPECT_EQ(build_model(built.resolved, DataSpec{kShape, 0, 1, 1}).resolved, built.resolved);
}

TEST(Registry, RefusesDuplicatesAndListsBuiltins) {
  Registry r;
  r.add({"a", "first", nullptr});
  EXPECT_THROW(r.add({"a", "again", nullptr}), Error);
  const auto families = Registry::builtin().families();
  ASSERT_FALSE(families.empty());
  for (const auto* f : families) {
    EXPECT_FALSE(f->description.empty()) << f->name;
    EXPECT_TRUE(static_cast<bool>(f->build)) << f->name;
  }
}

}  // namespace
}  // namespace torchae
