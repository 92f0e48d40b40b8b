// The variational autoencoder: its KL term, its likelihood estimates, and the linear-Gaussian
// case where log p(x) is known in closed form (probabilistic PCA).

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/data/dataset.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/models/vae.h"
#include "torchae/nn/penalties.h"
#include "torchae/train/run.h"
#include "torchae/train/trainer.h"
#include "torchae/viz/pictures.h"

#include <fmt/format.h>

namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TorchaeTest;

class VaeTest : public TorchaeTest {};

// Trains `model` on `data` quietly on the CPU and returns it in eval mode.
std::shared_ptr<VAEImpl> trained_vae(const Json& model, const DataSplits& data, int64_t epochs, double lr = 1e-3) {
  auto built = build_model(model, data.spec);
  TrainOptions options = test::quiet_cpu_options(epochs);
  options.lr = lr;
  Trainer trainer(built.model, options);
  trainer.fit(data.train, data.validation);
  auto vae = std::dynamic_pointer_cast<VAEImpl>(built.model);
  vae->eval();
  return vae;
}

TEST_F(VaeTest, ClosedFormKlAgreesWithMonteCarlo) {
  const torch::Tensor mu = torch::randn({4, 3}, torch::kDouble);
  const torch::Tensor log_var = 0.5 * torch::randn({4, 3}, torch::kDouble);
  const int64_t samples = 400000;
  const torch::Tensor z = mu + torch::exp(0.5 * log_var) * torch::randn({samples, 4, 3}, torch::kDouble);
  const torch::Tensor log_q = diagonal_gaussian_log_density(z, mu, log_var);
  const torch::Tensor log_p = diagonal_gaussian_log_density(z, torch::zeros_like(mu), torch::zeros_like(log_var));
  const torch::Tensor monte_carlo = (log_q - log_p).mean(0);
  // The Monte Carlo error is about std(log q - log p) / sqrt(samples): under 0.01 here.
  expect_tensors_near(monte_carlo, kl_to_standard_normal(mu, log_var), 0.01);
  EXPECT_TRUE(torch::allclose(kl_to_standard_normal(torch::zeros({2, 5}), torch::zeros({2, 5})), torch::zeros({2})));
}

TEST_F(VaeTest, ImportanceSampledLikelihoodBoundsTheElboAndRisesWithK) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required";
  DataOptions data_options;
  data_options.limit = 3000;
  const DataSplits data = load_data(data_options, /*with_test=*/true);
  auto vae = trained_vae({{"family", "vae"}, {"code_size", 4}, {"hidden", {128}}}, data, 3);
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::bernoulli(data.test.inputs.narrow(0, 0, 200));
  double elbo = 0.0;
  for (int i = 0; i < 20; ++i) elbo += vae->elbo(x).mean().item<double>() / 20;
  std::vector<double> estimates;
  for (int64_t k : {1, 10, 100, 1000}) estimates.push_back(vae->importance_log_likelihood(x, k).mean().item<double>());
  RecordProperty("elbo", std::to_string(elbo));
  RecordProperty("is_k1_10_100_1000", fmt::format("{:.3f} {:.3f} {:.3f} {:.3f}", estimates[0], estimates[1],
                                                  estimates[2], estimates[3]));
  // k = 1 is the ELBO in expectation (one sample each: noise of a few tenths of a nat).
  EXPECT_NEAR(estimates[0], elbo, 1.0);
  for (std::size_t i = 1; i < estimates.size(); ++i) EXPECT_GT(estimates[i], estimates[i - 1]) << "k index " << i;
  EXPECT_GT(estimates.back(), elbo + 0.5);
}

