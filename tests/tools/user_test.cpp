// What a user sees: the progress bar at any terminal width, a quiet library, training curves,
// labelled pictures, the HTML report in a real browser, a script's run, every family from its name.

#include "test_tools.h"

#include "torchae/core/io.h"
#include "torchae/data/image_io.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/restore/restore.h"
#include "torchae/train/run.h"
#include "torchae/train/trainer.h"
#include "torchae/viz/pictures.h"
#include "torchae/viz/report.h"

#include <fmt/format.h>

#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace torchae {
namespace {

using test::CliResult;
using test::expect_one_line_error;
using test::run_cli;
using test::png_size;
using test::TempDir;

TEST(ProgressLine, FitsEveryWidthAndShortensInOrder) {
  const BatchProgress p{3, 10, 12800, 54000, 0.3123456, 4.0};
  const std::string wide = progress_line("", p, 200);
  EXPECT_NE(wide.find("ETA"), std::string::npos) << wide;
  EXPECT_NE(wide.find("samples/s"), std::string::npos) << wide;
  EXPECT_NE(wide.find(" [#####.."), std::string::npos) << wide;
  for (int columns = 1; columns <= 200; ++columns) {
    const std::string line = progress_line("pretrain layer 2/3", p, columns);
    EXPECT_LE(static_cast<int>(line.size()), std::max(columns - 1, 0)) << columns << ": " << line;
  }
  // Narrower: the ETA goes first, then the speed; the bar narrows, then goes.
  const std::string sixty = progress_line("", p, 60);
  EXPECT_EQ(sixty.find("ETA"), std::string::npos) << sixty;
  EXPECT_NE(sixty.find("loss 0.31235"), std::string::npos) << sixty;
  const std::string forty = progress_line("", p, 40);
  EXPECT_EQ(forty.find("samples/s"), std::string::npos) << forty;
  EXPECT_NE(forty.find("12800/54000"), std::string::npos) << forty;
}

// The command line under a pseudo-terminal 60 columns wide: what it draws in place never reaches
// the last column (so it never wraps), and each epoch leaves one line.
TEST(ProgressLine, UnderAPseudoTerminalOfSixtyColumnsAnEpochLeavesOneLine) {
  ASSERT_TRUE(test::have_fashion_mnist());
  TempDir dir;
  const std::string run = (dir / "run").string();
  winsize size{};
  size.ws_row = 24;
  size.ws_col = 60;
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(TORCHAE_CLI, TORCHAE_CLI, "train", "--set", "data.limit=3000", "--set", "train.batch_size=16", "--set",
            "model.hidden=[64]", "--set", "model.code_size=8", "--set", "train.epochs=3", "--out", run.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string screen;
  char buffer[4096];
  for (ssize_t n; (n = ::read(master, buffer, sizeof buffer)) > 0;) screen.append(buffer, static_cast<std::size_t>(n));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << screen;
  // The terminal ends lines with "\r\n". Within a line, what precedes a carriage return was drawn
  // in place (the bar) and must fit the row; what follows the last one stays (an epoch line).
  std::string text;
  for (std::size_t i = 0; i < screen.size(); ++i) {
    if (screen.compare(i, 2, "\r\n") == 0) continue;
    if (screen.compare(i, 3, "\033[K") == 0) {
      i += 2;
      continue;
    }
    text += screen[i];
  }
  std::size_t bars = 0, widest = 0, epoch_lines = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::size_t begin = 0;
    for (std::size_t cr; (cr = line.find('\r', begin)) != std::string::npos; begin = cr + 1) {
      const std::string drawn = line.substr(begin, cr - begin);
      widest = std::max(widest, drawn.size());
      bars += drawn.rfind("epoch ", 0) == 0 && drawn.find(" [") != std::string::npos;
    }
    const std::string kept = line.substr(begin);
    epoch_lines += kept.rfind("epoch ", 0) == 0 && kept.find("val_loss=") != std::string::npos;
  }
  EXPECT_GE(bars, 3u) << "a progress bar in each epoch:\n" << screen;
  EXPECT_LE(widest, 59u) << screen;
  EXPECT_EQ(epoch_lines, 3u) << screen;
}

class UserTest : public test::TorchaeTest {
 protected:
  void SetUp() override {
    TorchaeTest::SetUp();
    ASSERT_TRUE(test::have_fashion_mnist()) << "Debian's dataset-fashion-mnist is required: scripts/install-deps.sh";
  }
};

TEST_F(UserTest, TheLibraryPrintsNothingUnlessGivenAReporter) {
  const DataSpec spec{{1, 4, 4}, 0.0, 1.0, 1.0};
  const Dataset data{torch::rand({64, 1, 4, 4}), {}};
  for (const bool with_reporter : {false, true}) {
    const BuiltModel built = build_model({{"family", "undercomplete"}, {"code_size", 2}, {"hidden", {8}}}, spec);
    TrainOptions options;
    options.epochs = 2;
    options.batch_size = 16;
    options.device = "cpu";
    options.patience = 1;
    if (with_reporter) options.reporter = console_reporter();
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    Trainer(built.model, options).fit(data, data);
    const std::string out = testing::internal::GetCapturedStdout(), err = testing::internal::GetCapturedStderr();
    if (with_reporter) {
      EXPECT_NE(out.find("epoch 2/2"), std::string::npos) << out;
    } else {
      EXPECT_EQ(out, "");
      EXPECT_EQ(err, "");
    }
  }
}

// A setting that is allowed but probably a mistake is returned with the model, not printed; the
// command line shows it on stderr.
TEST_F(UserTest, ModelWarningsAreReturnedNotPrinted) {
  const DataSpec spec{{1, 4, 4}, 0.0, 1.0, 1.0};
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const BuiltModel built = build_model({{"family", "rbm"}, {"code_size", 3}, {"visible_units", "gaussian"}}, spec);
  const BuiltModel stacked = build_model(
      {{"family", "stacked"}, {"layers", {{{"units", 3}, {"family", "rbm"}, {"visible_units", "gaussian"}}}}}, spec);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ASSERT_EQ(built.warnings.size(), 1u);
  EXPECT_NE(built.warnings[0].find("model.visible_units: gaussian units have unit variance"), std::string::npos)
      << built.warnings[0];
  ASSERT_EQ(stacked.warnings.size(), 1u);
  EXPECT_NE(stacked.warnings[0].find("model.layers[0].visible_units: gaussian units"), std::string::npos)
      << stacked.warnings[0];
  TempDir dir;
  const CliResult r = run_cli(fmt::format("train --set model.family=rbm --set model.visible_units=gaussian --set "
                                          "model.code_size=8 --set data.limit=300 --set train.epochs=1 --out {}",
                                          (dir / "run").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("torchae: warning: model.visible_units: gaussian units"), std::string::npos) << r.err;
}

TEST_F(UserTest, RunConfigIsWhatTheReadersResolve) {
  for (const Json& section : {Json::object(), Json{{"epochs", 3}, {"optimizer", "sgd"}, {"momentum", 0.9}}}) {
    OptionReader reader(section, "train");
    const TrainOptions o = TrainOptions::from(reader);
    EXPECT_EQ(o.to_json(), reader.resolved());
  }
  for (const Json& section : {Json::object(), Json{{"dataset", "images"}, {"path", "/x"}, {"channels", 1}}}) {
    OptionReader reader(section, "data");
    const DataOptions o = DataOptions::from(reader);
    EXPECT_EQ(o.to_json(), reader.resolved());
  }
}

// The research script of tools/examples: its run directory is one that eval, viz, report and
// export accept, and it prints its epochs through the one-line reporter.
TEST_F(UserTest, TheTrainAndExportExampleWritesARunTheCommandLineReads) {
  TempDir dir;
  const std::string run = (dir / "script").string();
  const CliResult r =
      test::run_command(fmt::format("'{}' {} denoising 2 1200", TORCHAE_TRAIN_AND_EXPORT_EXAMPLE, run));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("epoch 2/2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("test MSE"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "script" / "model.pt"));
  EXPECT_EQ(load_json_file(dir / "script" / "config.json")["model"]["family"], "denoising");
  CliResult e = run_cli(fmt::format("eval --run {}", run));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  e = run_cli(fmt::format("viz --run {} --what recon --out {}", run, (dir / "r.png").string()));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  e = run_cli(fmt::format("train --resume {} --set train.epochs=3", run));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  e = run_cli(fmt::format("report --run {}", run));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const std::string html = read_text(dir / "script" / "report.html");
  EXPECT_NE(html.find("script/model.pt"), std::string::npos) << "the exported archive's card";
  EXPECT_NE(html.find("torchae viz --what recon"), std::string::npos);
}

// Curves of a stacked run with the default stack (the family from its name alone): the stages
// marked and named, a line per term, train solid and validation dashed.
TEST_F(UserTest, CurvesOfAStackedRunMarkItsStages) {
  TempDir dir;
  const std::string run = (dir / "stack").string();
  CliResult r = run_cli(fmt::format("train --set model.family=stacked --set data.limit=1200 --set train.epochs=2 "
                                    "--set train.progress=lines --out {}",
                                    run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("trained: " + run), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("torchae report --run " + run), std::string::npos) << r.out;
  const Json config = load_json_file(dir / "stack" / "config.json");
  ASSERT_EQ(config["model"]["layers"].size(), 2u);
  EXPECT_EQ(config["model"]["layers"][0]["units"], 512);
  EXPECT_EQ(config["model"]["layers"][1]["units"], 32);
  const Plot plot = training_curves(run);
  std::vector<std::string> markers;
  for (const auto& m : plot.markers) markers.push_back(m.name);
  EXPECT_EQ(markers, (std::vector<std::string>{"pretrain layer 1", "pretrain layer 2", "finetune"}));
  ASSERT_GE(plot.series.size(), 2u);
  EXPECT_EQ(plot.series[0].name, "train loss");
  EXPECT_FALSE(plot.series[0].dashed);
  EXPECT_EQ(plot.series[1].name, "val loss");
  EXPECT_TRUE(plot.series[1].dashed);
  EXPECT_EQ(plot.series[0].x.size(), 6u) << "2 epochs in each of 3 stages";
  const std::string svg = plot_svg(plot);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("pretrain layer 2"), std::string::npos);
  r = run_cli(fmt::format("viz --run {} --what curves --out {}", run, (dir / "c.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(png_size(dir / "c.png"), (std::pair<int, int>{820, 600}));
}

TEST(PlotLayout, ALossSpanningDecadesIsDrawnOnALogAxis) {
  Plot plot{{PlotSeries{"train loss", {1, 2, 3}, {1000.0, 10.0, 0.5}}}, "t", "epoch", "loss", true, {}};
  const std::string svg = plot_svg(plot);
  EXPECT_NE(svg.find(">1000<"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">0.1<"), std::string::npos) << svg;
  EXPECT_NE(svg.find("(log scale)"), std::string::npos);
  const torch::Tensor png = render_plot(plot);
  EXPECT_EQ(png.sizes(), (std::vector<int64_t>{600, 820, 3}));
  EXPECT_GT(png.lt(128).sum().item<int64_t>(), 1000) << "axes, text and a line were drawn";
}

TEST(Pictures, ImagesAreEnlargedAndTitledAndSignedValuesGetAColourBar) {
  EXPECT_EQ(enlarged(torch::zeros({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 1, 84, 84}));
  EXPECT_EQ(enlarged(torch::zeros({2, 1, 3, 3})).sizes(), (std::vector<int64_t>{2, 1, 84, 84}));
  EXPECT_EQ(enlarged(torch::zeros({1, 3, 100, 90})).sizes(), (std::vector<int64_t>{1, 3, 100, 90}));
  const torch::Tensor grid = image_grid(torch::rand({4, 1, 84, 84}), 2, false);
  const torch::Tensor t = titled(grid, "a title", {"a note"}, {"input", "reconstruction"}, 85);
  EXPECT_EQ(t.size(2), 3);
  EXPECT_GT(t.size(0), grid.size(0) + 40);
  EXPECT_GT(t.size(1), grid.size(1) + 60) << "room for the row labels";
  const torch::Tensor values = torch::linspace(-1, 1, 4 * 9).view({4, 1, 3, 3});
  const torch::Tensor s = signed_grid(values, 2);
  // -1 is blue, +1 red, in the cells; the bar to the right of the grid.
  const torch::Tensor first = s[1][1], last = s[1 + 4][1 + 4 + 2];
  EXPECT_GT(first[2].item<int>(), first[0].item<int>()) << "the most negative value is blue";
  EXPECT_GT(last[0].item<int>(), last[2].item<int>()) << "the most positive value is red";
  EXPECT_GT(s.size(1), image_grid(values, 2, false).size(1) + 50);
  EXPECT_EQ(projection_note(torch::randn({100, 2})), "the 2-d codes as they are");
  const std::string note = projection_note(torch::randn({500, 8}) * torch::tensor({10.f, 10.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f}));
  EXPECT_NE(note.find("PCA of the 8-d codes: components 1-2 of 8, "), std::string::npos) << note;
}

TEST(Report, Base64IsTheStandardEncoding) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(markup_escaped("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

// The report of a trained and exported run, loaded by headless Chromium: no console errors, and
// a screenshot that is not blank.
TEST_F(UserTest, TheReportRendersInARealBrowser) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs it)";
  }
  TempDir dir;
  const std::string run = (dir / "run").string();
  CliResult r = run_cli(fmt::format("train {} --set model.family=denoising --set train.epochs=2 --out {}", test::kSmallRun, run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}/model.pt", run, run)).exit_code, 0);
  r = run_cli(fmt::format("report --run {}", run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::filesystem::path page = dir / "run" / "report.html";
  EXPECT_EQ(r.out, page.string() + "\n");
  const std::string html = read_text(page);
  for (const char* part : {"<svg", "train loss", "val loss", "PCA, same code size", "test_psnr_db",
                           "data:image/png;base64,", "torchae viz --what recon", "torchae viz --what filters",
                           "&quot;family&quot;: &quot;denoising&quot;", "Exported model", "&quot;methods&quot;",
                           "samples</code>: viz: samples need a generative family"}) {
    EXPECT_NE(html.find(part), std::string::npos) << part;
  }
  EXPECT_EQ(html.find("<script"), std::string::npos) << "nothing to run";
  for (const char* fetch : {"src=\"http", "href=\"http", "url(", "@import"}) {
    EXPECT_EQ(html.find(fetch), std::string::npos) << "nothing fetched: " << fetch;
  }
  const std::filesystem::path shot = dir / "shot.png";
  const CliResult browser = test::run_command(fmt::format(
      "HOME='{0}' chromium --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 "
      "--window-size=1200,1600 --screenshot='{1}' 'file://{2}'",
      dir.path().string(), shot.string(), page.string()));
  ASSERT_EQ(browser.exit_code, 0) << browser.err;
  EXPECT_EQ(browser.err.find("CONSOLE"), std::string::npos) << browser.err;
  ASSERT_TRUE(std::filesystem::exists(shot)) << browser.err;
  const torch::Tensor image = read_image(shot, 1)[0] * 255;
  EXPECT_EQ(image.size(1), 1200);
  EXPECT_GT(image.std().item<double>(), 20.0) << "a blank page";
  EXPECT_GT(image.lt(200).to(torch::kFloat).mean().item<double>(), 0.01) << "too little drawn";
  expect_one_line_error(run_cli("report --run " + (dir / "none").string()), "not a run directory");
}

TEST_F(UserTest, PicturesExplainThemselvesAndReadWithoutZooming) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set model.family=denoising --set train.epochs=1 --out {}", test::kSmallRun, run))
                .exit_code,
            0);
  for (const char* what : {"filters", "recon", "maximize", "interp", "latent"}) {
    const std::filesystem::path png = dir / (std::string(what) + ".png");
    const CliResult r = run_cli(fmt::format("viz --run {} --what {} --count 4 --out {}", run, what, png.string()));
    ASSERT_EQ(r.exit_code, 0) << what << ": " << r.err;
    const auto [w, h] = png_size(png);
    EXPECT_GE(h, 84 + 40) << what << ": an 84-pixel image and a title";
    EXPECT_GE(w, 300) << what;
  }
  // recon: 3 rows (input, corrupted, reconstruction) of 4 images of 84 pixels, labels to the left.
  const auto [w, h] = png_size(dir / "recon.png");
  EXPECT_GE(w, 4 * 85 + 100);
  EXPECT_GE(h, 3 * 85);
}

// A family trains and evaluates from its name alone (data and epochs kept small; no model option).
class FromItsNameAlone : public UserTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(FromItsNameAlone, TrainsAndEvaluates) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  CliResult r = run_cli(fmt::format(
      "train --set model.family={} --set data.limit=600 --set train.epochs=1 --set train.progress=none --out {}",
      GetParam(), run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(fmt::format("eval --run {} --iw-samples 2 --fd-samples 2 --ais-runs 2", run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json metrics = Json::parse(r.out);
  EXPECT_TRUE(metrics.contains("test_mse")) << r.out;
}

std::vector<std::string> family_names() {
  std::vector<std::string> names;
  for (const auto* family : Registry::builtin().families()) names.push_back(family->name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, FromItsNameAlone, ::testing::ValuesIn(family_names()),
                         [](const auto& info) { return info.param; });

TEST_F(UserTest, RestoreChecksTheTaskTheFormatAndThePicture) {
  TempDir dir;
  const std::string run = (dir / "run").string(), model = (dir / "m.pt").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set model.family=denoising --set model.corruption=gaussian "
                                "--set model.level=0.2 --set train.epochs=1 --out {}",
                                test::kSmallRun, run))
                .exit_code,
            0);
  ASSERT_EQ(run_cli(fmt::format("export --run {} --out {}", run, model)).exit_code, 0);
  EXPECT_EQ(trained_tasks(Json{{"config", load_json_file(dir / "run" / "config.json")}}),
            (std::vector<RestoreTask>{RestoreTask::denoise}));
  write_image(dir / "small.png", torch::rand({1, 28, 28}));
  expect_one_line_error(run_cli(fmt::format("restore --model {} --task inpaint --mask random --in {} --out {}", model,
                                            (dir / "small.png").string(), (dir / "x.png").string())),
                        "was trained with corruption \"gaussian\", for --task denoise, not to inpaint");
  expect_one_line_error(run_cli(fmt::format("restore --model {} --task denoise --in {} --out {}", model,
                                            (dir / "small.png").string(), (dir / "x.out").string())),
                        "cannot tell the image format from the name");
  EXPECT_FALSE(std::filesystem::exists(dir / "x.png"));
  // JPEG bytes under a .jpg name.
  CliResult r = run_cli(fmt::format("restore --model {} --task denoise --in {} --out {}", model,
                                    (dir / "small.png").string(), (dir / "y.jpg").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(read_text(dir / "y.jpg").substr(0, 2), std::string("\xFF\xD8"));
  // A colour photograph given to a Fashion-MNIST MLP: restored, with one line of warning.
  write_image(dir / "photo.png", torch::rand({3, 150, 200}));
  r = run_cli(fmt::format("restore --model {} --task denoise --in {} --out {}", model, (dir / "photo.png").string(),
                          (dir / "p.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("torchae: warning: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("200x150 colour image; the model was trained on 28x28 gray images of fashion-mnist"),
            std::string::npos)
      << r.err;
}

TEST(ExportedConv, ForwardRefusesSidesThatAreNotMultiplesOfItsStride) {
  const DataSpec spec{{1, 8, 8}, 0.0, 1.0, 1.0};
  const BuiltModel built = build_model(
      {{"family", "undercomplete"}, {"backbone", "conv"}, {"code_size", 0}, {"channels", {4, 3}}, {"strides", {2}}}, spec);
  ASSERT_GT(built.model->size_multiple(), 1);
  const int64_t m = built.model->size_multiple();
  torch::jit::Module module = to_torchscript(*built.model, torch::rand({2, 1, 8, 8}));
  EXPECT_EQ(module.forward({torch::rand({1, 1, 4 * m, 2 * m})}).toTensor().sizes(),
            (std::vector<int64_t>{1, 1, 4 * m, 2 * m}));
  for (const char* method : {"forward", "encode"}) {
    try {
      module.get_method(method)({torch::rand({1, 1, 4 * m + 1, 2 * m})});
      ADD_FAILURE() << method << " took a side that is not a multiple of " << m;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(fmt::format("multiples of {}, got {}x{}", m, 4 * m + 1, 2 * m)),
                std::string::npos)
          << e.what();
    }
  }
}

TEST_F(UserTest, EvalScoresReconstructionsOfCorruptedTestImages) {
  TempDir dir;
  const std::string run = (dir / "run").string();
  ASSERT_EQ(run_cli(fmt::format("train {} --set model.family=denoising --set model.corruption=gaussian "
                                "--set model.level=0.2 --set model.clip=true --set train.epochs=2 --out {}",
                                test::kSmallRun, run))
                .exit_code,
            0);
  CliResult r = run_cli(fmt::format("eval --run {} --corrupt gaussian:0.2", run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json c = Json::parse(r.out)["corrupted"];
  EXPECT_EQ(c["corruption"], "gaussian");
  EXPECT_DOUBLE_EQ(c["level"].get<double>(), 0.2);
  EXPECT_EQ(c["as_trained"], false);
  // Without --corrupt a denoiser is scored on its own corruption as well, seeded alike: here the
  // same clipped noise as --corrupt gaussian:0.2 (an MLP denoiser is told nothing more of it than
  // the noisy image), so the same figures.
  const CliResult own = run_cli(fmt::format("eval --run {}", run));
  ASSERT_EQ(own.exit_code, 0) << own.err;
  Json as_trained = Json::parse(own.out)["corrupted"];
  EXPECT_EQ(as_trained["as_trained"], true);
  as_trained["as_trained"] = false;
  EXPECT_EQ(as_trained, c);
  EXPECT_EQ(load_json_file(std::filesystem::path(run) / "eval.json")["corrupted"]["as_trained"], true);
  // Clipped Gaussian noise of sigma 0.2: a little under 0.04 per pixel.
  EXPECT_NEAR(c["input_mse"].get<double>(), 0.03, 0.01);
  const Json clean = Json::parse(r.out);
  EXPECT_GT(c["test_mse"].get<double>(), 0.0);
  EXPECT_GT(c["pca_test_mse"].get<double>(), clean["pca_test_mse"].get<double>()) << "noise PCA cannot remove";
  // Barely corrupted, the figures are the clean ones.
  const CliResult faint = run_cli(fmt::format("eval --run {} --corrupt gaussian:0.00001", run));
  ASSERT_EQ(faint.exit_code, 0) << faint.err;
  const Json f = Json::parse(faint.out);
  EXPECT_NEAR(f["corrupted"]["test_mse"].get<double>(), f["test_mse"].get<double>(), 1e-6);
  EXPECT_NEAR(f["corrupted"]["pca_test_mse"].get<double>(), f["pca_test_mse"].get<double>(), 1e-6);
  EXPECT_LT(f["corrupted"]["input_mse"].get<double>(), 1e-9);
  // The same corrupted images every time.
  const CliResult again = run_cli(fmt::format("eval --run {} --corrupt gaussian:0.2", run));
  EXPECT_EQ(Json::parse(again.out)["corrupted"], c);
  expect_one_line_error(run_cli(fmt::format("eval --run {} --corrupt gaussian", run)), "expected KIND:LEVEL");
  expect_one_line_error(run_cli(fmt::format("eval --run {} --corrupt blur:2", run)), "--corrupt.corruption");
  expect_one_line_error(run_cli(fmt::format("eval --run {} --corrupt masking:1.5", run)), "--corrupt.level");
}

}  // namespace
}  // namespace torchae
