// The deep Boltzmann machine: its energy, partition function, variational bound and Gibbs
// sampler against enumeration, AIS against the exact log Z, the modified RBMs of its pretraining,
// its stages through to a classifier, and bad input.

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/eval/ais.h"
#include "torchae/export/export.h"
#include "torchae/models/dbm.h"
#include "torchae/models/registry.h"
#include "torchae/train/staged.h"

#include <cmath>

namespace torchae {
namespace {

using test::expect_tensors_near;
using test::TorchaeTest;

// Every binary vector of `n` units, [2^n, n].
torch::Tensor all_states(int64_t n) {
  const torch::Tensor bits = torch::pow(2, torch::arange(n, torch::kInt64));
  return torch::arange(int64_t{1} << n, torch::kInt64).unsqueeze(1).bitwise_and(bits).ne(0).to(torch::kFloat);
}

// A DBM over `visible` units with weights of deviation `scale` and random biases.
DBM random_dbm(int64_t visible, std::vector<int64_t> layers, double scale) {
  DBM dbm(DBMOptions({visible}, std::move(layers)));
  torch::NoGradGuard no_grad;
  for (auto& p : dbm->named_parameters()) p.value().normal_(0.0, p.key().find("weight") != std::string::npos ? scale : 0.5);
  return dbm;
}

// log p*(v) = log sum_h exp(-E(v, h)) for each visible state, and log Z, by enumeration, double.
std::pair<torch::Tensor, double> enumerate(DBM& dbm, int64_t visible) {
  const auto& widths = dbm->options.layers();
  int64_t hidden = 0;
  for (int64_t w : widths) hidden += w;
  const torch::Tensor v = all_states(visible), h = all_states(hidden);
  const int64_t nv = v.size(0), nh = h.size(0);
  std::vector<torch::Tensor> states{v.repeat_interleave(nh, 0)};
  int64_t at = 0;
  for (int64_t w : widths) {
    states.push_back(h.narrow(1, at, w).repeat({nv, 1}));
    at += w;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor log_joint = (-dbm->energy(states)).to(torch::kDouble).view({nv, nh});
  return {torch::logsumexp(log_joint, 1), torch::logsumexp(log_joint.flatten(), 0).item<double>()};
}

class DbmTest : public TorchaeTest {};

// The loss takes the data's and the chains' energies in one batch: its value and gradients are
// those of E(v, q).mean() - E(chains).mean() taken apart (a batch of 7 against the chains).
TEST_F(DbmTest, TheEnergyGapTakesBothTermsInOneBatch) {
  torch::manual_seed(5);
  DBM dbm = random_dbm(6, {4, 3}, 0.5);
  dbm->train();
  const torch::Tensor batch = (torch::rand({7, 6}) < 0.5).to(torch::kFloat);
  const Output out = dbm->forward(batch);
  ASSERT_TRUE(out.negative.defined() && out.positive.defined());
  ASSERT_NE(out.negative.size(0), batch.size(0));
  std::vector<torch::Tensor> data{out.input.defined() ? out.input.flatten(1) : batch};
  for (const torch::Tensor& q : out.positive.split_with_sizes({4, 3}, 1)) data.push_back(q);
  const std::vector<torch::Tensor> model = out.negative.split_with_sizes({6, 4, 3}, 1);
  const auto gradients = [&](const torch::Tensor& loss) {
    std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, dbm->parameters(), {}, /*retain_graph=*/true,
                                                             /*create_graph=*/false, /*allow_unused=*/true);
    for (auto& g : grads) {
      if (!g.defined()) g = torch::zeros({1});
    }
    grads.push_back(loss.detach());
    return grads;
  };
  const auto ours = gradients(dbm->loss(batch, out).total);
  const auto apart = gradients(dbm->energy(data).mean() - dbm->energy(model).mean());
  ASSERT_EQ(ours.size(), apart.size());
  for (std::size_t i = 0; i < ours.size(); ++i) test::expect_tensors_near(ours[i], apart[i], 1e-5);
}

TEST_F(DbmTest, PartitionFunctionBoundAndSamplerMatchEnumeration) {
  DBM dbm = random_dbm(4, {3, 2}, 1.0);
  const auto [log_marginal, log_z] = enumerate(dbm, 4);
  ASSERT_TRUE(dbm->exact_log_partition().has_value());
  EXPECT_NEAR(*dbm->exact_log_partition(), log_z, 1e-5);
  // The variational bound lies below log p*(v) for every v, and mean field makes it tight-ish.
  const torch::Tensor bound = dbm->log_unnormalized(all_states(4)).to(torch::kDouble);
  EXPECT_TRUE((bound <= log_marginal + 1e-5).all().item<bool>()) << bound << log_marginal;
  EXPECT_LT((log_marginal - bound).max().item<double>(), 1.0);
  // Block Gibbs sampling converges to p(v): 20,000 chains, 30 sweeps.
  torch::manual_seed(1);
  const torch::Tensor drawn = dbm->gibbs(dbm->random_visible(20000), 30);  // E[v | h_1]
  const torch::Tensor p_v = torch::softmax(log_marginal, 0);
  expect_tensors_near(drawn.mean(0).to(torch::kDouble), torch::mv(all_states(4).t().to(torch::kDouble), p_v), 0.02);
}

TEST_F(DbmTest, AisMatchesTheExactLogPartition) {
  DBM dbm = random_dbm(30, {8, 6}, 0.6);
  const double exact = *dbm->exact_log_partition();
  torch::manual_seed(2);
  const torch::Tensor data = torch::rand({500, 30});
  auto path = dbm->annealing_path(data);
  const AisEstimate estimate = ais_log_partition(*path, 3000, 100);
  EXPECT_NEAR(estimate.log_z, exact, 0.1) << "base " << path->base_log_partition();
}

TEST_F(DbmTest, PretrainsByModifiedRbmsThenTrainsThenClassifies) {
  const DataSpec spec{{1, 6, 5}, 0, 1, 1};
  auto built = build_model({{"family", "dbm"},
                            {"layers", {12, 10, 8}},
                            {"pretrain_epochs", 2},
                            {"classify", true},
                            {"classes", 3},
                            {"classify_epochs", 20},
                            {"classify_lr", 0.1}},
                           spec);
  auto& dbm = dynamic_cast<DBMImpl&>(*built.model);
  // The bottom RBM's input doubled on the way up, the top's on the way down, a middle one's both.
  ASSERT_EQ(dbm.layers().size(), 3u);
  EXPECT_EQ(dbm.layers()[0]->options.up_scale(), 2.0);
  EXPECT_EQ(dbm.layers()[0]->options.down_scale(), 1.0);
  EXPECT_EQ(dbm.layers()[1]->options.up_scale(), 2.0);
  EXPECT_EQ(dbm.layers()[1]->options.down_scale(), 2.0);
  EXPECT_EQ(dbm.layers()[2]->options.up_scale(), 1.0);
  EXPECT_EQ(dbm.layers()[2]->options.down_scale(), 2.0);
  std::vector<std::string> phases;
  for (const Stage& stage : dbm.stages()) phases.push_back(stage.phase);
  EXPECT_EQ(phases, (std::vector<std::string>{"pretrain", "pretrain", "pretrain", "train", "classify"}));

  // Images whose class (of 3) is their brightness band.
  auto labeled = [](int64_t n) {
    const torch::Tensor labels = torch::randint(3, {n}, torch::kLong);
    const torch::Tensor level = (labels.to(torch::kFloat) + 0.5) / 3.0;
    return Dataset{(level.view({n, 1, 1, 1}) + 0.1 * torch::randn({n, 1, 6, 5})).clamp(0, 1), labels};
  };
  const Dataset train = labeled(600), val = labeled(150);
  TrainOptions o = test::quiet_cpu_options(2);
  o.lr = 0.005;
  o.batch_size = 50;
  const torch::Tensor chains_before = dbm.named_buffers()["chain1"].clone();
  StagedTrainer(built.model, o).fit(train, val);
  EXPECT_FALSE(torch::equal(dbm.named_buffers()["chain1"], chains_before)) << "the persistent chains moved";
  // The classifier fine-tuned copies of the weights; the DBM's own stayed as the joint training left them.
  ASSERT_TRUE(dbm.has_classifier());
  const auto parameters = dbm.named_parameters();
  EXPECT_FALSE(torch::allclose(parameters["classifier_weight1"], parameters["layer1.encoder.weight"]));
  EXPECT_FALSE(parameters["layer1.encoder.weight"].grad().defined() &&
               parameters["layer1.encoder.weight"].grad().abs().sum().item<double>() > 0)
      << "the classifier's loss reached the DBM's weights";
  dbm.eval();
  const double accuracy =
      dbm.classify(val.inputs).argmax(1).eq(val.labels).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(accuracy, 0.8);
  // The exported classifier computes what the model does.
  torch::jit::Module archive = to_torchscript(dbm, val.inputs.narrow(0, 0, 8));
  torch::NoGradGuard no_grad;
  expect_tensors_near(archive.get_method("classify")({val.inputs}).toTensor(), dbm.classify(val.inputs), kExportTolerance);
  const torch::Tensor samples = archive.get_method("sample")({int64_t{5}}).toTensor();
  EXPECT_EQ(samples.sizes(), (std::vector<int64_t>{5, 1, 6, 5}));
}

TEST_F(DbmTest, BadInputIsRefusedNamingTheKey) {
  const DataSpec spec{{1, 6, 5}, 0, 1, 1};
  test::expect_refused({{"family", "dbm"}, {"layers", {8}}}, spec, "model.layers");
  test::expect_refused({{"family", "dbm"}, {"cd_k", 0}}, spec, "model.cd_k");
  test::expect_refused({{"family", "dbm"}, {"mean_field_steps", 0}}, spec, "model.mean_field_steps");
  test::expect_refused({{"family", "dbm"}}, DataSpec{{1, 6, 5}, -1, 1, 1}, "model.family");
}

}  // namespace
}  // namespace torchae
