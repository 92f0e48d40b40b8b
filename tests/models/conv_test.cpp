// The convolutional backbone: shapes, any-size images, the dense code, export at any size,
// options, and that it learns. Every family with a conv config also runs the EveryFamily,
// export and CUDA suites (tests/families/).

#include "test_tools.h"

#include "torchae/data/corruption.h"
#include "torchae/data/image_io.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/models/denoising.h"
#include "torchae/nn/chroma.h"
#include "torchae/nn/conv.h"
#include "torchae/restore/restore.h"
#include "torchae/models/undercomplete.h"
#include "torchae/models/vae.h"
#include "torchae/viz/pictures.h"

#include <torch/torch.h>

namespace torchae {
namespace {

using test::expect_tensors_near;

class ConvTest : public test::TorchaeTest {};

std::shared_ptr<Autoencoder> build(const Json& section, const DataSpec& spec) { return build_model(section, spec).model; }

std::string build_error(const Json& section, const DataSpec& spec) {
  try {
    build_model(section, spec);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

const DataSpec kImages{{1, 8, 12}, 0, 1, 1};

TEST_F(ConvTest, FullyConvolutionalCodeIsTheLastFeatureMapAndRunsOnAnySize) {
  Undercomplete ae(UndercompleteOptions(BackboneOptions({1, 8, 12}, 0).kind(BackboneKind::conv).channels({4, 6}).strides({2})));
  ae->eval();
  const torch::Tensor x = torch::rand({3, 1, 8, 12});
  const Output out = ae->forward(x);
  EXPECT_EQ(out.reconstruction.sizes(), x.sizes());
  EXPECT_EQ(ae->code_size(), 6 * 2 * 3);
  EXPECT_EQ(out.code.sizes(), (std::vector<int64_t>{3, 6 * 2 * 3}));
  expect_tensors_near(ae->decode(ae->encode(x)), out.reconstruction, 1e-6);
  // Another size, a multiple of the total stride 4: same network, its own code size.
  const torch::Tensor big = torch::rand({2, 1, 20, 16});
  const Output big_out = ae->forward(big);
  EXPECT_EQ(big_out.reconstruction.sizes(), big.sizes());
  EXPECT_EQ(big_out.code.sizes(), (std::vector<int64_t>{2, 6 * 5 * 4}));
  // A code as a feature map decodes at its own size.
  EXPECT_EQ(ae->decode(big_out.code.view({2, 6, 5, 4})).sizes(), big.sizes());
  // A size that is not a multiple of the stride is refused with the reason.
  try {
    ae->forward(torch::rand({1, 1, 10, 12}));
    FAIL() << "a 10x12 image went through a network of stride 4";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not multiples of the total stride 4"), std::string::npos) << e.what();
  }
}

TEST_F(ConvTest, TheDecoderMirrorsTheEncoder) {
  Undercomplete ae(UndercompleteOptions(BackboneOptions({3, 8, 8}, 0)
                                           .kind(BackboneKind::conv)
                                           .channels({5, 7, 9})
                                           .kernels({3, 5, 3})
                                           .strides({1, 2, 2})));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : ae->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  EXPECT_EQ(shapes["encoder.conv0.weight"], (std::vector<int64_t>{5, 3, 3, 3}));
  EXPECT_EQ(shapes["encoder.conv1.weight"], (std::vector<int64_t>{7, 5, 5, 5}));
  EXPECT_EQ(shapes["encoder.conv2.weight"], (std::vector<int64_t>{9, 7, 3, 3}));
  // ConvTranspose2d weights are [in, out, k, k]: the encoder's run backwards.
  EXPECT_EQ(shapes["decoder.deconv0.weight"], (std::vector<int64_t>{9, 7, 3, 3}));
  EXPECT_EQ(shapes["decoder.deconv1.weight"], (std::vector<int64_t>{7, 5, 5, 5}));
  EXPECT_EQ(shapes["decoder.deconv2.weight"], (std::vector<int64_t>{5, 3, 3, 3}));
  EXPECT_EQ(ae->forward(torch::rand({2, 3, 8, 8})).reconstruction.sizes(), (std::vector<int64_t>{2, 3, 8, 8}));
}

TEST_F(ConvTest, ADenseCodeNeedsTheTrainingSize) {
  Undercomplete ae(UndercompleteOptions(BackboneOptions({1, 8, 12}, 5).kind(BackboneKind::conv).channels({4}).strides({2})));
  const torch::Tensor x = torch::rand({3, 1, 8, 12});
  EXPECT_EQ(ae->encode(x).sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(ae->forward(x).reconstruction.sizes(), x.sizes());
  try {
    ae->forward(torch::rand({1, 1, 16, 12}));
    FAIL() << "a dense code took another size";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("a dense code needs 8x12 images"), std::string::npos) << e.what();
  }
}

TEST_F(ConvTest, ExportedFullyConvolutionalModelRunsOnOtherSizes) {
  auto ae = build(Json::parse(R"({"family": "denoising", "backbone": "conv", "code_size": 0, "channels": [4, 6],
                                  "corruption": "gaussian", "level": 0.1})"),
                  kImages);
  torch::jit::Module module = to_torchscript(*ae, torch::rand({4, 1, 8, 12}));
  const torch::Tensor big = torch::rand({2, 1, 24, 16});
  ae->module().eval();
  expect_tensors_near(module.forward({big}).toTensor(), ae->forward(big).reconstruction, 1e-5);
  // encode flattens, decode takes the training size's flat code or any feature map.
  const torch::Tensor x = torch::rand({2, 1, 8, 12});
  const torch::Tensor code = module.run_method("encode", x).toTensor();
  EXPECT_EQ(code.sizes(), (std::vector<int64_t>{2, 6 * 2 * 3}));
  expect_tensors_near(module.run_method("decode", code).toTensor(), ae->forward(x).reconstruction, 1e-5);
  const torch::Tensor map = ae->encode(big).view({2, 6, 6, 4});
  expect_tensors_near(module.run_method("decode", map).toTensor(), ae->decode(map), 1e-5);
}

TEST_F(ConvTest, ConvOptionsAreCheckedAndNamed) {
  const auto error = [](const char* json, const DataSpec& spec = kImages) { return build_error(Json::parse(json), spec); };
  EXPECT_NE(error(R"({"backbone": "conv", "hidden": [10]})").find("model.hidden: is an MLP option"), std::string::npos);
  EXPECT_NE(error(R"({"channels": [10]})").find("model.channels: is a conv option"), std::string::npos);
  EXPECT_NE(error(R"({"backbone": "conv", "kernels": [4]})").find("model.kernels: must be odd"), std::string::npos);
  EXPECT_NE(error(R"({"backbone": "conv", "channels": [4, 4, 4]})").find("not multiples of the total stride 8"),
            std::string::npos);
  EXPECT_NE(error(R"({"backbone": "conv", "channels": [4, 4], "strides": [1, 1, 1]})").find("model.strides"),
            std::string::npos);
  EXPECT_NE(error(R"({"backbone": "conv", "tied": true})").find("model.tied: is an MLP option"), std::string::npos);
  EXPECT_NE(error(R"({"backbone": "conv"})", DataSpec{{12}, 0, 1, 1}).find("conv needs images"), std::string::npos);
  EXPECT_NE(error(R"({"family": "ksparse", "backbone": "conv", "code_size": 10, "k": 2})").find("model.backbone"),
            std::string::npos);
  EXPECT_NE(error(R"({"family": "wae", "backbone": "conv", "code_size": 0})").find("model.code_size"),
            std::string::npos);
  EXPECT_NE(error(R"({"family": "contractive", "backbone": "conv", "method": "analytic"})").find("model.method"),
            std::string::npos);
  EXPECT_NE(error(R"({"family": "stacked", "layers": [{"units": 4, "backbone": "conv"}]})").find("MLP layers"),
            std::string::npos);
  EXPECT_NE(error(R"({"family": "vae", "backbone": "conv", "hidden": [3]})").find("model.hidden"), std::string::npos);
  EXPECT_EQ(error(R"({"backbone": "conv", "code_size": 0, "channels": [3], "kernels": [5], "strides": [1]})"), "");
}

TEST_F(ConvTest, ConvVaeHasADenseLatentAndSamples) {
  auto model = build(Json::parse(R"({"family": "vae", "backbone": "conv", "code_size": 3, "channels": [4, 6]})"), kImages);
  auto& vae = dynamic_cast<VAEImpl&>(model->module());
  const torch::Tensor x = torch::rand({5, 1, 8, 12});
  const Output out = vae.forward(x);
  EXPECT_EQ(out.mu.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(out.reconstruction.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(vae.elbo(x)).all().item<bool>());
  EXPECT_EQ(vae.sample(7).sizes(), (std::vector<int64_t>{7, 1, 8, 12}));
  // The importance-sampled bound holds for the conv decoder as for the MLP one.
  torch::manual_seed(1);
  const double elbo = vae.elbo(x).mean().item<double>();
  const double iw = vae.importance_log_likelihood(x, 200).mean().item<double>();
  EXPECT_GE(iw, elbo - 0.5);
}

TEST_F(ConvTest, FiltersAreTheFirstKernels) {
  auto model = build(Json::parse(R"({"backbone": "conv", "code_size": 0, "channels": [6], "kernels": [5]})"),
                     DataSpec{{3, 8, 8}, 0, 1, 1});
  const torch::Tensor filters = first_layer_filters(*model, {3, 8, 8});
  EXPECT_EQ(filters.sizes(), (std::vector<int64_t>{6, 3, 5, 5}));
  expect_tensors_near(filters.flatten(1).norm(2, {1}), torch::ones({6}), 1e-5);
}

TEST_F(ConvTest, AConvDenoiserLearnsToRemoveNoise) {
  // Smooth random images: blurred noise, which a small conv net can model.
  torch::Tensor clean = torch::rand({64, 1, 16, 16});
  for (int i = 0; i < 3; ++i) clean = torch::avg_pool2d(clean, 3, 1, 1, false, false);
  clean = (clean - clean.amin({2, 3}, true)) / (clean.amax({2, 3}, true) - clean.amin({2, 3}, true));
  auto model = build(Json::parse(R"({"family": "denoising", "backbone": "conv", "code_size": 0, "channels": [16],
                                     "strides": [1], "corruption": "gaussian", "level": 0.2, "loss": "mse"})"),
                     DataSpec{{1, 16, 16}, 0, 1, 1});
  torch::optim::Adam adam(model->module().parameters(), torch::optim::AdamOptions(3e-3));
  const torch::Tensor noisy = clean + 0.2 * torch::randn_like(clean);
  auto eval_mse = [&] {
    torch::NoGradGuard no_grad;
    model->module().eval();
    const double mse = (model->forward(noisy).reconstruction - clean).pow(2).mean().item<double>();
    model->module().train();
    return mse;
  };
  const double noisy_mse = (noisy - clean).pow(2).mean().item<double>();
  for (int step = 0; step < 300; ++step) {
    adam.zero_grad();
    Losses l = model->loss(clean, model->forward(clean));
    l.total.backward();
    adam.step();
  }
  EXPECT_LT(eval_mse(), 0.5 * noisy_mse) << "noisy input MSE " << noisy_mse;
}

TEST_F(ConvTest, TransposedConvolutionAsTheMirrorsGradientIsLibTorchs) {
  // 16 output channels take the mirrored path, 3 LibTorch's own.
  for (const auto& [k, s, out] : {std::tuple<int64_t, int64_t, int64_t>{3, 1, 16}, {3, 2, 16}, {5, 2, 16}, {5, 1, 16}, {3, 2, 3}}) {
    for (const bool with_bias : {true, false}) {
      const torch::Tensor x = torch::randn({2, 4, 5, 7}, torch::requires_grad());
      const torch::Tensor w = torch::randn({4, out, k, k}, torch::requires_grad());
      const torch::Tensor b = with_bias ? torch::randn({out}, torch::requires_grad()) : torch::Tensor();
      const int64_t p = (k - 1) / 2;
      const torch::Tensor ours = conv_transpose2d(x, w, b, s, p, s - 1);
      const torch::Tensor theirs = torch::conv_transpose2d(x, w, b, s, p, s - 1);
      ASSERT_EQ(ours.sizes(), theirs.sizes());
      expect_tensors_near(ours, theirs, 1e-4);
      if (!with_bias) {
        EXPECT_EQ(ours.grad_fn()->name().find("MirroredConvTranspose") != std::string::npos, out >= 16)
            << ours.grad_fn()->name();
      }
      const torch::Tensor g = torch::randn_like(theirs);
      std::vector<torch::Tensor> inputs{x, w};
      if (with_bias) inputs.push_back(b);
      const auto ours_grad = torch::autograd::grad({ours}, inputs, {g});
      const auto theirs_grad = torch::autograd::grad({theirs}, inputs, {g});
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        expect_tensors_near(ours_grad[i], theirs_grad[i], 1e-3 * (1 + theirs_grad[i].abs().max().item<double>()));
      }
    }
  }
  // Double precision takes LibTorch's own path: the same numbers.
  const torch::Tensor x = torch::randn({1, 2, 3, 3}, torch::kDouble), w = torch::randn({2, 2, 3, 3}, torch::kDouble);
  EXPECT_TRUE(torch::equal(conv_transpose2d(x, w, {}, 2, 1, 1), torch::conv_transpose2d(x, w, {}, 2, 1, 1)));
}

const Json kInpainter = Json::parse(R"({"family": "denoising", "backbone": "conv", "code_size": 0,
                                        "channels": [6, 8, 8], "strides": [1, 2, 2], "corruption": "inpaint",
                                        "level": 0.2, "loss": "mse", "mask_input": true, "skips": true})");

TEST_F(ConvTest, SkipsAddTheEncodersFeatureMapsToTheirMirrors) {
  Json section = kInpainter;
  section["mask_input"] = false;
  auto model = build(section, DataSpec{{3, 16, 16}, 0, 1, 1});
  model->module().eval();
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  const torch::Tensor y = model->forward(x).reconstruction;
  ASSERT_EQ(y.sizes(), x.sizes());
  // decode() has the code only: without the encoder's feature maps it computes another output.
  EXPECT_GT((model->decode(model->encode(x).view({2, 8, 4, 5})) - y).abs().max().item<double>(), 1e-4);
  // The skips carry what the code cannot: with the innermost layers' weights zeroed, the
  // output still depends on the input through the first feature maps.
  for (auto& item : model->module().named_parameters()) {
    if (item.key().find("encoder.conv2") != std::string::npos || item.key().find("decoder.deconv0") != std::string::npos) {
      torch::NoGradGuard no_grad;
      item.value().zero_();
    }
  }
  const torch::Tensor other = torch::rand({2, 3, 16, 20});
  EXPECT_GT((model->forward(other).reconstruction - model->forward(x).reconstruction).abs().max().item<double>(), 1e-3);
  // Export computes the same at any multiple of the stride (to_torchscript checks its probe).
  torch::jit::Module module = to_torchscript(*model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.forward({x}).toTensor(), model->forward(x).reconstruction, 1e-5);
}

TEST_F(ConvTest, AMaskAwareModelIsToldWhereThePixelsAreMissing) {
  auto model = build(kInpainter, DataSpec{{3, 16, 16}, 0, 1, 1});
  auto* masked = dynamic_cast<MaskAware*>(model.get());
  ASSERT_NE(masked, nullptr);
  ASSERT_TRUE(masked->takes_mask());
  model->module().eval();
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  const torch::Tensor missing = random_mask(16, 20, MaskKind::blocks, 0.3).to(torch::kFloat).view({1, 1, 16, 20}).expand({2, 1, 16, 20});
  // forward is fill with nothing missing; the mask changes the output.
  expect_tensors_near(masked->fill(x, torch::zeros_like(missing)).reconstruction, model->forward(x).reconstruction, 1e-6);
  EXPECT_GT((masked->fill(x, missing).reconstruction - model->forward(x).reconstruction).abs().max().item<double>(), 1e-4);
  try {
    masked->fill(x, missing.narrow(3, 0, 8));
    FAIL() << "a mask of another size was taken";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("must be [B, 1, H, W]"), std::string::npos) << e.what();
  }

