// Image restoration: image files and the patch loader, the restoration corruptions, SSIM,
// tiling on sizes that do not divide, and each task through an exported archive and the CLI.

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/data/corruption.h"
#include "torchae/data/images.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/nn/chroma.h"
#include "torchae/restore/restore.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <fstream>
#include <tuple>

namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TempDir;

class RestoreTest : public test::TorchaeTest {};

// A smooth random colour image [3, h, w]: blurred noise stretched to [0, 1].
torch::Tensor smooth_image(int64_t h, int64_t w, int64_t channels = 3) {
  torch::Tensor x = torch::rand({1, channels, h, w});
  for (int i = 0; i < 2; ++i) x = torch::avg_pool2d(x, 5, 1, 2, false, false);
  x = (x - x.min()) / (x.max() - x.min());
  return x[0];
}

TEST_F(RestoreTest, ImagesRoundTripThroughFilesInRgbOrder) {
  TempDir dir;
  torch::Tensor red = torch::zeros({3, 5, 7});
  red[0].fill_(1.0);
  write_image(dir / "red.png", red);
  expect_tensors_near(read_image(dir / "red.png", 3), red, 0.0);
  // Gray: BT.601 luma of pure red, 0.299, to 8 bits.
  expect_tensors_near(read_image(dir / "red.png", 1), torch::full({1, 5, 7}, std::round(0.299 * 255) / 255), 1e-6);
  const torch::Tensor image = quantize_8bit(smooth_image(9, 11));
  write_image(dir / "a.png", image);
  expect_tensors_near(read_image(dir / "a.png", 3), image, 1e-6);
  // A gray file read as colour is replicated.
  write_image(dir / "g.png", image.narrow(0, 0, 1));
  expect_tensors_near(read_image(dir / "g.png", 3), image.narrow(0, 0, 1).expand({3, 9, 11}), 1e-6);

  std::ofstream(dir / "notes.png") << "not an image";
  // A PNG signature with nothing after it, or a real PNG cut short: its chunks are checked
  // before libpng sees it (which would print its own complaint).
  std::ofstream(dir / "cut.png") << "\x89PNG\r\n\x1a\n";
  const std::string whole = read_text(dir / "a.png");
  std::ofstream(dir / "short.png", std::ios::binary) << whole.substr(0, whole.size() - 20);
  for (const auto& [path, fragment] : {std::pair{dir / "missing.png", "no such image file"},
                                      std::pair{dir / "notes.png", "not a PNG, JPEG, BMP, TIFF, WebP or PNM image"},
                                      std::pair{dir / "cut.png", "truncated or damaged PNG"},
                                      std::pair{dir / "short.png", "truncated or damaged PNG"}}) {
    try {
      read_image(path, 3);
      FAIL() << path;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
}

TEST_F(RestoreTest, OpenCvSampleImagesAreThere) {
  // scripts/install-deps.sh installs Debian's opencv-doc for these.
  const auto files = list_images(kOpenCvSampleDir);
  EXPECT_GE(files.size(), 50u);
  const torch::Tensor baboon = read_image(std::filesystem::path(kOpenCvSampleDir) / "baboon.jpg", 3);
  EXPECT_EQ(baboon.sizes(), (std::vector<int64_t>{3, 512, 512}));
}

TEST_F(RestoreTest, PatchesAreCropsDrawnBySeedAndTilesCoverTheImage) {
  const torch::Tensor a = smooth_image(20, 30), b = smooth_image(25, 17);
  const torch::Tensor p1 = random_patches({a, b}, 8, 50, 7), p2 = random_patches({a, b}, 8, 50, 7);
  EXPECT_EQ(p1.sizes(), (std::vector<int64_t>{50, 3, 8, 8}));
  EXPECT_TRUE(torch::equal(p1, p2));
  EXPECT_FALSE(torch::equal(p1, random_patches({a, b}, 8, 50, 8)));
  // Every patch is a crop of one of the images.
  for (int64_t i = 0; i < 50; ++i) {
    bool found = false;
    for (const torch::Tensor& image : {a, b}) {
      const torch::Tensor windows = image.unfold(1, 8, 1).unfold(2, 8, 1);  // [3, h', w', 8, 8]
      const torch::Tensor match = (windows - p1[i].unsqueeze(1).unsqueeze(1)).abs().amax({0, 3, 4}).eq(0);
      found = found || match.any().item<bool>();
    }
    EXPECT_TRUE(found) << "patch " << i;
  }
  const torch::Tensor tiles = tile_patches(a, 8);  // 20x30: 2 x 3 tiles, remainders dropped
  ASSERT_EQ(tiles.sizes(), (std::vector<int64_t>{6, 3, 8, 8}));
  EXPECT_TRUE(torch::equal(tiles[4], a.narrow(1, 8, 8).narrow(2, 8, 8)));
}

TEST_F(RestoreTest, AnImageFolderLoadsAsPatchesWithHeldOutTestImages) {
  TempDir dir;
  for (int i = 0; i < 12; ++i) write_image(dir / fmt::format("img{:02d}.png", i), smooth_image(24 + i, 20));
  std::ofstream(dir / "readme.txt") << "not listed";
  const auto files = list_images(dir.path());
  ASSERT_EQ(files.size(), 12u);
  EXPECT_EQ(files.front().filename(), "img00.png");
  const auto held = held_out_images(dir.path(), {});
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].filename(), "img09.png");

  DataOptions o;
  o.dataset = "images";
  o.path = dir.path().string();
  o.patch = 16;
  o.patches = 100;
  o.test_images = {"img03.png", "img07.png"};
  const DataSplits splits = load_data(o, /*with_test=*/true);
  EXPECT_EQ(splits.train.inputs.sizes(), (std::vector<int64_t>{90, 3, 16, 16}));
  EXPECT_EQ(splits.validation.size(), 10);
  // img03 is 27x20, img07 31x20: one 16x16 tile each.
  EXPECT_EQ(splits.test.inputs.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
  EXPECT_TRUE(torch::equal(splits.test.inputs[1], read_image(dir / "img07.png", 3).narrow(1, 0, 16).narrow(2, 0, 16)));
  EXPECT_EQ(splits.spec.shape, (std::vector<int64_t>{3, 16, 16}));
  o.channels = 1;
  EXPECT_EQ(load_data(o, false).train.inputs.size(1), 1);

  o.test_images = {"nope.png"};
  try {
    load_data(o, true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.test_images: no image \"nope.png\""), std::string::npos) << e.what();
  }
}

