#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/eval/metrics.h"
#include "torchae/export/export.h"
#include "torchae/models/registry.h"
#include "torchae/models/stacked.h"
#include "torchae/train/staged.h"

#include <fmt/format.h>

namespace torchae {
namespace {

using test::TempDir;
using test::TorchaeTest;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

// Images whose class (of 3) is their brightness band: something a head can learn.
Dataset labeled_data(int64_t n, int64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor labels = torch::randint(3, {n}, torch::kLong);
  const torch::Tensor level = (labels.to(torch::kFloat) + 0.5) / 3.0;
  const torch::Tensor images = (level.view({n, 1, 1, 1}) + 0.15 * torch::randn({n, 1, 6, 5})).clamp(0, 1);
  return {images, labels};
}

// Two layers (denoising, then tied undercomplete) and every phase, a few epochs each.
Json small_stack(bool pretrain = true, bool finetune = true, bool classify = true) {
  return {{"family", "stacked"},
          {"layers",
           {{{"units", 12}, {"family", "denoising"}, {"corruption", "masking"}, {"level", 0.2}, {"epochs", 2}},
            {{"units", 5}, {"tied", true}, {"epochs", 3}, {"lr", 0.005}}}},
          {"pretrain", pretrain},
          {"finetune", finetune},
          {"classify", classify},
          {"classes", 3},
          {"finetune_epochs", 2},
          {"classify_epochs", 2}};
}

Stacked build_stack(const Json& section, int64_t seed = 0) {
  torch::manual_seed(seed);
  return Stacked(std::dynamic_pointer_cast<StackedImpl>(build_model(section, kSpec).model));
}

TrainOptions small_options() {
  TrainOptions o = test::quiet_cpu_options(1);
  o.batch_size = 16;
  o.lr = 3e-3;
  return o;
}

// (phase, layer, epoch) of every metrics line.
std::vector<std::tuple<std::string, int64_t, int64_t>> metrics_steps(const std::filesystem::path& run_dir) {
  std::vector<std::tuple<std::string, int64_t, int64_t>> steps;
  for (const auto& line : test::read_lines(run_dir / kMetricsFile)) {
    const Json j = Json::parse(line);
    steps.emplace_back(j["phase"].get<std::string>(), j.value("layer", int64_t{0}), j["epoch"].get<int64_t>());
  }
  return steps;
}

// Everything but timings, line by line.
std::vector<Json> metrics_without_timings(const std::filesystem::path& run_dir) {
  std::vector<Json> lines;
  for (const auto& line : test::read_lines(run_dir / kMetricsFile)) {
    Json j = Json::parse(line);
    j.erase("seconds");
    j.erase("samples_per_s");
    j.erase("data_wait_s");
    lines.push_back(j);
  }
  return lines;
}

void expect_same_parameters(torch::nn::Module& a, torch::nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) {
    ASSERT_TRUE(pb.contains(p.key())) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  }
}

class StackedTest : public TorchaeTest {};

TEST_F(StackedTest, PhasesRunInOrderAndEveryMetricsLineNamesItsPhaseAndLayer) {
  TempDir dir;
  const Dataset train = labeled_data(96, 1), validation = labeled_data(32, 2);
  Stacked stack = build_stack(small_stack());
  StagedTrainer pretrainer(stack, small_options(), dir.path());
  std::vector<std::string> phases;
  for (const auto& stage : pretrainer.stages()) phases.push_back(fmt::format("{}{}", stage.phase, stage.layer));
  EXPECT_EQ(phases, (std::vector<std::string>{"pretrain1", "pretrain2", "finetune0", "classify0"}));
  pretrainer.fit(train, validation);

  using Step = std::tuple<std::string, int64_t, int64_t>;
  EXPECT_EQ(metrics_steps(dir.path()), (std::vector<Step>{{"pretrain", 1, 1},
                                                           {"pretrain", 1, 2},
                                                           {"pretrain", 2, 1},
                                                           {"pretrain", 2, 2},
                                                           {"pretrain", 2, 3},
                                                           {"finetune", 0, 1},
                                                           {"finetune", 0, 2},
                                                           {"classify", 0, 1},
                                                           {"classify", 0, 2}}));
  // The per-stage learning rates and the supervised terms reach the log.
  const auto lines = test::read_lines(dir.path() / kMetricsFile);
  EXPECT_DOUBLE_EQ(Json::parse(lines[2])["lr"].get<double>(), 0.005);
  EXPECT_DOUBLE_EQ(Json::parse(lines[0])["lr"].get<double>(), 3e-3);
  const Json last = Json::parse(lines.back());
  EXPECT_TRUE(last["val"].contains("accuracy")) << last;
  EXPECT_TRUE(last["train"].contains("ce")) << last;
  EXPECT_EQ(stack->phase(), StackedPhase::reconstruct);
  EXPECT_EQ(checkpoint_stage(dir.path()), 3);
}

// A stack builds its layers through the registry it is built from, not the built-in one.
TEST_F(StackedTest, LayersAreBuiltThroughTheRegistryGiven) {
  Registry registry;
  registry.add(Registry::builtin().find("stacked"));
  const Family undercomplete = Registry::builtin().find("undercomplete");
  auto made = std::make_shared<int>(0);
  registry.add({"counted", "an undercomplete autoencoder that counts the models made",
                [made, undercomplete](OptionReader& r, const DataSpec& data, const Registry& from) -> ModelMaker {
                  const ModelMaker make = undercomplete.build(r, data, from);
                  return [made, make] {
                    ++*made;
                    return make();
                  };
                },
                undercomplete.layer_defaults});
  const Json section = {{"family", "stacked"},
                        {"layers", {{{"units", 6}, {"family", "counted"}}, {{"units", 3}, {"family", "counted"}}}}};
  const BuiltModel built = build_model(section, kSpec, registry);
  EXPECT_EQ(*made, 2);
  EXPECT_EQ(built.model->code_size(), 3);
  EXPECT_EQ(built.resolved["layers"][1]["family"], "counted");
  EXPECT_THROW(build_model(section, kSpec), Error);  // the built-in registry has no "counted"
}

TEST_F(StackedTest, PhasesCanBeSwitchedOff) {
  auto phases_of = [](const Json& section) {
    const StagedTrainer pretrainer(build_stack(section), small_options());
    std::vector<std::string> phases;
    for (const auto& stage : pretrainer.stages()) phases.push_back(stage.phase);
    return phases;
  };
  EXPECT_EQ(phases_of(small_stack(false, false, true)), (std::vector<std::string>{"classify"}));
  EXPECT_EQ(phases_of(small_stack(true, false, false)), (std::vector<std::string>{"pretrain", "pretrain"}));
  EXPECT_EQ(phases_of(small_stack(false, true, false)), (std::vector<std::string>{"finetune"}));
  try {
    build_stack(small_stack(false, false, false));
    FAIL() << "a stack with every phase off was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every phase is off"), std::string::npos) << e.what();
  }
}