  // The archive has fill, and restore gives it the mask: the known pixels kept, the missing
  // ones the model's.
  test::TempDir dir;
  const torch::jit::Module module = to_torchscript(*model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.get_method("fill")({x, missing}).toTensor(), masked->fill(x, missing).reconstruction, 1e-5);
  save_torchscript(module, {{"input", {{"shape", {3, 16, 16}}}}, {"config", {{"model", kInpainter}}}}, dir / "m.pt");
  Restorer restorer = Restorer::load(dir / "m.pt");
  EXPECT_TRUE(restorer.takes_mask());
  const torch::Tensor image = torch::rand({3, 16, 20});
  const torch::Tensor hole = missing[0][0].to(torch::kBool);
  const torch::Tensor holed = image.masked_fill(hole.unsqueeze(0).expand_as(image), 0.0);
  const torch::Tensor expected =
      torch::where(hole.unsqueeze(0).expand_as(image),
                   masked->fill(holed.unsqueeze(0), missing.narrow(0, 0, 1)).reconstruction[0].clamp(0, 1), image);
  restorer.tiling().tile = 1 << 20;  // one window, as computed above
  expect_tensors_near(restorer.restore(RestoreTask::inpaint, image, hole), expected, 1e-5);
}

TEST_F(ConvTest, TheNoiseLevelIsEstimatedFromPrincipalComponentsOfPatches) {
  // Smooth images with white noise of known sigma: the estimate is within 5% of it, one an image.
  torch::manual_seed(0);
  const torch::Tensor grid = torch::linspace(0, 1, 64);
  const torch::Tensor smooth =
      (0.5 + 0.3 * torch::sin(6 * grid).view({1, 1, 64, 1}) * torch::cos(4 * grid).view({1, 1, 1, 64})).expand({3, 3, 64, 64});
  const torch::Tensor sigma = torch::tensor({0.02, 0.05, 0.1});
  const torch::Tensor noisy = smooth + sigma.view({3, 1, 1, 1}) * torch::randn({3, 3, 64, 64});
  const torch::Tensor estimate = estimate_noise_sigma(noisy);
  ASSERT_EQ(estimate.sizes(), (std::vector<int64_t>{3}));
  for (int64_t i = 0; i < 3; ++i) EXPECT_NEAR(estimate[i].item<double>(), sigma[i].item<double>(), 0.05 * sigma[i].item<double>());
  // A clean smooth image has next to none.
  EXPECT_LT(estimate_noise_sigma(smooth.narrow(0, 0, 1)).item<double>(), 1e-3);
  // Fine texture (a checkerboard of pixels, of 0.1 at most) is not noise: the median of the
  // finest diagonal wavelet coefficients (Donoho & Johnstone), which sees it as noise, gives
  // 0.096 here (a Python check).
  const torch::Tensor pixels = torch::arange(64);
  const torch::Tensor checkers = ((pixels.view({64, 1}) + pixels.view({1, 64})) % 2).to(torch::kFloat) * 0.1 *
                                 torch::cos(8 * grid).view({64, 1});
  const torch::Tensor textured = smooth.narrow(0, 0, 1) + checkers + 0.02 * torch::randn({1, 3, 64, 64});
  EXPECT_NEAR(estimate_noise_sigma(textured).item<double>(), 0.02, 0.002);
  // Clipping: noise of 0.1 on an image half white, clipped to [0, 1]; the clipped patches are
  // left out (128 pixels a side: enough patches remain for their covariance).
  const torch::Tensor big = torch::linspace(0, 1, 128);
  const torch::Tensor half = torch::cat({0.5 + 0.2 * torch::sin(6 * big).view({1, 1, 128, 1}).expand({1, 3, 128, 64}),
                                         torch::ones({1, 3, 128, 64})}, 3);
  const torch::Tensor clipped = (half + 0.1 * torch::randn({1, 3, 128, 128})).clamp(0, 1);
  EXPECT_NEAR(estimate_noise_sigma(clipped).item<double>(), 0.1, 0.005);
  // Odd sides, the smallest images, and a large one (its patches on a grid) are fine.
  EXPECT_NEAR(estimate_noise_sigma(noisy.narrow(2, 0, 63)).narrow(0, 2, 1).item<double>(), 0.1, 0.005);
  EXPECT_TRUE(torch::isfinite(estimate_noise_sigma(torch::rand({2, 3, 2, 2}))).all().item<bool>());
  EXPECT_NEAR(estimate_noise_sigma(0.5 + 0.05 * torch::randn({1, 1, 600, 700})).item<double>(), 0.05, 0.0025);
  EXPECT_THROW(estimate_noise_sigma(torch::rand({1, 1, 1, 8})), c10::Error);
}