TEST_F(VaeTest, LinearGaussianVaeEstimatesTheProbabilisticPcaLikelihood) {
  // Data from a probabilistic PCA model, x = W z + b + noise with z in R^2, x in R^6.
  const int64_t n = 4000, dim = 6, latent = 2;
  const torch::Tensor w = torch::randn({dim, latent});
  const torch::Tensor b = torch::randn({dim});
  const torch::Tensor x = torch::randn({n, latent}).mm(w.t()) + b + 0.3 * torch::randn({n, dim});
  DataSplits data;
  data.train.inputs = x.narrow(0, 0, 3500);
  data.validation.inputs = x.narrow(0, 3500, 500);
  data.spec = DataSpec{{dim}, x.min().item<double>(), x.max().item<double>(), 1.0};
  // Linear encoder and decoder (no hidden layer), Gaussian p(x|z) with a learned variance.
  auto vae = trained_vae({{"family", "vae"}, {"code_size", latent}, {"hidden", Json::array()}, {"decoder", "gaussian"},
                          {"sigma", 1.0}},
                         data, 60, 1e-2);

  // The model's own marginal: x ~ N(b_d, W_d W_d^T + diag(exp(log_variance))).
  torch::Tensor w_d, b_d, log_variance;
  for (const auto& p : vae->named_parameters()) {
    if (p.key() == "decoder.layer0.weight") w_d = p.value().detach().to(torch::kDouble);
    if (p.key() == "decoder.layer0.bias") b_d = p.value().detach().to(torch::kDouble);
    if (p.key() == "log_variance") log_variance = p.value().detach().to(torch::kDouble);
  }
  ASSERT_TRUE(w_d.defined() && b_d.defined() && log_variance.defined());
  const torch::Tensor covariance = w_d.mm(w_d.t()) + torch::diag(log_variance.exp());
  const torch::Tensor test = data.validation.inputs.narrow(0, 0, 200);
  const torch::Tensor centred = test.to(torch::kDouble) - b_d;
  const torch::Tensor solved = torch::linalg_solve(covariance, centred.t(), /*left=*/true);
  const double log_det = std::get<1>(torch::linalg_slogdet(covariance)).item<double>();
  const torch::Tensor exact =
      -0.5 * (static_cast<double>(dim) * std::log(2 * M_PI) + log_det + (centred.t() * solved).sum(0));

  torch::NoGradGuard no_grad;
  const torch::Tensor estimate = vae->importance_log_likelihood(test, 2000).to(torch::kDouble);
  const double mean_gap = (estimate - exact).mean().item<double>();
  RecordProperty("mean_gap_nats", std::to_string(mean_gap));
  EXPECT_LT(std::abs(mean_gap), 1.0);
  EXPECT_LT((estimate - exact).abs().max().item<double>(), 1.0);
}

TEST_F(VaeTest, EvalModeEncodesToTheMeanAndExportSamplesFromThePrior) {
  auto vae = std::dynamic_pointer_cast<VAEImpl>(
      build_model(Json{{"family", "vae"}, {"code_size", 3}, {"hidden", {12}}}, DataSpec{{1, 6, 5}, 0, 1, 1}).model);
  const torch::Tensor x = torch::rand({5, 1, 6, 5});
  vae->train();
  EXPECT_FALSE(torch::equal(vae->encode(x), vae->encode(x))) << "training mode samples z";
  vae->eval();
  expect_tensors_near(vae->encode(x), vae->posterior(x).first, 0.0);
  EXPECT_EQ(vae->sample(7).sizes(), (std::vector<int64_t>{7, 1, 6, 5}));

  torch::jit::Module exported = to_torchscript(*vae, x);
  const torch::Tensor samples = exported.get_method("sample")({int64_t{9}}).toTensor();
  EXPECT_EQ(samples.sizes(), (std::vector<int64_t>{9, 1, 6, 5}));
  EXPECT_TRUE(samples.ge(0).all().item<bool>() && samples.le(1).all().item<bool>());
}

TEST_F(VaeTest, BinarizesInTrainingAndScoresLikelihoodOnAFixedBinarisation) {
  auto vae = std::dynamic_pointer_cast<VAEImpl>(
      build_model(Json{{"family", "vae"}, {"code_size", 3}, {"hidden", {12}}}, DataSpec{{1, 6, 5}, 0, 1, 1}).model);
  vae->train();
  const Output out = vae->forward(torch::full({4, 1, 6, 5}, 0.5));
  ASSERT_TRUE(out.input.defined());
  EXPECT_TRUE((out.input.eq(0) | out.input.eq(1)).all().item<bool>());
  const Losses losses = vae->loss(torch::full({4, 1, 6, 5}, 0.5), out);
  ASSERT_EQ(losses.terms.size(), 2u);
  EXPECT_EQ(losses.terms[1].first, "kl");

  Dataset test;
  test.inputs = torch::rand({30, 1, 6, 5});
  const Json a = evaluate_likelihood(*vae, test, 5, torch::kCPU);
  const Json b = evaluate_likelihood(*vae, test, 50, torch::kCPU);
  EXPECT_EQ(a["binarized"], true);
  EXPECT_EQ(b["iw_samples"], 50);
  EXPECT_GE(b["test_log_likelihood_is"].get<double>(), b["test_elbo"].get<double>());
}