// data.skip_gray: a colouriser's training leaves the gray pictures out, in memory and streamed.
TEST_F(RestoreTest, GrayPicturesAreLeftOutOfColourTrainingWhenAsked) {
  TempDir dir;
  for (int i = 0; i < 10; ++i) {
    const torch::Tensor image = smooth_image(24, 24);
    write_image(dir / fmt::format("img{:02d}.png", i), i % 2 == 0 ? gray_in_three_channels(image) : image);
  }
  DataOptions o;
  o.dataset = "images";
  o.path = dir.path().string();
  o.patch = 16;
  o.patches = 200;
  o.test_images = {"img09.png"};
  // The least difference between a crop's channels: 0 for a gray picture's crops.
  auto gray_crops = [](const torch::Tensor& crops) {
    const torch::Tensor spread = (crops - crops.mean(1, true)).abs().amax({1, 2, 3});
    return (spread < 1e-6).sum().item<int64_t>();
  };
  EXPECT_GT(gray_crops(load_data(o, false).train.inputs), 50);
  o.skip_gray = true;
  const DataSplits memory = load_data(o, false);
  EXPECT_EQ(gray_crops(memory.train.inputs), 0);
  EXPECT_EQ(gray_crops(memory.validation.inputs), 0);
  o.source = "stream";
  const DataSplits streamed = load_data(o, false);
  ASSERT_TRUE(streamed.stream);
  EXPECT_EQ(gray_crops(streamed.stream->load(0, 0, torch::arange(64)).data.inputs), 0);
  for (int i = 1; i < 10; i += 2) write_image(dir / fmt::format("img{:02d}.png", i), torch::full({3, 24, 24}, 0.5));
  o.source = "memory";
  try {
    load_data(o, false);
    FAIL() << "a folder of gray pictures trained a colouriser";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in colour (data.skip_gray)"), std::string::npos) << e.what();
  }
}