const Json kNoiseMapDenoiser = Json::parse(R"({"family": "denoising", "backbone": "conv", "code_size": 0,
                                               "channels": [6, 8], "strides": [1, 2], "corruption": "gaussian",
                                               "level": 0.2, "blind": true, "noise_map": true, "residual": true,
                                               "skips": true})");

TEST_F(ConvTest, ANoiseMapDenoiserIsToldTheNoisesSigma) {
  const DataSpec images{{3, 16, 16}, 0, 1, 1};
  auto model = build(kNoiseMapDenoiser, images);
  auto* noisy = dynamic_cast<NoiseAware*>(model.get());
  ASSERT_NE(noisy, nullptr);
  ASSERT_TRUE(noisy->takes_noise_level());
  EXPECT_FALSE(dynamic_cast<MaskAware*>(model.get())->takes_mask());
  // Training: each example's sigma is drawn and told; the loss trains the map's weights too.
  model->module().train();
  const torch::Tensor clean = torch::rand({4, 3, 16, 16});
  const Output out = model->forward(clean);
  model->loss(clean, out).total.backward();
  const torch::Tensor first = model->module().named_parameters()["backbone.encoder.conv0.weight"];
  ASSERT_EQ(first.size(1), 4);  // the image's channels, then the map
  EXPECT_GT(first.grad().select(1, 3).abs().sum().item<double>(), 0.0);
  // Eval: forward is denoise with each image's estimated level; the level changes the output.
  model->module().eval();
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  const torch::Tensor estimated = noise_level_map(estimate_noise_sigma(x), x);
  expect_tensors_near(noisy->denoise(x, estimated).reconstruction, model->forward(x).reconstruction, 1e-6);
  const torch::Tensor level = torch::full({2, 1, 16, 20}, 0.1);
  EXPECT_GT((noisy->denoise(x, level).reconstruction - model->forward(x).reconstruction).abs().max().item<double>(), 1e-4);
  try {
    noisy->denoise(x, level.narrow(3, 0, 8));
    FAIL() << "a map of another size was taken";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("noise level map must be [B, 1, H, W]"), std::string::npos) << e.what();
  }
  // The archive has denoise, forward estimates the level as the model does, and restore gives
  // the model the level it is told or the whole image's estimate.
  test::TempDir dir;
  torch::jit::Module module = to_torchscript(*model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.get_method("denoise")({x, level}).toTensor(), noisy->denoise(x, level).reconstruction, 1e-5);
  expect_tensors_near(module.forward({x}).toTensor(), model->forward(x).reconstruction, 1e-5);
  save_torchscript(module, {{"input", {{"shape", {3, 16, 16}}}}, {"config", {{"model", kNoiseMapDenoiser}}}}, dir / "m.pt");
  Restorer restorer = Restorer::load(dir / "m.pt");
  EXPECT_TRUE(restorer.takes_noise_level());
  EXPECT_FALSE(restorer.takes_mask());
  restorer.tiling().tile = 1 << 20;  // one window, as computed here
  const torch::Tensor image = x[0];
  expect_tensors_near(restorer.restore(RestoreTask::denoise, image, {}, 0.1),
                      noisy->denoise(x.narrow(0, 0, 1), level.narrow(0, 0, 1)).reconstruction[0].clamp(0, 1), 1e-5);
  expect_tensors_near(restorer.restore(RestoreTask::denoise, image),
                      model->forward(x.narrow(0, 0, 1)).reconstruction[0].clamp(0, 1), 1e-5);
  // The rules: a gaussian corruption, the conv backbone, not with the mask.
  Json section = kNoiseMapDenoiser;
  section["corruption"] = "masking";
  section.erase("blind");
  EXPECT_NE(build_error(section, images).find("noise_map: gives the network the noise's sigma: needs corruption \"gaussian\""),
            std::string::npos)
      << build_error(section, images);
  const Json mlp = {{"family", "denoising"}, {"noise_map", true}, {"corruption", "gaussian"}};
  EXPECT_NE(build_error(mlp, images).find("noise_map: needs the conv backbone"), std::string::npos) << build_error(mlp, images);
  section = kNoiseMapDenoiser;
  section["mask_input"] = true;
  EXPECT_NE(build_error(section, images).find("noise_map"), std::string::npos) << build_error(section, images);
}