TEST_F(VaeTest, BernoulliDecoderRefusesDataOutsideTheUnitInterval) {
  try {
    build_model(Json{{"family", "vae"}}, DataSpec{{4}, -1, 1, 1});
    FAIL() << "built a Bernoulli VAE for data in [-1, 1]";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("model.decoder: bernoulli needs data in [0, 1]"), std::string::npos)
        << e.what();
  }
}

TEST_F(VaeTest, SamplesInterpolationsAndLatentPlaneAreDrawnAndSamplesScored) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required";
  test::TempDir dir;
  train_run({{"model", {{"family", "vae"}, {"code_size", 3}, {"hidden", {32}}}},
             {"data", {{"limit", 600}}},
             {"train", {{"epochs", 1}, {"progress", "none"}}}},
            dir / "run");
  viz_run(dir / "run", "samples", dir / "samples.png", -1, 20);
  viz_run(dir / "run", "interp", dir / "interp.png", -1, 3);
  viz_run(dir / "run", "latent", dir / "latent.png", -1, 500);
  // 20 samples in rows of 10, 28x28 drawn 84x84 with a 1-pixel border, a title band above; 3 rows
  // of 10 steps + 2 ends under a strip of captions; the plane and its legend under a title.
  const auto samples = test::png_size(dir / "samples.png"), interp = test::png_size(dir / "interp.png"),
             latent = test::png_size(dir / "latent.png");
  EXPECT_GE(samples.first, 10 * 85 + 1);
  EXPECT_GE(samples.second, 2 * 85 + 1 + 40);
  EXPECT_GE(interp.first, 12 * 85 + 1);
  EXPECT_GE(interp.second, 14 + 3 * 85 + 1 + 40);
  EXPECT_GE(latent.first, 1000);
  EXPECT_GE(latent.second, 800 + 40);

  train_run({{"model", {{"code_size", 3}, {"hidden", {16}}}},
             {"data", {{"limit", 300}}},
             {"train", {{"epochs", 1}, {"progress", "none"}}}},
            dir / "plain");
  // eval scores samples in the features of the shipped Fashion-MNIST classifier; for a family
  // without a prior there is nothing to score.
  EvalOptions eval_options;
  eval_options.iw_samples = 2;
  eval_options.fd_samples = 1000;
  const Json metrics = evaluate_run(dir / "run", eval_options);
  EXPECT_EQ(metrics["fd_fashion_samples"], 540);  // capped by the training split (600 less 10% validation)
  EXPECT_GT(metrics["fd_fashion"].get<double>(), metrics["fd_fashion_reference"].get<double>());
  EXPECT_GT(metrics["fd_fashion_reference"].get<double>(), 0.0);
  EXPECT_FALSE(evaluate_run(dir / "plain", eval_options).contains("fd_fashion"));

  EXPECT_THROW(viz_run(dir / "plain", "samples", dir / "no.png", -1, 4), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "no.png"));
  viz_run(dir / "plain", "latent", dir / "plain-latent.png", -1, 300);  // any family has codes
  EXPECT_TRUE(std::filesystem::exists(dir / "plain-latent.png"));
}

// ---- WAE -----------------------------------------------------------------------------------

TEST_F(VaeTest, WaeMmdPenaltyPullsTheCodesTowardsThePrior) {
  ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required";
  DataOptions data_options;
  data_options.limit = 3000;
  const DataSplits data = load_data(data_options, /*with_test=*/true);
  auto mmd_of = [&](const Json& penalty, int64_t epochs = 3, double beta1 = 0.9) {
    torch::manual_seed(0);
    Json section = {{"family", "wae"}, {"code_size", 4}, {"hidden", {128}}};
    section.update(penalty);
    auto built = build_model(section, data.spec);
    TrainOptions options = test::quiet_cpu_options(epochs);
    options.beta1 = beta1;
    Trainer trainer(built.model, options);
    trainer.fit(data.train, data.validation);
    built.model->module().eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor z = built.model->encode(data.test.inputs.narrow(0, 0, 1000));
    return mmd_penalty(z, torch::randn_like(z), MmdKernel::inverse_multiquadratic, 2.0 * 4).item<double>();
  };
  const double with = mmd_of({{"lambda", 10.0}}), without = mmd_of({{"lambda", 0.0}});
  RecordProperty("mmd_lambda10_vs_0", fmt::format("{:.4f} {:.4f}", with, without));
  EXPECT_GT(without, 4 * with);
  // WAE-GAN's adversarial penalty pulls them too, measured by the same MMD. An adversarial game
  // needs more steps than MMD: 10 epochs, with the paper's Adam beta1 of 0.5.
  auto gan = [](double lambda) {
    return Json{{"penalty", "gan"}, {"discriminator_hidden", {64, 64}}, {"lambda", lambda}};
  };
  const double with_gan = mmd_of(gan(1.0), 10, 0.5), without_gan = mmd_of(gan(0.0), 10, 0.5);
  RecordProperty("mmd_gan_lambda1_vs_0", fmt::format("{:.4f} {:.4f}", with_gan, without_gan));
  EXPECT_GT(without_gan, 2 * with_gan);
}