// A folder that can hold out no test image, or only images smaller than a patch, is refused
// when training starts, not when the run is evaluated.
TEST_F(RestoreTest, AnImageFolderWithoutATestImageIsRefusedBeforeTraining) {
  TempDir dir;
  for (int i = 0; i < 3; ++i) write_image(dir / fmt::format("img{}.png", i), smooth_image(24, 20));
  write_image(dir / "tiny.png", smooth_image(8, 8));
  DataOptions o;
  o.dataset = "images";
  o.path = dir.path().string();
  o.patch = 16;
  auto error = [&] {
    try {
      load_data(o, /*with_test=*/false);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error(), "config: data.path: " + dir.path().string() +
                         " has 4 images, too few to hold out every tenth for the test split; name the test images "
                         "in data.test_images");
  o.test_images = {"tiny.png"};
  EXPECT_EQ(error(), dir.path().string() + ": the held-out images are all smaller than a 16x16 patch");
  o.test_images = {"img1.png"};
  EXPECT_EQ(error(), "(no error)");
}

TEST_F(RestoreTest, RestorationCorruptions) {
  const torch::Tensor x = torch::rand({6, 3, 24, 32});
  CorruptionOptions inpaint;
  inpaint.kind = CorruptionKind::inpaint;
  inpaint.level = 0.2;
  const Corrupted c = corrupt(x, inpaint);
  const torch::Tensor covered = c.mask.select(1, 0).flatten(1).to(torch::kFloat).mean(1);
  EXPECT_TRUE((covered >= 0.2).all().item<bool>()) << covered;
  EXPECT_TRUE((covered < 0.6).all().item<bool>()) << covered;
  EXPECT_TRUE(torch::equal(c.mask.select(1, 0), c.mask.select(1, 2)));  // one mask for all channels
  EXPECT_TRUE(torch::equal(c.input, x.masked_fill(c.mask, 0.0)));
  for (const auto& kind : {"scratches", "blocks", "text"}) {
    const torch::Tensor m = random_mask(40, 60, parse_mask_kind(kind), 0.1);
    EXPECT_GE(m.to(torch::kFloat).mean().item<double>(), 0.1) << kind;
  }
  // A large image gets more holes, not larger ones: blocks are at most a quarter of 64 pixels
  // wide, so no 33x33 square is all hole at 5% coverage (sized by the image, they would be
  // 30 to 75 pixels wide).
  const torch::Tensor blocks = random_mask(400, 300, MaskKind::blocks, 0.05).to(torch::kFloat);
  EXPECT_GE(blocks.mean().item<double>(), 0.05);
  EXPECT_LT(torch::avg_pool2d(blocks.view({1, 1, 400, 300}), 33, 1).max().item<double>(), 1.0);

  CorruptionOptions gray;
  gray.kind = CorruptionKind::gray;
  const torch::Tensor g = corrupt(x, gray).input;
  expect_tensors_near(g.select(1, 1), 0.299 * x.select(1, 0) + 0.587 * x.select(1, 1) + 0.114 * x.select(1, 2), 1e-6);
  EXPECT_TRUE(torch::equal(g.select(1, 0), g.select(1, 2)));

  CorruptionOptions blind;
  blind.kind = CorruptionKind::gaussian;
  blind.level = 0.3;
  blind.blind = true;
  blind.clip = true;
  const torch::Tensor zeros = torch::full({200, 1, 8, 8}, 0.5);
  const Corrupted noisy = corrupt(zeros, blind);
  const torch::Tensor noise = noisy.input - 0.5;
  const torch::Tensor sigma = noise.flatten(1).std(1);
  EXPECT_LT(sigma.min().item<double>(), 0.05);
  EXPECT_GT(sigma.max().item<double>(), 0.25);
  // Each example's drawn sigma comes with it (what a noise map is told); the noise has it,
  // less what clipping took off the largest (unclipped, 64 draws would be within about 30%).
  ASSERT_EQ(noisy.level.sizes(), (std::vector<int64_t>{200}));
  EXPECT_TRUE((noisy.level >= 0).all().item<bool>() && (noisy.level <= 0.3).all().item<bool>());
  EXPECT_TRUE((sigma <= noisy.level * 1.4 + 1e-6).all().item<bool>());
  EXPECT_GT(torch::corrcoef(torch::stack({sigma, noisy.level})).select(0, 1)[0].item<double>(), 0.95);
  EXPECT_FALSE(corrupt(x, gray).level.defined());
  EXPECT_GE(noise.min().item<double>(), -0.5);  // clipped to [0, 1]
  EXPECT_LE(noise.max().item<double>(), 0.5);
}

TEST_F(RestoreTest, SsimMatchesItsClosedFormAndFallsWithNoise) {
  // Flat images a and b: the contrast-structure term is C2 / C2, the luminance term
  // (2ab + C1) / (a^2 + b^2 + C1).
  const double a = 0.3, b = 0.6, c1 = 0.01 * 0.01;
  const torch::Tensor s = ssim(torch::full({1, 1, 16, 16}, a), torch::full({1, 1, 16, 16}, b));
  EXPECT_NEAR(s.item<double>(), (2 * a * b + c1) / (a * a + b * b + c1), 1e-9);
  const torch::Tensor x = smooth_image(32, 32).unsqueeze(0);
  EXPECT_NEAR(ssim(x, x).item<double>(), 1.0, 1e-9);
  double last = 1.0;
  for (double sigma : {0.02, 0.05, 0.1, 0.2}) {
    const double value = ssim(x + sigma * torch::randn_like(x), x).item<double>();
    EXPECT_LT(value, last) << sigma;
    last = value;
  }
  EXPECT_NEAR(psnr(x + 0.1, x).item<double>(), 20.0, 1e-4);  // x + 0.1 is rounded to float
}

// A fully convolutional network of stride 4 with random weights: its receptive radius is 9
// pixels, so a margin of 12 makes tiling exact.
std::shared_ptr<Autoencoder> conv_net(int64_t channels, bool fully_convolutional = true) {
  const Json section = Json::parse(fmt::format(
      R"({{"family": "denoising", "backbone": "conv", "code_size": {}, "channels": [6, 8], "corruption": "gaussian",
           "level": 0.1, "loss": "mse"}})",
      fully_convolutional ? 0 : 5));
  auto model = build_model(section, DataSpec{{channels, 16, 16}, 0, 1, 1}).model;
  model->module().eval();
  return model;
}

TEST_F(RestoreTest, TilingAnySizeGivesTheWholeImageResult) {
  auto model = conv_net(3);
  auto net = [&](const torch::Tensor& x) { return model->forward(x).reconstruction; };
  for (const auto& [h, w] : {std::pair<int64_t, int64_t>{37, 23}, {64, 50}, {5, 3}, {16, 16}}) {
    const torch::Tensor image = smooth_image(h, w);
    TileOptions tiling;
    tiling.multiple = 4;
    tiling.tile = 1 << 20;  // one window: the whole (padded) image
    const torch::Tensor whole = run_tiled(net, image, tiling);
    ASSERT_EQ(whole.sizes(), image.sizes());
    tiling.tile = 8;
    tiling.margin = 12;
    expect_tensors_near(run_tiled(net, image, tiling), whole, 1e-5);
  }
  // Pure functions of the pixel are exact whatever the tiling, fixed windows included.
  const torch::Tensor image = smooth_image(45, 30);
  TileOptions fixed;
  fixed.window = {16, 12};
  fixed.margin = 3;
  expect_tensors_near(run_tiled([](const torch::Tensor& x) {
                                  EXPECT_EQ(x.size(2), 16);
                                  EXPECT_EQ(x.size(3), 12);
                                  return 2 * x;
                                },
                                image, fixed),
                      2 * image, 0.0);
  // An image smaller than the window is padded to it and cropped back.
  const torch::Tensor small = smooth_image(7, 5);
  expect_tensors_near(run_tiled([](const torch::Tensor& x) { return x + 1; }, small, fixed), small + 1, 0.0);
}