TEST_F(ConvTest, HolesAreFilledByAveragingFromTheOutsideIn) {
  // A constant image comes back whole; known pixels are kept; a 5x5 hole needs 3 rings.
  const torch::Tensor constant = torch::full({1, 3, 12, 12}, 0.25);
  torch::Tensor missing = torch::zeros({1, 1, 12, 12});
  missing.narrow(2, 4, 5).narrow(3, 4, 5).fill_(1);
  const torch::Tensor holed = constant.masked_fill(missing.to(torch::kBool).expand_as(constant), 0.0);
  expect_tensors_near(fill_by_averaging(holed, missing, 3), constant, 1e-6);
  const torch::Tensor two_rings = fill_by_averaging(holed, missing, 2);
  EXPECT_EQ(two_rings[0][0][6][6].item<float>(), 0.0f);  // the centre is 3 rings in
  EXPECT_NEAR(two_rings[0][0][5][5].item<float>(), 0.25, 1e-6);
  // A ramp: the first ring takes the mean of its known neighbours.
  const torch::Tensor ramp = torch::arange(12, torch::kFloat).view({1, 1, 1, 12}).expand({1, 1, 12, 12}).contiguous();
  torch::Tensor one = torch::zeros({1, 1, 12, 12});
  one[0][0][6][6] = 1;
  EXPECT_NEAR(fill_by_averaging(ramp * (1 - one), one, 1)[0][0][6][6].item<float>(), 6.0, 1e-5);
  const torch::Tensor known = missing.logical_not().expand_as(constant);
  const torch::Tensor noise = torch::rand({1, 3, 12, 12});
  EXPECT_TRUE(torch::equal(fill_by_averaging(noise, missing, 4).masked_select(known), noise.masked_select(known)));
  // On float CPU images the missing pixels are visited alone; elsewhere (double here) every pixel
  // is pooled each ring: the same fill, rings left unreached included, whatever the holes.
  torch::manual_seed(3);
  const torch::Tensor images = torch::rand({5, 3, 20, 24});
  const torch::Tensor holes = (torch::rand({5, 1, 20, 24}) < 0.4).to(torch::kFloat);
  holes[4].narrow(1, 2, 15).narrow(2, 3, 18).fill_(1);  // deeper than 3 rings
  for (const int64_t steps : {1, 3, 16}) {
    expect_tensors_near(fill_by_averaging(images, holes, steps),
                        fill_by_averaging(images.to(torch::kDouble), holes.to(torch::kDouble), steps).to(torch::kFloat),
                        1e-6);
  }
  // The model's fill starts from it, in C++ and in its export alike.
  Json section = kInpainter;
  section["prefill"] = 4;
  auto model = build(section, DataSpec{{3, 16, 16}, 0, 1, 1});
  model->module().eval();
  auto* masked = dynamic_cast<MaskAware*>(model.get());
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  const torch::Tensor hole = random_mask(16, 20, MaskKind::blocks, 0.3).to(torch::kFloat).view({1, 1, 16, 20}).expand({2, 1, 16, 20}).contiguous();
  torch::jit::Module module = to_torchscript(*model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.get_method("fill")({x, hole}).toTensor(), masked->fill(x, hole).reconstruction, 1e-5);
  section["mask_input"] = false;
  EXPECT_NE(build_error(section, DataSpec{{3, 16, 16}, 0, 1, 1}).find("prefill"), std::string::npos);
}