// The discriminator has its own optimizer: the model's leaves it out, both step, both are in
// the checkpoint, and a resumed run ends where an uninterrupted one does.
TEST_F(VaeTest, WaeGanTrainsItsDiscriminatorAsAnAdversaryAndResumesExactly) {
  const DataSpec spec{{1, 6, 5}, 0, 1, 1};
  const Json section = {{"family", "wae"}, {"penalty", "gan"}, {"code_size", 2}, {"hidden", {12}},
                        {"discriminator_hidden", {8}}};
  const Dataset train{torch::rand({64, 1, 6, 5}), torch::Tensor()}, validation{torch::rand({16, 1, 6, 5}), torch::Tensor()};
  TrainOptions options = test::quiet_cpu_options(1);
  options.batch_size = 16;
  auto run = [&](const std::filesystem::path& dir, int64_t epochs, bool resume) {
    torch::manual_seed(4);
    auto model = build_model(section, spec).model;
    options.epochs = epochs;
    Trainer trainer(model, options, dir);
    if (resume) EXPECT_TRUE(trainer.resume());
    trainer.fit(train, validation);
    return std::make_pair(model, trainer.optimizer().param_groups().front().params().size());
  };
  test::TempDir straight, split;
  auto [reference, model_parameters] = run(straight.path(), 3, false);
  const auto discriminator = dynamic_cast<Adversarial&>(*reference).adversary_parameters();
  EXPECT_EQ(discriminator.size(), 4u);  // two affine layers
  EXPECT_EQ(model_parameters + discriminator.size(), reference->module().parameters().size());
  const Json line = Json::parse(test::read_lines(straight.path() / kMetricsFile).back());
  EXPECT_TRUE(line["train"].contains("gan")) << line;
  EXPECT_TRUE(line["train"].contains("discriminator")) << line;

  run(split.path(), 2, false);
  auto resumed = run(split.path(), 3, true).first;
  const auto a = reference->module().named_parameters(), b = resumed->module().named_parameters();
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
}

TEST_F(VaeTest, WaeSamplesFromItsPriorAndExportsSample) {
  auto model = build_model(Json{{"family", "wae"}, {"code_size", 3}, {"hidden", {12}}}, DataSpec{{1, 6, 5}, 0, 1, 1});
  auto* generative = dynamic_cast<Generative*>(model.model.get());
  ASSERT_NE(generative, nullptr);
  model.model->module().eval();
  EXPECT_EQ(generative->sample(4).sizes(), (std::vector<int64_t>{4, 1, 6, 5}));
  torch::jit::Module exported = to_torchscript(*model.model, torch::rand({6, 1, 6, 5}));
  EXPECT_EQ(exported.get_method("sample")({int64_t{5}}).toTensor().sizes(), (std::vector<int64_t>{5, 1, 6, 5}));
  EXPECT_EQ(model.resolved["penalty"], "mmd");
  const auto gan = build_model(Json{{"family", "wae"}, {"penalty", "gan"}}, DataSpec{{1, 6, 5}, 0, 1, 1}).resolved;
  EXPECT_EQ(gan["lambda"], 1.0);
  EXPECT_EQ(gan["discriminator_hidden"], (Json{512, 512, 512, 512}));
  EXPECT_FALSE(gan.contains("kernel"));
  EXPECT_THROW(build_model(Json{{"family", "wae"}, {"penalty", "gan"}, {"kernel", "rbf"}}, DataSpec{{1, 6, 5}, 0, 1, 1}),
               Error);
}

}  // namespace
}  // namespace torchae