// Layer 2 trains on layer 1's codes, computed once: the same as training a fresh copy of the
// layer by hand on `encode_dataset` of layer 1, and layer 1 does not move meanwhile.
TEST_F(StackedTest, UpperLayersTrainOnCachedCodesOfTheLayersBelow) {
  const Dataset train = labeled_data(64, 1), validation = labeled_data(16, 2);
  Stacked stack = build_stack(small_stack(true, false, false), 5);
  Stacked twin = build_stack(small_stack(true, false, false), 5);
  StagedTrainer pretrainer(stack, small_options());
  torch::Tensor layer1_before_layer2;
  pretrainer.on_epoch_end([&](const StagePlan& stage, const EpochRecord& record) {
    if (stage.layer == 1 && record.epoch == 2) {
      layer1_before_layer2 = stack->layers()[0]->module().parameters()[0].clone();
    }
    if (stage.layer == 2) EXPECT_EQ(stage.model.get(), stack->layers()[1].get());
  });
  // The twin's layers, trained one by one by the generic trainer; the global generator is set
  // to where the pretrainer's stands at each stage.
  torch::manual_seed(11);
  pretrainer.fit(train, validation);

  torch::manual_seed(11);
  TrainOptions first = small_options(), second = small_options();
  first.epochs = 2;
  second.epochs = 3;
  second.lr = 0.005;
  Trainer(twin->layers()[0], first).fit(train, validation);
  const Dataset codes_train = encode_dataset(*twin->layers()[0], train);
  const Dataset codes_validation = encode_dataset(*twin->layers()[0], validation);
  EXPECT_EQ(codes_train.inputs.sizes(), (std::vector<int64_t>{64, 12}));
  Trainer(twin->layers()[1], second).fit(codes_train, codes_validation);

  expect_same_parameters(*stack, *twin);
  ASSERT_TRUE(layer1_before_layer2.defined());
  EXPECT_TRUE(torch::equal(layer1_before_layer2, stack->layers()[0]->module().parameters()[0]));
}