TEST_F(ConvTest, MaskInputAndSkipsAreCheckedAndNamed) {
  const DataSpec images{{3, 16, 16}, 0, 1, 1};
  Json section = kInpainter;
  section["corruption"] = "gaussian";
  EXPECT_NE(build_error(section, images).find("mask_input"), std::string::npos);
  EXPECT_NE(build_error(section, images).find("needs corruption \"inpaint\""), std::string::npos) << build_error(section, images);
  section = kInpainter;
  section["code_size"] = 10;
  EXPECT_NE(build_error(section, images).find("skips"), std::string::npos) << build_error(section, images);
  const Json mlp = {{"family", "denoising"}, {"mask_input", true}};
  EXPECT_NE(build_error(mlp, images).find("mask_input: needs the conv backbone"), std::string::npos) << build_error(mlp, images);
  const Json other = {{"family", "undercomplete"}, {"backbone", "conv"}, {"code_size", 0}, {"skips", true}};
  EXPECT_NE(build_error(other, images).find("skips"), std::string::npos) << build_error(other, images);
}

// The inpainter with its holes prefilled 4 rings deep and its output a correction (the loss
// left to the residual network's rule).
Json residual_inpainter() {
  Json section = kInpainter;
  section.erase("loss");
  section["prefill"] = 4;
  section["residual"] = true;
  return section;
}

// Holes of blocks covering 30% of a 16x20 image, the same in both of a batch of 2: [2, 1, 16, 20].
torch::Tensor block_holes() {
  return random_mask(16, 20, MaskKind::blocks, 0.3).to(torch::kFloat).view({1, 1, 16, 20}).expand({2, 1, 16, 20}).contiguous();
}

TEST_F(ConvTest, AResidualNetworkCorrectsTheImageItIsGiven) {
  const DataSpec images{{3, 16, 16}, 0, 1, 1};
  const Json section = residual_inpainter();
  const BuiltModel built = build_model(section, images);
  EXPECT_EQ(built.resolved["output_activation"], "identity");
  EXPECT_EQ(built.resolved["loss"], "mse");
  auto model = built.model;
  model->module().eval();
  auto* masked = dynamic_cast<MaskAware*>(model.get());
  ASSERT_NE(masked, nullptr);
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  const torch::Tensor hole = block_holes();
  // Exported, it computes the same: forward from the image, fill from the prefilled one.
  torch::jit::Module module = to_torchscript(*model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.forward({x}).toTensor(), model->forward(x).reconstruction, 1e-5);
  expect_tensors_near(module.get_method("fill")({x, hole}).toTensor(), masked->fill(x, hole).reconstruction, 1e-5);
  // decode() has neither the skips nor the image: it computes another output.
  EXPECT_GT((model->decode(model->encode(x).view({2, 8, 4, 5})) - model->forward(x).reconstruction).abs().max().item<double>(),
            1e-4);
  // What the network says is a correction: with its last layer silent, the output is its input,
  // the image (forward) or the image with its holes prefilled (fill).
  for (auto& item : model->module().named_parameters()) {
    if (item.key().find("decoder.deconv2.") != std::string::npos) {
      torch::NoGradGuard no_grad;
      item.value().zero_();
    }
  }
  expect_tensors_near(model->forward(x).reconstruction, x, 1e-6);
  expect_tensors_near(masked->fill(x, hole).reconstruction, fill_by_averaging(x, hole, 4), 1e-6);
  // Its options: the identity output it needs, a fully convolutional network, the conv backbone.
  for (const auto& [key, value, expected] :
       {std::tuple{"output_activation", Json("sigmoid"), "a residual network adds its output to the input image"},
        {"loss", Json("bce"), "a residual network's is the identity"},
        {"code_size", Json(10), "residual: adds the decoder's output to the input image"},
        {"backbone", Json("mlp"), "residual: needs the conv backbone"}}) {
    Json wrong = section;
    wrong[key] = value;
    if (std::string(key) == "code_size") wrong["skips"] = false;
    if (std::string(key) == "backbone") wrong = {{"family", "denoising"}, {"residual", true}};
    EXPECT_NE(build_error(wrong, images).find(expected), std::string::npos) << key << ": " << build_error(wrong, images);
  }
  const Json colouriser = {{"family", "denoising"}, {"backbone", "conv"}, {"code_size", 0}, {"channels", {8, 8}},
                           {"strides", {2, 2}}, {"corruption", "gray"}, {"chroma_bins", 0.25}, {"residual", true}};
  EXPECT_NE(build_error(colouriser, images).find("residual"), std::string::npos) << build_error(colouriser, images);
}

// zero_init starts a residual network's correction at nothing: the model starts as the identity
// (forward and fill), and learns from there.
TEST_F(ConvTest, AResidualNetworkStartedAtZeroIsTheIdentityUntilItLearns) {
  const DataSpec images{{3, 16, 16}, 0, 1, 1};
  Json section = residual_inpainter();
  section["zero_init"] = true;
  const BuiltModel built = build_model(section, images);
  EXPECT_EQ(built.resolved["zero_init"], true);
  auto model = built.model;
  auto* masked = dynamic_cast<MaskAware*>(model.get());
  ASSERT_NE(masked, nullptr);
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  const torch::Tensor hole = block_holes();
  model->module().eval();
  EXPECT_TRUE(torch::equal(model->forward(x).reconstruction, x));
  expect_tensors_near(masked->fill(x, hole).reconstruction, fill_by_averaging(x, hole, 4), 1e-6);
  // Only the last layer starts at zero; a step of training moves the output off the identity.
  int zero = 0;
  for (const auto& p : model->module().parameters()) zero += p.abs().sum().item<double>() == 0.0 ? 1 : 0;
  EXPECT_EQ(zero, 2);  // decoder.deconv2's weight and bias
  model->module().train();
  torch::optim::Adam adam(model->module().parameters(), 1e-2);
  const torch::Tensor batch = torch::rand({4, 3, 16, 16});
  model->loss(batch, model->forward(batch)).total.backward();
  adam.step();
  model->module().eval();
  EXPECT_GT((model->forward(x).reconstruction - x).abs().max().item<double>(), 1e-4);
  // Without residual there is no correction to start at zero.
  Json plain = section;
  plain.erase("residual");
  EXPECT_NE(build_error(plain, images).find("zero_init: starts a residual network's correction at zero: needs residual"),
            std::string::npos)
      << build_error(plain, images);
}