TEST_F(RestoreTest, SelfEnsembleAveragesTheEightMirroringsAndQuarterTurns) {
  auto model = conv_net(3);
  auto net = [&](const torch::Tensor& x) { return model->forward(x).reconstruction; };
  const torch::Tensor image = smooth_image(24, 20);
  // By hand on the whole image: mirrored left to right or not, turned 0 to 3 quarter turns,
  // through the network, turned and mirrored back, averaged.
  torch::Tensor expected = torch::zeros({1, 3, 24, 20});
  for (int64_t k = 0; k < 4; ++k) {
    for (const bool mirror : {false, true}) {
      const torch::Tensor x = torch::rot90(mirror ? image.unsqueeze(0).flip({3}) : image.unsqueeze(0), k, {2, 3});
      const torch::Tensor y = torch::rot90(net(x.contiguous()), -k, {2, 3});
      expected += mirror ? y.flip({3}) : y;
    }
  }
  expected = expected[0] / 8;
  TileOptions tiling;
  tiling.multiple = 4;
  tiling.tile = 1 << 20;
  tiling.self_ensemble = true;
  const torch::Tensor whole = run_tiled(net, image, tiling);
  expect_tensors_near(whole, expected, 1e-5);
  EXPECT_GT((whole - run_tiled(net, image, TileOptions{1 << 20, 32, 4})).abs().max().item<double>(), 1e-4)
      << "the network is not equivariant: the ensemble must differ from one pass";
  // Tiling stays exact with it: each window is ensembled alone.
  tiling.tile = 8;
  tiling.margin = 12;
  expect_tensors_near(run_tiled(net, image, tiling), whole, 1e-5);
  // A network that adds each pixel's column index: over the eight frames of a square window of
  // side n, the index averages to (n - 1) / 2 everywhere, and the image comes back where it was.
  const torch::Tensor square = smooth_image(16, 16);
  tiling = TileOptions{};
  tiling.self_ensemble = true;
  int64_t calls = 0;
  const torch::Tensor ramped = run_tiled(
      [&](const torch::Tensor& x) {
        ++calls;
        return x + torch::arange(x.size(3), x.options()).view({1, 1, 1, -1});
      },
      square, tiling);
  EXPECT_EQ(calls, 8);
  expect_tensors_near(ramped, square + 7.5, 1e-5);
  // A network that hands back its input leaves the image as it was (no pass sees another's sum).
  expect_tensors_near(run_tiled([](const torch::Tensor& x) { return x; }, square, tiling), square, 1e-6);
  // A fixed window that is not square is mirrored only: four passes, each of the window's shape.
  TileOptions fixed;
  fixed.window = {16, 12};
  fixed.margin = 0;
  fixed.self_ensemble = true;
  calls = 0;
  const torch::Tensor one_window = smooth_image(16, 12);
  const torch::Tensor mirrored = run_tiled(
      [&](const torch::Tensor& x) {
        ++calls;
        EXPECT_EQ(x.size(2), 16);
        EXPECT_EQ(x.size(3), 12);
        return x + torch::arange(x.size(3), x.options()).view({1, 1, 1, -1});
      },
      one_window, fixed);
  EXPECT_EQ(calls, 4);
  expect_tensors_near(mirrored, one_window + 5.5, 1e-5);
}

// Exports `model` as a restoration archive in `dir`, with the card the export of a run
// would give it (input shape and the model section).
std::filesystem::path export_archive(Autoencoder& model, const Json& model_section, int64_t channels,
                                     const std::filesystem::path& path) {
  const torch::jit::Module module = to_torchscript(model, torch::rand({4, channels, 16, 16}));
  save_torchscript(module, {{"input", {{"shape", {channels, 16, 16}}}}, {"config", {{"model", model_section}}}}, path);
  return path;
}

// The model section of `conv_net(3)`'s card: a conv denoising autoencoder without corruption.
const Json kConvSection = {{"family", "denoising"}, {"backbone", "conv"}, {"code_size", 0}, {"channels", {6, 8}},
                           {"strides", {2}}};

// A fresh `conv_net(3)` exported to `path`: an archive for the command line's tests.
std::string conv_archive(const std::filesystem::path& path) {
  auto model = conv_net(3);
  return export_archive(*model, kConvSection, 3, path).string();
}

TEST_F(RestoreTest, EveryTaskRunsFromTheArchive) {
  TempDir dir;
  auto model = conv_net(3);
  const Json& section = kConvSection;
  const auto archive = export_archive(*model, section, 3, dir / "m.pt");
  const Restorer restorer = Restorer::load(archive);
  EXPECT_EQ(restorer.channels(), 3);
  EXPECT_EQ(restorer.tiling().multiple, 4);
  EXPECT_TRUE(restorer.tiling().window.empty());
  const torch::Tensor image = smooth_image(30, 21);

  // denoise: the model's output on the padded image, cropped.
  const torch::Tensor padded = torch::nn::functional::pad(
      image.unsqueeze(0), torch::nn::functional::PadFuncOptions({0, 3, 0, 2}).mode(torch::kReflect));
  const torch::Tensor expected = model->forward(padded).reconstruction[0].narrow(1, 0, 30).narrow(2, 0, 21);
  expect_tensors_near(restorer.restore(RestoreTask::denoise, image), expected.clamp(0, 1), 1e-5);

  // inpaint: known pixels are kept exactly.
  const torch::Tensor mask = random_mask(30, 21, MaskKind::scratches, 0.2);
  const torch::Tensor filled = restorer.restore(RestoreTask::inpaint, image, mask);
  const torch::Tensor known = mask.logical_not().unsqueeze(0).expand_as(image);
  EXPECT_TRUE(torch::equal(filled.masked_select(known), image.masked_select(known)));

  // colorize: the model sees the luminance only, so colour and gray inputs give the same,
  // and the result keeps the input's luminance wherever no channel was clipped.
  const torch::Tensor coloured = restorer.restore(RestoreTask::colorize, image);
  expect_tensors_near(coloured, restorer.restore(RestoreTask::colorize, gray_in_three_channels(image)), 1e-6);
  const torch::Tensor unclipped = ((coloured > 0) & (coloured < 1)).all(0);
  ASSERT_GT(unclipped.sum().item<int64_t>(), 100);
  expect_tensors_near(gray_in_three_channels(coloured)[0].masked_select(unclipped),
                      gray_in_three_channels(image)[0].masked_select(unclipped), 1e-5);

  // A model with a dense code takes its training size: windows of 16x16.
  auto dense = conv_net(1, false);
  Json dense_section = section;
  dense_section["code_size"] = 5;
  const Restorer fixed = Restorer::load(export_archive(*dense, dense_section, 1, dir / "d.pt"));
  EXPECT_EQ(fixed.tiling().window, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(fixed.restore(RestoreTask::denoise, smooth_image(40, 23, 1)).sizes(), (std::vector<int64_t>{1, 40, 23}));
  try {
    fixed.restore(RestoreTask::colorize, smooth_image(16, 16, 1));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("colorize needs a colour model"), std::string::npos);
  }
}

