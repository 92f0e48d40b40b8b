// The convolutional backbone: shapes, any-size images, the dense code, export at any size,
// options, and that it learns. Every family with a conv config also runs the EveryFamily,
// export and CUDA suites (tests/families/).

#include "test_tools.h"

#include "torchae/export/export.h"
#include "torchae/models/registry.h"
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

}  // namespace
}  // namespace torchae