// Residual blocks start as the identity: a network with them computes, to the bit, what the same
// network without them computes, so a trained model grows deeper by train.init; once they have
// learned, the exported model computes what the C++ one does.
TEST_F(ConvTest, ResidualBlocksStartAsTheIdentityAndGrowATrainedModel) {
  const DataSpec images{{3, 16, 16}, 0, 1, 1};
  const Json plain = {{"family", "denoising"}, {"backbone", "conv"}, {"code_size", 0}, {"channels", {6, 8}},
                      {"strides", {1, 2}}, {"skips", true}, {"residual", true}, {"noise_map", true},
                      {"corruption", "gaussian"}, {"level", 0.1}, {"blind", true}};
  Json deeper = plain;
  deeper["blocks"] = {1, 2};
  torch::manual_seed(1);
  const BuiltModel trained = build_model(plain, images);
  EXPECT_EQ(trained.resolved["blocks"], Json::array({0}));
  torch::manual_seed(2);
  const BuiltModel grown = build_model(deeper, images);
  EXPECT_EQ(grown.resolved["blocks"], Json::array({1, 2}));
  // Three blocks of two 3x3 convolutions each, of their layer's channels.
  const auto params = grown.model->module().named_parameters();
  EXPECT_EQ(params.size(), trained.model->module().named_parameters().size() + 12);
  EXPECT_EQ(params["backbone.encoder.block0_0a.weight"].sizes(), torch::IntArrayRef({6, 6, 3, 3}));
  EXPECT_EQ(params["backbone.encoder.block1_1b.weight"].sizes(), torch::IntArrayRef({8, 8, 3, 3}));
  for (const auto& p : params) {
    EXPECT_EQ(is_residual_block_parameter(p.key()), p.key().find(".block") != std::string::npos) << p.key();
  }
  EXPECT_FALSE(is_residual_block_parameter("backbone.blocks"));

  test::TempDir dir;
  const torch::Tensor x = torch::rand({2, 3, 16, 20});
  trained.model->module().eval();
  save_torchscript(to_torchscript(*trained.model, torch::rand({2, 3, 16, 16})), {{"config", {{"model", trained.resolved}}}},
                   dir / "model.pt");
  const std::vector<std::string> warnings = init_from_trained(*grown.model, grown.resolved, dir / "model.pt");
  ASSERT_EQ(warnings.size(), 2U);
  EXPECT_NE(warnings[0].find("residual blocks this run adds, which start as the identity"), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("backbone.encoder.block1_1a.weight"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("model.blocks.0 0 there, 1 here; model.blocks.1 absent there, 2 here"), std::string::npos) << warnings[1];
  grown.model->module().eval();
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(grown.model->forward(x).reconstruction, trained.model->forward(x).reconstruction));
  }
  // A step of training moves the blocks' second convolutions off zero.
  grown.model->module().train();
  torch::optim::Adam adam(grown.model->module().parameters(), 1e-2);
  const torch::Tensor batch = torch::rand({4, 3, 16, 16});
  grown.model->loss(batch, grown.model->forward(batch)).total.backward();
  EXPECT_GT(params["backbone.encoder.block1_1b.weight"].grad().abs().max().item<double>(), 0.0);
  adam.step();
  // Every block doing something, the exported model computes what the C++ one does, at another size too.
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : params) {
      if (is_residual_block_parameter(p.key())) p.value().normal_(0.0, 0.2);
    }
  }
  grown.model->module().eval();
  EXPECT_GT((grown.model->forward(x).reconstruction - trained.model->forward(x).reconstruction).abs().max().item<double>(),
            1e-3);
  torch::jit::Module module = to_torchscript(*grown.model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.forward({x}).toTensor(), grown.model->forward(x).reconstruction, 1e-5);
  // An archive with blocks starts a run with the same blocks, not one with fewer or others.
  save_torchscript(module, {{"config", {{"model", grown.resolved}}}}, dir / "deeper.pt");
  for (const auto& [blocks, expected] :
       {std::tuple{Json::array({1, 2}), ""},
        {Json::array({1, 1}), "its residual blocks backbone_encoder_block1_1a_bias, backbone_encoder_block1_1a_weight, backbone_encoder_block1_1b_bias"},
        {Json::array({0}), "have no place in this run's model (model.blocks)"},
        {Json::array({2, 2}), "the archive holds residual blocks, and not this run's backbone.encoder.block0_1a.bias"}}) {
    Json other = deeper;
    other["blocks"] = blocks;
    const BuiltModel run = build_model(other, images);
    std::string error;
    try {
      init_from_trained(*run.model, run.resolved, dir / "deeper.pt");
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (std::string(expected).empty()) {
      EXPECT_EQ(error, "");
      run.model->module().eval();
      torch::NoGradGuard no_grad;
      EXPECT_TRUE(torch::equal(run.model->forward(x).reconstruction, grown.model->forward(x).reconstruction));
    } else {
      EXPECT_NE(error.find(expected), std::string::npos) << blocks << ": " << error;
    }
  }
  // Its options: one entry for every layer or one per layer, none negative, the conv backbone.
  for (const auto& [value, expected] : {std::pair{Json::array({1, 1, 1}), "blocks: needs one entry, or one per layer"},
                                        {Json::array({-1}), "blocks: every entry must be >= 0"}}) {
    Json wrong = plain;
    wrong["blocks"] = value;
    EXPECT_NE(build_error(wrong, images).find(expected), std::string::npos) << build_error(wrong, images);
  }
  const Json mlp = {{"family", "denoising"}, {"blocks", {1}}};
  EXPECT_NE(build_error(mlp, images).find("blocks: is a conv option"), std::string::npos) << build_error(mlp, images);
}