TEST_F(RestoreTest, TheCommandLineRestoresAndWritesItsDemoInputs) {
  TempDir dir;
  const std::string archive = conv_archive(dir / "m.pt");
  write_image(dir / "in.png", smooth_image(33, 26));
  const auto run = [&](const std::string& args) {
    return test::run_cli(fmt::format("restore --model {} --in {} {}", archive, (dir / "in.png").string(), args));
  };
  test::CliResult r = run(fmt::format("--task denoise --noise 25 --out {}", (dir / "d.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_image(dir / "d.png", 3).sizes(), (std::vector<int64_t>{3, 33, 26}));
  EXPECT_EQ(read_image(dir / "d_noisy.png", 3).sizes(), (std::vector<int64_t>{3, 33, 26}));
  EXPECT_GT((read_image(dir / "d_noisy.png", 3) - read_image(dir / "in.png", 3)).abs().mean().item<double>(), 0.03);

  r = run(fmt::format("--task inpaint --mask text:0.1 --out {}", (dir / "i.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const torch::Tensor mask = read_image(dir / "i_mask.png", 1)[0].gt(0.5);
  EXPECT_GE(mask.to(torch::kFloat).mean().item<double>(), 0.1);
  const torch::Tensor known = mask.logical_not().unsqueeze(0).expand({3, 33, 26});
  EXPECT_TRUE(torch::equal(read_image(dir / "i.png", 3).masked_select(known),
                           read_image(dir / "in.png", 3).masked_select(known)));
  // The same mask as a file gives the same result.
  r = run(fmt::format("--task inpaint --mask {} --out {}", (dir / "i_mask.png").string(), (dir / "j.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(torch::equal(read_image(dir / "i.png", 3), read_image(dir / "j.png", 3)));

  r = run(fmt::format("--task colorize --out {}", (dir / "c.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "c_gray.png"));

  const std::string out = "--out " + (dir / "x.png").string();
  test::expect_one_line_error(run("--task denoise --noise loud " + out), "--noise \"loud\"");
  // Not a number, or beyond the 0-255 range: black or overflowing images otherwise.
  test::expect_one_line_error(run("--task denoise --noise nan " + out), "--noise \"nan\"");
  test::expect_one_line_error(run("--task denoise --noise 1e308 " + out), "--noise \"1e308\"");
  test::expect_one_line_error(run("--task denoise --noise salt_pepper:nan " + out), "--noise \"salt_pepper:nan\"");
  test::expect_one_line_error(run("--task inpaint --mask stars " + out), "--mask \"stars\"");
  test::expect_one_line_error(run("--task inpaint " + out), "inpaint needs --mask");
  write_image(dir / "small.png", torch::zeros({1, 10, 10}));
  test::expect_one_line_error(run("--task inpaint --mask " + (dir / "small.png").string() + " " + out),
                              "10x10 pixels, the image has 26x33");
  test::expect_one_line_error(
      test::run_cli(fmt::format("restore --model {} --task denoise --in {} {}", archive, (dir / "none.png").string(), out)),
      "no such image file");
  test::expect_one_line_error(
      test::run_cli(fmt::format("restore --model {} --task denoise --in {} {}", (dir / "in.png").string(),
                                (dir / "in.png").string(), out)),
      "in.png");
  EXPECT_FALSE(std::filesystem::exists(dir / "x.png"));
}

// A folder given to --in is restored into the folder --out, each image under its own name with
// its demo inputs beside it, the model loaded once; an image it cannot read is reported in the
// one-line error and the others are written all the same.
TEST_F(RestoreTest, TheCommandLineRestoresAFolderIntoAnother) {
  TempDir dir;
  const std::string archive = conv_archive(dir / "m.pt");
  std::filesystem::create_directories(dir / "photos");
  write_image(dir / "photos" / "a.png", smooth_image(33, 26));
  write_image(dir / "photos" / "b.jpg", smooth_image(20, 28));
  // A PGM, which restore does not write: restored as c.png.
  write_text_atomically(dir / "photos" / "c.pgm", "P5\n22 18\n255\n" + std::string(22 * 18, '\x80'));
  const auto restore = [&](const std::string& args) {
    return test::run_cli(fmt::format("restore --model {} --in {} {}", archive, (dir / "photos").string(), args));
  };
  const std::string out = (dir / "out").string();
  test::CliResult r = restore("--task denoise --noise 25 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"a.png", "a_noisy.png", "b.jpg", "b_noisy.png", "c.png", "c_noisy.png"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(dir / "out" / name)) << name;
    EXPECT_NE(r.out.find((dir / "out" / name).string()), std::string::npos) << name << " not listed:\n" << r.out;
  }
  EXPECT_EQ(read_image(dir / "out" / "a.png", 3).sizes(), (std::vector<int64_t>{3, 33, 26}));
  EXPECT_EQ(read_image(dir / "out" / "b.jpg", 3).sizes(), (std::vector<int64_t>{3, 20, 28}));
  EXPECT_EQ(read_image(dir / "out" / "c.png", 3).sizes(), (std::vector<int64_t>{3, 18, 22}));
  // The same as one image at a time, the mask drawn for each image in the folder's order.
  r = restore("--task inpaint --mask blocks --seed 3 --out " + (dir / "holes").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli(fmt::format("restore --model {} --in {} --task inpaint --mask blocks --seed 3 --out {}", archive,
                                (dir / "photos" / "a.png").string(), (dir / "one.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(torch::equal(read_image(dir / "holes" / "a.png", 3), read_image(dir / "one.png", 3)));
  EXPECT_TRUE(std::filesystem::exists(dir / "holes" / "b_mask.png"));

  // An unreadable image: the others are restored, and the run ends in one line naming it.
  write_text_atomically(dir / "photos" / "broken.png", "not an image");
  r = restore("--task colorize --out " + (dir / "colour").string());
  EXPECT_NE(r.exit_code, 0);
  // (This test's model was trained without corruption: a warning says so first.)
  const std::string last = r.err.substr(r.err.rfind('\n', r.err.size() - 2) + 1);
  EXPECT_EQ(last.rfind(fmt::format("torchae: error: 1 of the 4 images in {} not restored (the others are in {}): "
                                   "broken.png: ",
                                   (dir / "photos").string(), (dir / "colour").string()),
                       0),
            0u)
      << r.err;
  EXPECT_EQ(std::count(last.begin(), last.end(), '\n'), 1) << r.err;
  for (const char* name : {"a.png", "b.jpg", "c.png", "a_gray.png"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "colour" / name)) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "colour" / "broken.png"));
  std::filesystem::remove(dir / "photos" / "broken.png");

  // Refused before anything is written: the input folder itself, a file, a mask file.
  const auto count = [&] {
    return std::distance(std::filesystem::directory_iterator(dir / "photos"), std::filesystem::directory_iterator{});
  };
  const auto before = count();
  test::expect_one_line_error(restore("--task denoise --out " + (dir / "photos").string()),
                              "is the folder --in names; its images would be replaced");
  test::expect_one_line_error(restore("--task denoise --out " + (dir / "m.pt").string()), "is not a folder");
  test::expect_one_line_error(restore("--task denoise --out " + (dir / "restored.png").string()),
                              "restored.png: names an image; a folder given to --in is restored into a folder");
  test::expect_one_line_error(
      restore(fmt::format("--task inpaint --mask {} --out {}", (dir / "holes" / "a_mask.png").string(),
                          (dir / "masked").string())),
      "a mask file fits one image");
  test::expect_one_line_error(restore("--task inpaint --out " + (dir / "masked").string()), "inpaint needs --mask");
  EXPECT_EQ(count(), before);
  EXPECT_FALSE(std::filesystem::exists(dir / "masked"));
  EXPECT_FALSE(std::filesystem::exists(dir / "restored.png"));
  std::filesystem::create_directories(dir / "empty");
  test::expect_one_line_error(
      test::run_cli(fmt::format("restore --model {} --in {} --task denoise --out {}", archive,
                                (dir / "empty").string(), (dir / "e").string())),
      "empty");
}

// The shipped archives (models/zoo/shipped) by their zoo names, from the command line; their
// figures are checked in Zoo.ShippedArchivesAreTheirRecipesAndReproduceTheirFigures.
TEST_F(RestoreTest, AShippedModelIsFoundByItsZooName) {
  TempDir dir;
  write_image(dir / "photo.png", smooth_image(40, 36));
  for (const auto& [model, task] : {std::pair{"dae-conv-natural", "denoise --noise 25"},
                                    std::pair{"inpaint-conv-natural", "inpaint --mask blocks"},
                                    std::pair{"colorize-conv-natural", "colorize"}}) {
    const test::CliResult r = test::run_cli(fmt::format("restore --model zoo:{} --task {} --in {} --out {}", model, task,
                                                        (dir / "photo.png").string(), (dir / "out.png").string()));
    ASSERT_EQ(r.exit_code, 0) << model << ": " << r.err;
    EXPECT_EQ(read_image(dir / "out.png", 3).sizes(), (std::vector<int64_t>{3, 40, 36})) << model;
  }
  // An unknown name is refused in one line that lists the shipped ones.
  test::expect_one_line_error(test::run_cli(fmt::format("restore --model zoo:dae-conv --task denoise --in {} --out {}",
                                                        (dir / "photo.png").string(), (dir / "x.png").string())),
                              "zoo:dae-conv: no shipped archive of that name");
}

// A colouriser by classes decodes its scores at the temperature asked (restore --temperature):
// at its own, as its archive does; lower, more vividly. Other models are refused it.
TEST_F(RestoreTest, AColouriserByClassesDecodesAtTheTemperatureAsked) {
  Restorer model = Restorer::load("zoo:colorize-conv-natural");
  ASSERT_TRUE(model.decodes_classes());
  const torch::Tensor photo =
      read_image(std::filesystem::path(kOpenCvSampleDir) / "fruits.jpg", 3).narrow(1, 100, 128).narrow(2, 200, 120);
  const torch::Tensor own = model.restore(RestoreTask::colorize, photo);
  model.set_temperature(model.card()["config"]["model"]["temperature"].get<double>());
  expect_tensors_near(model.restore(RestoreTask::colorize, photo), own, 1e-5);
  model.set_temperature(0.1);
  const torch::Tensor vivid = model.restore(RestoreTask::colorize, photo);
  EXPECT_GT(colourfulness(vivid), colourfulness(own) + 1) << "0.1 against the model's 0.38";
  model.set_temperature(std::nullopt);
  EXPECT_TRUE(torch::equal(model.restore(RestoreTask::colorize, photo), own));

  const Restorer denoiser = Restorer::load("zoo:dae-conv-natural");
  EXPECT_FALSE(denoiser.decodes_classes());

  TempDir dir;
  write_image(dir / "photo.png", photo);
  const auto restore = [&](const std::string& model_and_task, const std::string& temperature) {
    return test::run_cli(fmt::format("restore --model zoo:{} --in {} --out {} --temperature {}", model_and_task,
                                     (dir / "photo.png").string(), (dir / "out.png").string(), temperature));
  };
  const test::CliResult r = restore("colorize-conv-natural --task colorize", "0.1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_tensors_near(read_image(dir / "out.png", 3), vivid, 1.0 / 255 + 1e-6);
  for (const auto& [model_and_task, temperature, error] :
       {std::tuple{"colorize-conv-natural --task colorize", "0", "--temperature: expected a positive number, got 0"},
        std::tuple{"colorize-conv-natural --task colorize", "nan", "--temperature: expected a positive number"},
        std::tuple{"dae-conv-natural --task denoise", "0.1",
                   "--temperature is for --task colorize with a colouriser by classes (model.chroma_bins); "
                   "zoo:dae-conv-natural is not"}}) {
    test::expect_one_line_error(restore(model_and_task, temperature), error);
  }
  // restore-eval scores it so, and says so.
  const test::CliResult scored = test::run_cli(fmt::format(
      "restore-eval --model zoo:colorize-conv-natural --task colorize --data {} --images fruits.jpg --no-baselines "
      "--temperature 0.1",
      kOpenCvSampleDir));
  ASSERT_EQ(scored.exit_code, 0) << scored.err;
  EXPECT_EQ(Json::parse(scored.out)["temperature"], 0.1);
}

TEST_F(RestoreTest, RestoreEvalScoresTheModelAndTheBaselinesOnHeldOutImages) {
  TempDir dir;
  for (int i = 0; i < 10; ++i) write_image(dir / fmt::format("img{:02d}.png", i), smooth_image(40, 36));
  const std::string archive = conv_archive(dir / "m.pt");
  for (const auto& [task, baseline] : {std::pair{"denoise", "fastNlMeansDenoisingColored"},
                                       std::pair{"inpaint", "inpaint_telea"}, std::pair{"colorize", "corrupted"}}) {
    const test::CliResult r = test::run_cli(fmt::format("restore-eval --model {} --task {} --data {} --noise 25 --picture {}",
                                                        archive, task, dir.path().string(), (dir / "p.png").string()));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Json j = Json::parse(r.out);
    EXPECT_EQ(j["n"], 1);  // img09, the tenth file
    for (const auto& name : {"model", baseline}) {
      const double p = j["methods"][name]["psnr_db"], s = j["methods"][name]["ssim"];
      EXPECT_GT(p, 5.0) << task << " " << name;
      EXPECT_LE(s, 1.0) << task << " " << name;
    }
    if (std::string(task) == "denoise") {
      // Non-local means and the DCT filter beat the noisy image they start from, their
      // strengths chosen on validation.
      for (const auto& method : {"fastNlMeansDenoisingColored", "dctDenoising"}) {
        EXPECT_GT(j["methods"][method]["psnr_db"].get<double>(), j["methods"]["corrupted"]["psnr_db"].get<double>())
            << method;
      }
      EXPECT_TRUE(j.contains("nlm_h"));
      EXPECT_TRUE(j.contains("dct_sigma"));
      EXPECT_EQ(j["dct_validation_psnr_db"].size(), 19);
    }
    if (std::string(task) == "inpaint") {
      // Frequency-selective reconstruction fills the holes better than leaving them black.
      EXPECT_GT(j["methods"]["inpaint_fsr_fast"]["psnr_db"].get<double>(),
                j["methods"]["corrupted"]["psnr_db"].get<double>() + 3);
      EXPECT_FALSE(j["methods"].contains("inpaint_fsr_best"));  // --fsr-best only
    }
    if (std::string(task) == "colorize") {
      // Colourfulness beside PSNR and SSIM: the gray input's is 0; the truth's is given.
      EXPECT_EQ(j["methods"]["corrupted"]["colourfulness"].get<double>(), 0.0);
      EXPECT_GE(j["methods"]["model"]["colourfulness"].get<double>(), 0.0);
      EXPECT_GT(j["truth_colourfulness"].get<double>(), 0.0);
      EXPECT_EQ(j["per_image"]["model"][0].count("colourfulness"), 1);
      EXPECT_EQ(j["validation"]["n"], 2);  // 128x128 centre crops of img00 and img05
      EXPECT_EQ(j["validation"]["methods"]["corrupted"]["colourfulness"].get<double>(), 0.0);
    } else {
      EXPECT_FALSE(j.contains("truth_colourfulness"));
    }
    EXPECT_EQ(read_image(dir / "p.png", 3).size(1), 4 * 40 + 2);  // one row, enlarged 4x
  }
  // --images scores the files named, in that order; the validation crops come from the others.
  const test::CliResult named = test::run_cli(fmt::format(
      "restore-eval --model {} --task colorize --data {} --images img03.png,img00.png", archive, dir.path().string()));
  ASSERT_EQ(named.exit_code, 0) << named.err;
  const Json k = Json::parse(named.out);
  EXPECT_EQ(k["n"], 2);
  EXPECT_EQ(k["per_image"]["model"][0]["image"], "img03.png");
  EXPECT_EQ(k["per_image"]["model"][1]["image"], "img00.png");
  EXPECT_EQ(k["validation"]["n"], 2);  // every fifth of the eight others: img01 and img07
  test::expect_one_line_error(
      test::run_cli(fmt::format("restore-eval --model {} --task colorize --data {} --images img03.png,img10.png",
                                archive, dir.path().string())),
      fmt::format("--images: no image \"img10.png\" in {}", dir.path().string()));
  test::expect_one_line_error(test::run_cli(fmt::format("restore-eval --model {} --images img03.png", archive)),
                              "--images names files of a folder");
  const test::CliResult best = test::run_cli(
      fmt::format("restore-eval --model {} --task inpaint --data {} --fsr-best", archive, dir.path().string()));
  ASSERT_EQ(best.exit_code, 0) << best.err;
  const Json j = Json::parse(best.out);
  EXPECT_GT(j["methods"]["inpaint_fsr_best"]["psnr_db"].get<double>(), j["methods"]["corrupted"]["psnr_db"].get<double>() + 3);
}

TEST_F(RestoreTest, EvalLeavesOutThePcaBaselineWhereSkipsPassAroundTheCode) {
  TempDir dir;
  for (int i = 0; i < 10; ++i) write_image(dir / fmt::format("img{:02d}.png", i), smooth_image(36, 40));
  const std::string conv_denoiser = fmt::format(
      "--set data.dataset=images --set data.path={} --set data.patch=16 --set data.patches=64 --set model.family=denoising "
      "--set model.backbone=conv --set model.code_size=0 --set model.channels=[4,8] --set model.strides=[1,2] "
      "--set model.corruption=gaussian --set model.level=0.1 --set model.loss=mse --set train.epochs=1",
      dir.path().string());
  for (const std::string around : {"skips", "residual", ""}) {
    const std::string run = (dir / ("run" + around)).string();
    const std::string set = around.empty() ? "" : fmt::format("--set model.{}=true", around);
    ASSERT_EQ(test::run_cli(fmt::format("train {} {} --out {}", conv_denoiser, set, run)).exit_code, 0) << around;
    const test::CliResult r = test::run_cli("eval --run " + run);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Json j = Json::parse(r.out);
    EXPECT_EQ(j["code_size"], 8 * 8 * 8);
    EXPECT_GT(j["test_psnr_db"].get<double>(), 0.0);
    EXPECT_GT(j["corrupted"]["test_psnr_db"].get<double>(), 0.0);
    if (around.empty()) {
      // The code bounds the reconstruction: PCA with as many components (512 of 768) beside it,
      // one fit for the clean and the corrupted figures.
      EXPECT_EQ(j["pca_components"], 512);
      for (const char* key : {"pca_test_mse", "pca_test_sse_per_image", "pca_test_psnr_db"}) EXPECT_TRUE(j.contains(key));
      EXPECT_GT(j["corrupted"]["pca_test_mse"].get<double>(), j["pca_test_mse"].get<double>());
    } else {
      // Skips (or a residual path) pass the input around the code, whose width bounds nothing.
      EXPECT_EQ(j["pca_components"], 0) << around;
      for (const char* key : {"pca_test_mse", "pca_test_sse_per_image", "pca_test_psnr_db"}) {
        EXPECT_FALSE(j.contains(key)) << around << " " << key;
        EXPECT_FALSE(j["corrupted"].contains(key)) << around << " " << key;
      }
    }
  }
}

TEST_F(RestoreTest, RestoreEvalsClassicalMethodsScoreTheSameOnOneThreadAsOnSeveral) {
  // They run an image a thread: each image's figures are its own, in its place, whatever the
  // number of threads (here more threads than cores, and images of different sizes).
  TempDir dir;
  for (int i = 0; i < 12; ++i) write_image(dir / fmt::format("img{:02d}.png", i), smooth_image(24 + 3 * i, 40 - i));
  const std::string archive = conv_archive(dir / "m.pt");
  const int threads = at::get_num_threads();
  for (const RestoreTask task : {RestoreTask::denoise, RestoreTask::inpaint}) {
    RestoreEvalOptions o;
    o.task = task;
    o.data = dir.path().string();
    o.images = {"img09.png", "img02.png", "img11.png", "img04.png", "img07.png"};
    o.noise = "25";
    std::vector<Json> results;
    for (const int t : {1, 4}) {
      at::set_num_threads(t);
      results.push_back(restore_eval(archive, o));
    }
    at::set_num_threads(threads);
    for (const Json& j : results) ASSERT_EQ(j["n"], 5);
    const std::vector<std::string> classical =
        task == RestoreTask::denoise
            ? std::vector<std::string>{"fastNlMeansDenoisingColored", "dctDenoising", "corrupted"}
            : std::vector<std::string>{"inpaint_telea", "inpaint_ns", "inpaint_fsr_fast", "corrupted"};
    for (const std::string& method : classical) {
      EXPECT_EQ(results[0]["per_image"][method], results[1]["per_image"][method]) << method;
      EXPECT_EQ(results[0]["methods"][method], results[1]["methods"][method]) << method;
    }
    if (task == RestoreTask::denoise) {
      for (const char* key : {"nlm_h", "nlm_validation_psnr_db", "dct_sigma", "dct_validation_psnr_db"}) {
        EXPECT_EQ(results[0][key], results[1][key]) << key;
      }
    }
  }
  // Each image's figure is that image's: the images differ, and so do their figures.
  RestoreEvalOptions o;
  o.task = RestoreTask::inpaint;
  o.data = dir.path().string();
  o.images = {"img09.png", "img02.png"};
  const Json both = restore_eval(archive, o);
  o.images = {"img09.png"};
  const Json first = restore_eval(archive, o);  // the same mask: the first drawn
  EXPECT_EQ(both["per_image"]["inpaint_ns"][0], first["per_image"]["inpaint_ns"][0]);
  EXPECT_NE(both["per_image"]["inpaint_ns"][1]["psnr_db"], first["per_image"]["inpaint_ns"][0]["psnr_db"]);
}

}  // namespace
}  // namespace torchae