// The assembled model is the layers themselves: its parameters are theirs (the same tensors),
// it encodes through them in order and decodes in reverse, and a tied layer stays tied.
TEST_F(StackedTest, AssembledModelUsesThePretrainedLayersWeights) {
  Stacked stack = build_stack(small_stack(true, false, true));
  StagedTrainer(stack, small_options()).fit(labeled_data(64, 1), labeled_data(16, 2));
  stack->eval();
  const auto& layers = stack->layers();
  for (std::size_t l = 0; l < layers.size(); ++l) {
    for (const auto& p : layers[l]->module().named_parameters()) {
      // A copy: the dictionary named_parameters() returns is a temporary.
      const torch::Tensor mine = stack->named_parameters()[fmt::format("layer{}.{}", l + 1, p.key())];
      EXPECT_EQ(mine.data_ptr(), p.value().data_ptr()) << p.key();
    }
  }
  // The tied layer has no decoder weight of its own.
  EXPECT_FALSE(stack->named_parameters().contains("layer2.decoder.layer0.weight"));
  EXPECT_TRUE(stack->named_parameters().contains("layer2.decoder_bias0"));

  torch::NoGradGuard no_grad;
  const torch::Tensor x = labeled_data(7, 3).inputs;
  const torch::Tensor code = layers[1]->encode(layers[0]->encode(x));
  EXPECT_TRUE(torch::equal(stack->encode(x), code));
  const torch::Tensor w2 = layers[1]->module().named_parameters()["encoder.layer0.weight"];
  const torch::Tensor b2 = layers[1]->module().named_parameters()["decoder_bias0"];
  const torch::Tensor h1 = torch::sigmoid(code.mm(w2) + b2);  // W^T applied to the code
  test::expect_tensors_near(stack->decode(code), layers[0]->decode(h1), 1e-6);
  test::expect_tensors_near(stack->forward(x).reconstruction, layers[0]->decode(h1), 1e-6);
  EXPECT_EQ(stack->classify(x).sizes(), (std::vector<int64_t>{7, 3}));
}

// The classifier phase learns the labels: three brightness bands, told apart on held-out data.
TEST_F(StackedTest, ClassifierPhaseLearnsTheLabels) {
  Json section = small_stack(true, false, true);
  section["classify_epochs"] = 15;
  section["classify_lr"] = 0.01;
  Stacked stack = build_stack(section);
  StagedTrainer(stack, small_options()).fit(labeled_data(192, 1), labeled_data(64, 2));
  stack->eval();
  const Dataset test = labeled_data(300, 3);
  const double accuracy = classification_accuracy([&](const torch::Tensor& x) { return stack->classify(x); }, test);
  EXPECT_GT(accuracy, 0.9);
}

// Interrupted inside layer 2's pretraining, or inside the classifier phase, then resumed from
// the checkpoint by a fresh process's worth of objects: the same weights and log as a run
// that never stopped.
TEST_F(StackedTest, ResumesExactlyFromInsideAnyPhase) {
  const Dataset train = labeled_data(64, 1), validation = labeled_data(32, 2);
  TempDir whole_run;
  torch::manual_seed(3);
  Stacked reference = build_stack(small_stack(), 9);
  StagedTrainer(reference, small_options(), whole_run.path()).fit(train, validation);

  struct Interruption {};
  for (const auto& [phase, layer, epoch] :
       std::vector<std::tuple<std::string, int64_t, int64_t>>{{"pretrain", 2, 1}, {"pretrain", 1, 2}, {"classify", 0, 1}}) {
    SCOPED_TRACE(fmt::format("interrupted after {} layer {} epoch {}", phase, layer, epoch));
    TempDir dir;
    torch::manual_seed(3);
    {
      StagedTrainer first(build_stack(small_stack(), 9), small_options(), dir.path());
      first.on_epoch_end([&, phase = phase, layer = layer, epoch = epoch](const StagePlan& s, const EpochRecord& r) {
        if (s.phase == phase && s.layer == layer && r.epoch == epoch) throw Interruption{};
      });
      EXPECT_THROW(first.fit(train, validation), Interruption);
    }
    torch::manual_seed(12345);  // the resumed run takes its generator state from the checkpoint
    Stacked resumed = build_stack(small_stack(), 77);
    StagedTrainer second(resumed, small_options(), dir.path());
    ASSERT_TRUE(second.resume());
    second.fit(train, validation);
    expect_same_parameters(*resumed, *reference);
    EXPECT_EQ(metrics_without_timings(dir.path()), metrics_without_timings(whole_run.path()));
  }
}

TEST_F(StackedTest, CheckpointOfAnotherStageIsRefused) {
  TempDir dir;
  StagedTrainer(build_stack(small_stack()), small_options(), dir.path())
      .fit(labeled_data(32, 1), labeled_data(16, 2));
  // The same directory read as a stack with fewer stages.
  StagedTrainer fewer(build_stack(small_stack(false, true, false)), small_options(), dir.path());
  try {
    fewer.resume();
    FAIL() << "a checkpoint of stage 4 was accepted by a run of 1 stage";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("written in stage 4, but this run has 1 stages"), std::string::npos)
        << e.what();
  }
}