// Piecewise-constant images, half of their pixels black: a hole set to 0 looks like black paint
// unless the network is told where the holes are.
TEST_F(ConvTest, KnowingTheMaskFillsHolesBetter) {
  torch::Tensor images = torch::rand({256, 1, 16, 16});
  for (int i = 0; i < 3; ++i) images = torch::avg_pool2d(images, 5, 1, 2, false, false);
  images = (images > images.median()).to(torch::kFloat).expand({256, 3, 16, 16}).contiguous();
  const DataSpec spec{{3, 16, 16}, 0, 1, 1};
  const torch::Tensor missing = torch::stack({random_mask(16, 16, MaskKind::mixed, 0.2), random_mask(16, 16, MaskKind::mixed, 0.2)})
                                    .repeat({32, 1, 1}).unsqueeze(1);
  const torch::Tensor test = images.narrow(0, 192, 64);
  const torch::Tensor holes = missing.expand_as(test);
  auto error_in_holes = [&](bool mask_input) {
    torch::manual_seed(1);
    Json section = kInpainter;
    section["mask_input"] = mask_input;
    auto model = build(section, spec);
    torch::optim::Adam adam(model->module().parameters(), torch::optim::AdamOptions(3e-3));
    for (int step = 0; step < 150; ++step) {
      const torch::Tensor batch = images.narrow(0, (step % 6) * 32, 32);
      adam.zero_grad();
      model->loss(batch, model->forward(batch)).total.backward();
      adam.step();
    }
    torch::NoGradGuard no_grad;
    model->module().eval();
    const torch::Tensor holed = test.masked_fill(holes, 0.0);
    auto* masked = dynamic_cast<MaskAware*>(model.get());
    const torch::Tensor out = mask_input ? masked->fill(holed, missing.to(torch::kFloat)).reconstruction
                                         : model->forward(holed).reconstruction;
    return (out - test).pow(2).masked_select(holes).mean().item<double>();
  };
  const double told = error_in_holes(true), guessing = error_in_holes(false);
  EXPECT_LT(told, 0.7 * guessing) << "told " << told << ", guessing " << guessing;
}

}  // namespace
}  // namespace torchae

// ---- colour as classes ------------------------------------------------------------------

namespace torchae {
namespace {

class ChromaTest : public test::TorchaeTest {};

const Json kColouriser = {{"family", "denoising"}, {"backbone", "conv"}, {"code_size", 0}, {"channels", {8, 12}},
                          {"kernels", {5, 3}}, {"strides", {2, 2}}, {"skips", true}, {"corruption", "gray"},
                          {"chroma_bins", 0.1}};

TEST_F(ChromaTest, AnImageIsItsLumaAndItsChroma) {
  const torch::Tensor rgb = torch::rand({2, 3, 5, 7});
  expect_tensors_near(rgb_from_luma_chroma(luma(rgb).unsqueeze(1), chroma(rgb)), rgb, 1e-6);
  const torch::Tensor gray = torch::rand({1, 1, 4, 4}).expand({1, 3, 4, 4});
  EXPECT_LT(chroma(gray).abs().max().item<double>(), 1e-7);
  EXPECT_EQ(ChromaBins(0.05).size(), 288);
  // Every cell's centre is a colour: for some luma, R, G and B are all in [0, 1].
  const ChromaBins bins(0.05);
  const torch::Tensor c = bins.centres().to(torch::kFloat64).t().reshape({1, 2, 1, -1});
  const torch::Tensor y = torch::linspace(0, 1, 1001, torch::kFloat64).view({1001, 1, 1, 1});
  const torch::Tensor colours = rgb_from_luma_chroma(y, c.expand({1001, 2, 1, bins.size()}));
  const torch::Tensor possible = ((colours >= -1e-9) & (colours <= 1 + 1e-9)).all(1).any(0);
  EXPECT_TRUE(possible.all().item<bool>());
  // Hasler & Suesstrunk's measure, by hand: half pure red, half pure green gives
  // sigma(rg) = 255, mu(yb) = 127.5, so 255 + 0.3 * 127.5.
  torch::Tensor halves = torch::zeros({3, 4, 4});
  halves[0].narrow(1, 0, 2).fill_(1);
  halves[1].narrow(1, 2, 2).fill_(1);
  EXPECT_NEAR(colourfulness(halves), 293.25, 1e-9);
  EXPECT_NEAR(colourfulness(gray[0]), 0.0, 1e-9);
}

TEST_F(ChromaTest, SoftEncodingIsTheNearestCellsWeighedByAGaussian) {
  for (double step : {0.05, 0.1}) {
    const ChromaBins bins(step);
    // Random colours, and next to the gamut's corners (pure and secondary colours, black and
    // white, moved off the grid's corners, where cells tie).
    torch::Tensor rgb = torch::rand({2, 3, 6, 6});
    const torch::Tensor corners = torch::tensor({0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1},
                                                torch::kFloat).view({3, 8});
    rgb[1].view({3, -1}).narrow(1, 0, 8).copy_(corners * 0.996 + 0.001 * torch::tensor({1.0f, 2.0f, 3.0f}).view({3, 1}));
    const torch::Tensor c = chroma(rgb);
    const ChromaBins::Soft soft = bins.soft_encode(c);
    EXPECT_EQ(soft.cells.sizes(), (std::vector<int64_t>{2, 5, 6, 6}));
    expect_tensors_near(soft.weights.sum(1), torch::ones({2, 6, 6}), 1e-6);
    // Against every distance to every cell: the same five nearest, the same weights.
    const torch::Tensor points = c.permute({0, 2, 3, 1}).reshape({-1, 2});
    const torch::Tensor d2 = torch::cdist(points.to(torch::kFloat64), bins.centres().to(torch::kFloat64)).pow(2);
    const auto [near, cells] = d2.topk(5, 1, false);
    const double s = step / 2;
    const torch::Tensor w = torch::softmax(near / (-2 * s * s), 1).to(torch::kFloat);
    const torch::Tensor brute = torch::zeros({points.size(0), bins.size()}).scatter_add_(1, cells, w);
    const torch::Tensor dense = bins.dense(soft).permute({0, 2, 3, 1}).reshape({-1, bins.size()});
    expect_tensors_near(dense, brute, 1e-4);
    EXPECT_TRUE(torch::equal(soft.cells.select(1, 0).flatten(), d2.argmin(1))) << "step " << step;
  }
}

TEST_F(ChromaTest, RareColoursWeighMoreAndTheAnnealedMeanGoesFromMeanToMode) {
  const ChromaBins bins(0.1);
  const torch::Tensor gray_cell = bins.soft_encode(torch::zeros({1, 2, 1, 1}), 1).cells.flatten();
  torch::Tensor counts = torch::ones({bins.size()});
  counts.index_put_({gray_cell}, 1000.0);
  const torch::Tensor w = bins.class_weights(counts, 0.5);
  EXPECT_EQ(w.argmin().item<int64_t>(), gray_cell.item<int64_t>());
  EXPECT_GT(w.min().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose(bins.class_weights(counts, 1.0), torch::ones({bins.size()})));
  EXPECT_TRUE(torch::equal(bins.class_weights(torch::zeros({bins.size()}), 0.5), torch::ones({bins.size()})));
  // Scores favouring one cell a little: T = 1 is the plain expectation, a small T the mode.
  torch::Tensor scores = torch::zeros({1, bins.size(), 1, 1});
  scores[0][3] = 2.0;
  const torch::Tensor p = torch::softmax(scores, 1).flatten();
  expect_tensors_near(bins.annealed_mean(scores, 1.0).flatten(), p.matmul(bins.centres()), 1e-6);
  expect_tensors_near(bins.annealed_mean(scores, 0.01).flatten(), bins.centres()[3], 1e-5);
}

TEST_F(ChromaTest, AColouriserSeesTheLumaAndKeepsIt) {
  const DataSpec spec{{3, 16, 16}, 0, 1, 1};
  auto model = build(kColouriser, spec);
  EXPECT_NE(dynamic_cast<DenoisingImpl*>(model.get()), nullptr);
  const torch::Tensor x = torch::rand({2, 3, 16, 24}) * 0.5 + 0.25;
  // Training counts each cell's pixels on the scores' grid (half of 16x24: 8x12).
  model->module().train();
  const Output trained = model->forward(x);
  EXPECT_EQ(trained.scores.sizes(), (std::vector<int64_t>{2, ChromaBins(0.1).size(), 8, 12}));
  const Losses losses = model->loss(x, trained);
  const torch::Tensor counts = model->module().named_buffers()["chroma_counts"];
  EXPECT_EQ(counts.sum().item<double>(), 2 * 8 * 12);
  EXPECT_EQ(losses.terms.front().first, "ce");
  losses.total.backward();

  model->module().eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor out = model->forward(x).reconstruction;
  EXPECT_EQ(out.sizes(), x.sizes());
  // Colour or gray, the network sees the luma alone, and the output keeps it where no channel
  // was clipped.
  expect_tensors_near(model->forward(gray_in_three_channels(x)).reconstruction, out, 1e-6);
  const torch::Tensor unclipped = ((out > 1e-6) & (out < 1 - 1e-6)).all(1);
  EXPECT_GT(unclipped.to(torch::kFloat).mean().item<double>(), 0.5);
  EXPECT_LT((luma(out) - luma(x)).masked_select(unclipped).abs().max().item<double>(), 1e-5);
  // The export computes the same, at another size too, and the counts travel with the weights.
  const torch::jit::Module module = to_torchscript(*model, torch::rand({2, 3, 16, 16}));
  expect_tensors_near(module.get_method("forward")({x}).toTensor(), out, 1e-5);
  const torch::Tensor code = model->encode(x);
  expect_tensors_near(module.get_method("encode")({x}).toTensor(), code, 1e-5);
  const torch::Tensor map = code.narrow(0, 0, 1).view({1, 12, 4, 6});
  expect_tensors_near(module.get_method("decode")({map}).toTensor(), model->decode(map), 1e-5);
  auto copy = build(kColouriser, spec);
  test::copy_weights(*model, *copy);
  EXPECT_TRUE(torch::equal(copy->module().named_buffers()["chroma_counts"], counts));
}

TEST_F(ChromaTest, ColourAsClassesIsCheckedAndNamed) {
  const DataSpec spec{{3, 16, 16}, 0, 1, 1};
  Json section = kColouriser;
  section["corruption"] = "gaussian";
  EXPECT_NE(build_error(section, spec).find("chroma_bins: colourises by classification: needs corruption \"gray\""),
            std::string::npos) << build_error(section, spec);
  section = kColouriser;
  section["alpha"] = 2;
  EXPECT_NE(build_error(section, spec).find("alpha and beta do not apply"), std::string::npos) << build_error(section, spec);
  section = kColouriser;
  section["loss"] = "bce";
  EXPECT_NE(build_error(section, spec).find("model.loss"), std::string::npos) << build_error(section, spec);
  section = kColouriser;
  section["chroma_bins"] = 0.7;
  EXPECT_NE(build_error(section, spec).find("(0, 0.5]"), std::string::npos) << build_error(section, spec);
  section = kColouriser;
  section["temperature"] = 0;
  EXPECT_NE(build_error(section, spec).find("temperature"), std::string::npos) << build_error(section, spec);
  section = {{"family", "denoising"}, {"corruption", "gray"}, {"chroma_bins", 0.1}};
  EXPECT_NE(build_error(section, spec).find("needs the conv backbone"), std::string::npos) << build_error(section, spec);
}

// Patches of one luma whose colour is red in 60% of them, green in 25% and blue in 15%: the
// squared-error colouriser learns the mean, a washed-out colour, while the classifier's
// annealed mean leans to the commonest one, and is more colourful.
TEST_F(ChromaTest, ClassesGiveMoreColourThanSquaredErrorWhereColourIsAmbiguous) {
  const torch::Tensor palette = torch::tensor({0.8f, 0.35f, 0.35f, 0.35f, 0.6f, 0.35f, 0.4f, 0.45f, 0.9f}).view({3, 3});
  torch::manual_seed(2);
  const torch::Tensor pick = torch::multinomial(torch::tensor({0.6f, 0.25f, 0.15f}), 512, true);
  // The three colours have nearly the same luma; each image a texture of that luma.
  torch::Tensor images = palette.index({pick}).view({512, 3, 1, 1}).expand({512, 3, 16, 16}).clone();
  images = images + 0.03 * (torch::rand({512, 1, 16, 16}) - 0.5);
  const DataSpec spec{{3, 16, 16}, 0, 1, 1};
  auto train = [&](const Json& section) {
    torch::manual_seed(1);
    auto model = build(section, spec);
    torch::optim::Adam adam(model->module().parameters(), torch::optim::AdamOptions(3e-3));
    for (int step = 0; step < 120; ++step) {
      const torch::Tensor batch = images.narrow(0, (step % 8) * 64, 64);
      adam.zero_grad();
      model->loss(batch, model->forward(batch)).total.backward();
      adam.step();
    }
    model->module().eval();
    torch::NoGradGuard no_grad;
    return model->forward(images.narrow(0, 0, 64)).reconstruction;
  };
  // All pixels are colourful here: no rebalancing, the annealed mean alone.
  Json classifier = kColouriser;
  classifier["rebalance"] = 1.0;
  Json regression = kColouriser;
  regression.erase("chroma_bins");
  regression["loss"] = "mse";
  auto mean_colourfulness = [](const torch::Tensor& batch) {
    double total = 0;
    for (int64_t i = 0; i < batch.size(0); ++i) total += colourfulness(batch[i]);
    return total / static_cast<double>(batch.size(0));
  };
  // Colourfulness of one flat image is 0.3 mu: its distance from gray.
  const double classes = mean_colourfulness(train(classifier)), squared = mean_colourfulness(train(regression));
  EXPECT_GT(classes, 1.5 * squared) << "classes " << classes << ", squared error " << squared;
}

}  // namespace
}  // namespace torchae