TEST_F(StackedTest, ConfigurationErrorsNameTheLayerAndKey) {
  auto error_of = [](Json section) {
    section["family"] = "stacked";
    try {
      build_model(section, kSpec);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of({{"layers", Json::array()}}).find("config: model.layers: expected a non-empty list of layers"),
            std::string::npos);
  EXPECT_EQ(error_of({}), "(no error)") << "no layers: the default stack";
  EXPECT_NE(error_of({{"layers", {{{"family", "denoising"}}}}}).find("config: model.layers[0].units: required"),
            std::string::npos);
  EXPECT_NE(error_of({{"layers", {{{"units", 4}}, {{"units", 3}, {"family", "vae"}}}}})
                .find("config: model.layers[1].family: expected one of undercomplete, dropout, sparse, ksparse"),
            std::string::npos);
  EXPECT_NE(error_of({{"layers", {{{"units", 4}, {"noise", 0.1}}}}}).find("config: model.layers[0].noise: unknown key"),
            std::string::npos);
  EXPECT_NE(error_of({{"layers", {{{"units", 4}, {"code_size", 3}}}}})
                .find("config: model.layers[0].code_size: a layer's code width is its units"),
            std::string::npos);
  EXPECT_EQ(error_of({{"layers", {{{"units", 4}}}}}), "(no error)");
}

// Upper layers get defaults that fit what they see: sigmoid codes below give a sigmoid output
// with cross-entropy; a linear code below (ksparse) a linear output with squared error.
TEST_F(StackedTest, LayerDefaultsFollowTheRangeOfTheCodesBelow) {
  const Json section = {{"family", "stacked"},
                        {"layers", {{{"units", 10}, {"family", "ksparse"}, {"k", 3}}, {{"units", 4}}, {{"units", 3}}}}};
  const Json resolved = build_model(section, kSpec).resolved["layers"];
  EXPECT_EQ(resolved[0]["loss"], "bce");
  EXPECT_EQ(resolved[0]["code_activation"], "identity");
  EXPECT_EQ(resolved[1]["loss"], "mse");
  EXPECT_EQ(resolved[1]["output_activation"], "identity");
  EXPECT_EQ(resolved[1]["code_activation"], "sigmoid");
  EXPECT_EQ(resolved[2]["loss"], "bce");
  EXPECT_EQ(resolved[2]["hidden"], Json::array());
  // The resolved section builds the same model again.
  Json again = build_model(section, kSpec).resolved;
  EXPECT_EQ(build_model(again, kSpec).resolved, again);
}

TEST_F(StackedTest, ExportsClassifyAndItMatches) {
  Stacked stack = build_stack(small_stack());
  StagedTrainer(stack, small_options()).fit(labeled_data(48, 1), labeled_data(16, 2));
  TempDir dir;
  const torch::Tensor x = labeled_data(10, 4).inputs;
  save_torchscript(to_torchscript(*stack, x), {{"family", "stacked"}}, dir.path() / "model.pt");
  torch::jit::Module loaded = torch::jit::load((dir.path() / "model.pt").string());
  torch::NoGradGuard no_grad;
  stack->eval();
  const torch::Tensor y = labeled_data(6, 5).inputs;
  test::expect_tensors_near(loaded.get_method("classify")({y}).toTensor(), stack->classify(y), kExportTolerance);
  test::expect_tensors_near(loaded.get_method("encode")({y}).toTensor(), stack->encode(y), kExportTolerance);
  test::expect_tensors_near(loaded.forward({y}).toTensor(), stack->forward(y).reconstruction, kExportTolerance);
}

TEST(LinearProbe, SeparableFeaturesAreClassifiedAndNoiseIsNot) {
  torch::manual_seed(0);
  const Dataset train = labeled_data(600, 1), validation = labeled_data(200, 2), test = labeled_data(200, 3);
  const ProbeResult separable = linear_probe(train, validation, test);
  EXPECT_GT(separable.test, 0.95);
  EXPECT_GT(separable.train, 0.95);
  // Features that carry nothing of the label: chance (1/3) within sampling error.
  auto noise = [](const Dataset& d) { return Dataset{torch::rand({d.size(), 30}), d.labels}; };
  const ProbeResult chance = linear_probe(noise(train), noise(validation), noise(test));
  EXPECT_LT(chance.test, 0.45);
}

}  // namespace
}  // namespace torchae
