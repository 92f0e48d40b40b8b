// Semantic hashing: binary code layers, the tie-aware retrieval metrics, the classical hashing
// baselines (LSH, PCA hashing, ITQ), the index file and the Hamming search.

#include "test_tools.h"

#include "torchae/core/error.h"
#include "torchae/core/io.h"
#include "torchae/eval/metrics.h"
#include "torchae/eval/retrieval.h"
#include "torchae/hashing/index.h"
#include "torchae/models/registry.h"
#include "torchae/nn/binary_code.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <numeric>

namespace torchae {
namespace {

using test::expect_refused;
using test::TempDir;
using test::TorchaeTest;

const DataSpec kSpec{{1, 6, 5}, 0, 1, 1};

// ---- binary code layers -------------------------------------------------------------------

TEST_F(TorchaeTest, BinaryCodeNoiseIsAFixedGaussianFunctionOfEachExample) {
  BinaryCodeLayer layer(BinaryCodeOptions().kind(BinaryCode::noise).noise(4.0));
  const torch::Tensor x = torch::rand({4000, 30});
  const torch::Tensor noise = layer.example_noise(x, 16);
  // The same examples in another batch, in another order, among others: the same noise.
  const torch::Tensor order = torch::randperm(4000).narrow(0, 0, 700);
  const torch::Tensor again = layer.example_noise(torch::cat({torch::rand({3, 30}), x.index_select(0, order)}), 16);
  test::expect_tensors_near(again.narrow(0, 3, 700), noise.index_select(0, order), 1e-5);
  // A fresh layer (a resumed run) draws the same map from the seed; another seed another map.
  BinaryCodeLayer fresh(layer.options);
  test::expect_tensors_near(fresh.example_noise(x, 16), noise, 1e-5);
  BinaryCodeLayer other(BinaryCodeOptions().kind(BinaryCode::noise).seed(7));
  EXPECT_GT((other.example_noise(x, 16) - noise).abs().mean().item<double>(), 1.0);
  // N(0, 16) over examples and units, units uncorrelated, an all-zero example not special.
  EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.1);
  EXPECT_NEAR(noise.std().item<double>(), 4.0, 0.1);
  const torch::Tensor z = (noise - noise.mean(0)) / noise.std(0);
  const torch::Tensor correlation = z.t().mm(z) / 3999.0 - torch::eye(16);
  EXPECT_LT(correlation.abs().max().item<double>(), 0.1);
  const torch::Tensor kurtosis = z.pow(4).mean(0);
  EXPECT_LT((kurtosis - 3.0).abs().max().item<double>(), 0.5);
  EXPECT_LT(layer.example_noise(torch::zeros({1, 30}), 16).abs().max().item<double>(), 20.0);
  // A key that requires grad (a stack's lower code) gives noise without a gradient.
  EXPECT_FALSE(layer.example_noise(x.clone().requires_grad_(), 16).requires_grad());
}

TEST_F(TorchaeTest, BinaryCodeTrainsThroughNoisySigmoidOrStraightThroughSign) {
  const torch::Tensor key = torch::rand({50, 10});
  const torch::Tensor a = torch::randn({50, 8}) * 2;
  BinaryCodeLayer noisy(BinaryCodeOptions().kind(BinaryCode::noise).noise(3.0));
  test::expect_tensors_near(noisy.forward(a, key, /*training=*/true), torch::sigmoid(a + noisy.example_noise(key, 8)),
                            1e-6);
  EXPECT_TRUE(torch::equal(noisy.forward(a, key, false), a.gt(0).to(torch::kFloat)));
  EXPECT_TRUE(torch::equal(noisy.relaxed(a), torch::sigmoid(a)));
  EXPECT_TRUE(torch::equal(BinaryCodeLayer(BinaryCodeOptions().kind(BinaryCode::sign)).relaxed(a), a));

  BinaryCodeLayer sign(BinaryCodeOptions().kind(BinaryCode::sign));
  const torch::Tensor leaf = a.clone().requires_grad_();
  const torch::Tensor code = sign.forward(leaf, key, /*training=*/true);
  EXPECT_TRUE(torch::equal(code.detach(), a.gt(0).to(torch::kFloat) * 2 - 1));
  const torch::Tensor upstream = torch::randn({50, 8});
  code.backward(upstream);
  // The straight-through gradient: the identity's.
  test::expect_tensors_near(leaf.grad(), upstream, 1e-7);
  EXPECT_TRUE(torch::equal(sign.forward(a, key, false), code.detach()));
  EXPECT_TRUE(torch::equal(binary_code_bits(a), a.gt(0).to(torch::kUInt8)));
}

TEST_F(TorchaeTest, BinaryCodeModelsHashTheSignsOfTheirCodeInput) {
  for (const std::string kind : {"noise", "sign"}) {
    const std::string code_activation = kind == "noise" ? "sigmoid" : "identity";
    std::vector<Json> sections{
        {{"family", "undercomplete"}, {"code_size", 7}, {"hidden", {12}}, {"binary_code", kind}},
        {{"family", "denoising"}, {"code_size", 7}, {"binary_code", kind}},
        {{"family", "stacked"},
         {"layers", {{{"units", 9}}, {{"units", 7}, {"binary_code", kind}, {"code_activation", code_activation}}}}}};
    // The KL sparsity penalty needs a code in [0, 1]: the logistic units of the noisy code.
    if (kind == "noise")
      sections.push_back({{"family", "sparse"}, {"code_size", 7}, {"binary_code", kind}, {"penalty", "kl"}});
    for (const Json& section : sections) {
      SCOPED_TRACE(section.dump());
      auto model = build_model(section, kSpec).model;
      auto* hashing = dynamic_cast<Hashing*>(model.get());
      ASSERT_NE(hashing, nullptr);
      EXPECT_EQ(hashing->hash_bits(), 7);
      model->module().eval();
      torch::NoGradGuard no_grad;
      const torch::Tensor x = torch::rand({20, 1, 6, 5});
      const torch::Tensor bits = hashing->hash(x);
      EXPECT_EQ(bits.scalar_type(), torch::kUInt8);
      const torch::Tensor code = model->encode(x);
      // In eval mode the code is the bits themselves, as 0/1 or -1/+1.
      const torch::Tensor expected = kind == "noise" ? bits.to(torch::kFloat) : bits.to(torch::kFloat) * 2 - 1;
      EXPECT_TRUE(torch::equal(code, expected));
      const torch::Tensor relaxed = hashing->relaxed_code(x);
      EXPECT_TRUE(torch::equal(relaxed.gt(kind == "noise" ? 0.5 : 0.0).to(torch::kUInt8), bits));
      // Training mode: the noisy code is not binary, and the loss reaches every parameter.
      model->module().train();
      torch::GradMode::set_enabled(true);
      const Output out = model->forward(x);
      model->loss(x, out).total.backward();
      for (const auto& p : model->module().parameters()) EXPECT_TRUE(p.grad().defined());
      torch::GradMode::set_enabled(false);
    }
  }
  auto plain = build_model(Json{{"family", "undercomplete"}, {"code_size", 4}}, kSpec).model;
  EXPECT_EQ(dynamic_cast<Hashing*>(plain.get())->hash_bits(), 0);
  EXPECT_THROW(dynamic_cast<Hashing*>(plain.get())->hash(torch::rand({2, 1, 6, 5})), c10::Error);
}

TEST_F(TorchaeTest, BinaryCodeOptionsThatCannotWorkAreRefusedByName) {
  expect_refused({{"family", "undercomplete"}, {"binary_code", "bits"}}, kSpec, "model.binary_code");
  expect_refused({{"family", "undercomplete"}, {"binary_code", "noise"}, {"code_activation", "relu"}}, kSpec,
                 "model.code_activation");
  expect_refused({{"family", "undercomplete"}, {"binary_code", "sign"}, {"code_activation", "sigmoid"}}, kSpec,
                 "model.code_activation");
  expect_refused({{"family", "undercomplete"}, {"code_noise", 2}}, kSpec, "model.code_noise");
  expect_refused({{"family", "undercomplete"}, {"binary_code", "noise"}, {"code_noise", 0}}, kSpec, "model.code_noise");
  expect_refused({{"family", "undercomplete"}, {"binary_code", "sign"}, {"linear", true}}, kSpec, "model.binary_code");
  expect_refused(
      {{"family", "undercomplete"}, {"binary_code", "sign"}, {"backbone", "conv"}, {"code_size", 0}, {"strides", {1}}},
      kSpec, "model.binary_code");
  for (const char* family : {"ksparse", "contractive", "wae"}) {
    expect_refused({{"family", family}, {"binary_code", "noise"}}, kSpec, "model.binary_code");
  }
}

// ---- retrieval metrics --------------------------------------------------------------------

// Average precision, AP@k and precision@k of one ranking, by their definitions.
struct RankingScores {
  double ap = 0, ap_at = 0, precision_at = 0;
};
RankingScores score_ranking(const std::vector<int>& relevant, int64_t map_k, int64_t precision_k) {
  const int64_t total = std::accumulate(relevant.begin(), relevant.end(), int64_t{0});
  RankingScores s;
  int64_t found = 0;
  for (std::size_t i = 0; i < relevant.size(); ++i) {
    found += relevant[i];
    const double precision = static_cast<double>(found) / static_cast<double>(i + 1);
    if (relevant[i]) {
      s.ap += precision;
      if (static_cast<int64_t>(i) < map_k) s.ap_at += precision;
    }
    if (static_cast<int64_t>(i) + 1 == std::min<int64_t>(precision_k, relevant.size())) s.precision_at = precision;
  }
  s.ap /= static_cast<double>(total);
  s.ap_at /= static_cast<double>(std::min(map_k, total));
  return s;
}

TEST_F(TorchaeTest, TieAwareMetricsAreTheirMeanOverEveryOrderOfTiedItems) {
  // One query, 9 database items at Hamming distances with ties; relevant = same label.
  const std::vector<int64_t> distance{2, 0, 2, 1, 2, 0, 3, 1, 2};
  const std::vector<int> relevant{1, 0, 0, 1, 1, 1, 0, 0, 1};
  const int64_t bits = 3, map_k = 4, precision_k = 5;
  // Every order of the tied items: the items sorted by distance, each group permuted.
  std::vector<int64_t> items(distance.size());
  std::iota(items.begin(), items.end(), 0);
  std::sort(items.begin(), items.end(), [&](int64_t a, int64_t b) { return distance[a] < distance[b]; });
  RankingScores mean;
  int64_t orders = 0;
  auto next_order = [&]() {
    // The next permutation of the last group that has one, earlier groups reset: an odometer.
    for (auto end = items.end(); end != items.begin();) {
      auto begin = end - 1;
      while (begin != items.begin() && distance[*(begin - 1)] == distance[*begin]) --begin;
      if (std::next_permutation(begin, end)) return true;
      end = begin;
    }
    return false;
  };
  for (auto group = items.begin(); group != items.end();) {  // each group in its first order
    auto end = std::find_if(group, items.end(), [&](int64_t i) { return distance[i] != distance[*group]; });
    std::sort(group, end);
    group = end;
  }
  do {
    std::vector<int> ranking;
    for (const int64_t i : items) ranking.push_back(relevant[i]);
    const RankingScores s = score_ranking(ranking, map_k, precision_k);
    mean.ap += s.ap;
    mean.ap_at += s.ap_at;
    mean.precision_at += s.precision_at;
    ++orders;
  } while (next_order());
  EXPECT_EQ(orders, 2 * 2 * 24 * 1);  // groups of 2, 2, 4 and 1

  HammingHistograms h{torch::zeros({1, bits + 1}, torch::kInt64), torch::zeros({1, bits + 1}, torch::kInt64)};
  for (std::size_t i = 0; i < distance.size(); ++i) {
    h.counts[0][distance[i]] += 1;
    h.relevant[0][distance[i]] += relevant[i];
  }
  const RetrievalMetrics m = hamming_retrieval_metrics(h, map_k, precision_k, /*radius=*/1);
  EXPECT_NEAR(m.map, mean.ap / static_cast<double>(orders), 1e-12);
  EXPECT_NEAR(m.map_at_cutoff, mean.ap_at / static_cast<double>(orders), 1e-12);
  EXPECT_NEAR(m.precision_at_cutoff, mean.precision_at / static_cast<double>(orders), 1e-12);
  // Within radius 1: items 1, 5 (distance 0) and 3, 7 (distance 1), of which 5 and 3 are relevant.
  EXPECT_DOUBLE_EQ(m.precision_within_radius, 0.5);
  EXPECT_DOUBLE_EQ(m.empty_within_radius, 0.0);
  // The precision-recall curve, radius by radius: precision 1/2, 2/4, 5/8, 5/9; recall of 5 relevant.
  ASSERT_EQ(m.curve_precision.size(), 4u);
  EXPECT_DOUBLE_EQ(m.curve_precision[0], 0.5);
  EXPECT_DOUBLE_EQ(m.curve_precision[1], 0.5);
  EXPECT_DOUBLE_EQ(m.curve_precision[2], 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(m.curve_precision[3], 5.0 / 9.0);
  EXPECT_DOUBLE_EQ(m.curve_recall[0], 1.0 / 5.0);
  EXPECT_DOUBLE_EQ(m.curve_recall[1], 2.0 / 5.0);
  EXPECT_DOUBLE_EQ(m.curve_recall[2], 1.0);
}

TEST_F(TorchaeTest, HammingAndEuclideanRankingsAgreeWhereThereAreNoTies) {
  // Distinct 1-D points: Euclidean distance to 0 ranks them; a unary code of the same order
  // gives a Hamming ranking without ties, whose metrics must be the plain ones.
  const int64_t n = 40;
  const torch::Tensor labels = torch::randint(0, 3, {n}, torch::kInt64);
  const torch::Tensor positions = torch::arange(1, n + 1, torch::kFloat).unsqueeze(1);
  const torch::Tensor query = torch::zeros({1, 1});
  const torch::Tensor query_label = torch::tensor({int64_t{1}});
  const RetrievalMetrics e = euclidean_retrieval_metrics(query, query_label, positions, labels, 7, 9);
  // Item i's unary code has i + 1 ones: Hamming distance i + 1 to the all-zero query.
  torch::Tensor codes = torch::zeros({n, n}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) codes[i].narrow(0, 0, i + 1).fill_(1);
  const HammingHistograms h =
      hamming_histograms(pack_bits(torch::zeros({1, n}, torch::kUInt8)), query_label, pack_bits(codes), labels, n);
  const RetrievalMetrics m = hamming_retrieval_metrics(h, 7, 9, 2);
  std::vector<int> ranking;
  for (int64_t i = 0; i < n; ++i) ranking.push_back(labels[i].item<int64_t>() == 1);
  const RankingScores s = score_ranking(ranking, 7, 9);
  for (const RetrievalMetrics& r : {e, m}) {
    EXPECT_NEAR(r.map, s.ap, 1e-6);
    EXPECT_NEAR(r.map_at_cutoff, s.ap_at, 1e-6);
    EXPECT_NEAR(r.precision_at_cutoff, s.precision_at, 1e-6);
  }
}

TEST_F(TorchaeTest, PackedCodesAndTheirHammingDistancesAreExact) {
  for (const int64_t bits : {1, 31, 63, 64, 65, 130}) {
    SCOPED_TRACE(bits);
    const torch::Tensor a = torch::randint(0, 2, {37, bits}, torch::kUInt8);
    const torch::Tensor b = torch::randint(0, 2, {23, bits}, torch::kUInt8);
    const torch::Tensor packed = pack_bits(a);
    EXPECT_EQ(packed.size(1), (bits + 63) / 64);
    EXPECT_TRUE(torch::equal(unpack_bits(packed, bits), a));
    const torch::Tensor expected = a.unsqueeze(1).ne(b.unsqueeze(0)).sum(2);
    EXPECT_TRUE(torch::equal(hamming_distances(packed, pack_bits(b)).to(torch::kInt64), expected));
    const torch::Tensor la = torch::randint(0, 4, {37}, torch::kInt64), lb = torch::randint(0, 4, {23}, torch::kInt64);
    const HammingHistograms h = hamming_histograms(packed, la, pack_bits(b), lb, bits);
    const torch::Tensor one_hot = torch::one_hot(expected, bits + 1);
    EXPECT_TRUE(torch::equal(h.counts, one_hot.sum(1)));
    EXPECT_TRUE(torch::equal(h.relevant, (one_hot * la.view({-1, 1, 1}).eq(lb.view({1, -1, 1}))).sum(1)));
  }
}

// ---- the classical baselines --------------------------------------------------------------

TEST_F(TorchaeTest, ItqLowersTheQuantizationLossOfPcaHashingByARotation) {
  // Correlated data with a few dominant directions.
  const torch::Tensor x = torch::randn({3000, 6}).mm(torch::randn({6, 20})) + 0.1 * torch::randn({3000, 20}) + 3.0;
  const LinearHash pca = LinearHash::pca(x, 4);
  const PCA reference = PCA::fit(x, 4);
  EXPECT_TRUE(
      torch::equal(pca.hash(x), binary_code_bits((x.to(torch::kFloat64) - reference.mean).mm(reference.components))));
  std::vector<double> losses;
  const LinearHash itq = LinearHash::itq(x, 4, 3, 50, &losses);
  ASSERT_EQ(losses.size(), 50u);
  for (std::size_t i = 1; i < losses.size(); ++i) EXPECT_LE(losses[i], losses[i - 1] * (1 + 1e-12) + 1e-9);
  // The rotation keeps the projection orthonormal, spanning the PCA subspace.
  test::expect_tensors_near(itq.projection.t().mm(itq.projection), torch::eye(4, torch::kFloat64), 1e-9);
  EXPECT_LT(largest_principal_angle_degrees(itq.projection, reference.components), 1e-4);
  // ITQ's loss ends below PCA hashing's (its rotation is the identity).
  const torch::Tensor v = (x.to(torch::kFloat64) - reference.mean).mm(reference.components);
  const double pca_loss = (v.gt(0).to(torch::kFloat64) * 2 - 1 - v).pow(2).sum().item<double>();
  EXPECT_LT(losses.back(), pca_loss);
  // LSH: seeded, one bit per random hyperplane through the mean.
  EXPECT_TRUE(torch::equal(LinearHash::lsh(x, 8, 5).hash(x), LinearHash::lsh(x, 8, 5).hash(x)));
  const torch::Tensor ones = LinearHash::lsh(x, 8, 5).hash(x).to(torch::kFloat).mean(0);
  EXPECT_GT(ones.min().item<double>(), 0.1);
}

// ---- the index and the search -------------------------------------------------------------

HashIndex random_index(int64_t n, int64_t bits) {
  HashIndex index;
  index.bits = bits;
  index.model_fingerprint = 0x1234abcd5678ef90ull;
  index.codes = pack_bits(torch::randint(0, 2, {n, bits}, torch::kUInt8));
  index.labels = torch::randint(-1, 10, {n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) index.names.push_back(fmt::format("item-{}-é", i));
  return index;
}

TEST_F(TorchaeTest, IndexFilesRoundTripAndRefuseEveryKindOfDamageByName) {
  TempDir dir;
  const HashIndex index = random_index(50, 70);
  write_index(index, dir / "a.index");
  const HashIndex back = read_index(dir / "a.index");
  EXPECT_EQ(back.bits, 70);
  EXPECT_EQ(back.model_fingerprint, index.model_fingerprint);
  EXPECT_TRUE(torch::equal(back.codes, index.codes));
  EXPECT_TRUE(torch::equal(back.labels, index.labels));
  EXPECT_EQ(back.names, index.names);

  // The format as documented, written by another program (the fuzz seed, made in Python).
  const HashIndex seed = read_index(std::filesystem::path(TORCHAE_SOURCE_DIR) / "tests/fuzz/corpus/hash_index/small.index");
  EXPECT_EQ(seed.bits, 70);
  EXPECT_EQ(seed.model_fingerprint, 0x1234abcdull);
  EXPECT_TRUE(torch::equal(seed.labels, torch::tensor(std::vector<int64_t>{-1, 0, 1})));
  EXPECT_EQ(seed.names, (std::vector<std::string>{"item-0", "item-1", "item-2"}));

  const std::string bytes = read_text(dir / "a.index");
  auto expect_error = [&](const std::string& content, const std::string& fragment) {
    write_text_atomically(dir / "bad.index", content);
    try {
      read_index(dir / "bad.index");
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("bad.index"), std::string::npos) << what;
      EXPECT_NE(what.find(fragment), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  };
  // Every truncation: in the header, the codes, the labels, the names, the checksum.
  for (std::size_t length : {std::size_t{0}, std::size_t{5}, std::size_t{20}, std::size_t{39}, std::size_t{41},
                             std::size_t{500}, std::size_t{1300}, bytes.size() - 30, bytes.size() - 1}) {
    expect_error(bytes.substr(0, length), length < 8 ? "truncated" : "truncated");
  }
  std::string flipped = bytes;
  flipped[200] ^= 0x10;
  expect_error(flipped, "checksum");
  expect_error("NOTINDEX" + bytes.substr(8), "not a torchae index");
  std::string version = bytes;
  version[8] = 9;
  expect_error(version, "version 9");
  std::string huge = bytes;
  huge[16 + 6] = 0x7f;  // count: far more codes than the file holds
  expect_error(huge, "announces");
  expect_error(bytes + "x", "after its end");
  EXPECT_THROW(read_index(dir / "missing.index"), Error);
}

TEST_F(TorchaeTest, HammingSearchReturnsTheNearestCodesInIndexOrderOfTies) {
  const int64_t n = 5000, bits = 20;
  const torch::Tensor codes = torch::randint(0, 2, {n, bits}, torch::kUInt8);
  const torch::Tensor query = torch::randint(0, 2, {1, bits}, torch::kUInt8);
  const torch::Tensor distance = codes.ne(query).sum(1);
  // Sorted by (distance, index): the reference order.
  const torch::Tensor order = std::get<1>(torch::sort(distance * n + torch::arange(n), /*dim=*/0));
  for (const int64_t k : {1, 10, 137}) {
    const auto found = hamming_search(pack_bits(query)[0], pack_bits(codes), k);
    ASSERT_EQ(static_cast<int64_t>(found.size()), k);
    for (int64_t r = 0; r < k; ++r) {
      EXPECT_EQ(found[r].item, order[r].item<int64_t>());
      EXPECT_EQ(found[r].distance, distance[found[r].item].item<int64_t>());
    }
  }
  const int64_t radius = distance.min().item<int64_t>() + 1;
  const auto within = hamming_search(pack_bits(query)[0], pack_bits(codes), n, radius);
  EXPECT_EQ(static_cast<int64_t>(within.size()), distance.le(radius).sum().item<int64_t>());
  for (const Neighbour& nb : within) EXPECT_LE(nb.distance, radius);
}

// More codes than one piece of the scan (64 K), on one thread and on two; and a radius within
// which lie fewer than k, more of them at the radius than k leaves after the nearer ones.
TEST_F(TorchaeTest, HammingSearchIsTheSameOverPiecesAndThreadsAndKeepsAllWithinTheRadius) {
  const int64_t n = 200000, bits = 100;
  const torch::Tensor codes = torch::randint(0, 2, {n, bits}, torch::kUInt8);
  const torch::Tensor query = torch::randint(0, 2, {1, bits}, torch::kUInt8);
  const torch::Tensor distance = codes.ne(query).sum(1);
  const torch::Tensor order = std::get<1>(torch::sort(distance * n + torch::arange(n), /*dim=*/0));
  const int threads = at::get_num_threads();
  for (const int t : {1, 2}) {
    at::set_num_threads(t);
    for (const int64_t k : {1, 10, 1000}) {
      SCOPED_TRACE(::testing::Message() << t << " threads, k " << k);
      const auto found = hamming_search(pack_bits(query)[0], pack_bits(codes), k);
      ASSERT_EQ(static_cast<int64_t>(found.size()), k);
      for (int64_t r = 0; r < k; ++r) {
        ASSERT_EQ(found[r].item, order[r].item<int64_t>());
        ASSERT_EQ(found[r].distance, distance[found[r].item].item<int64_t>());
      }
    }
  }
  at::set_num_threads(threads);
  // Two codes equal to the query, then five at distance 1 spread over the pieces, the rest far.
  torch::Tensor near = query.repeat({n, 1}).bitwise_xor(torch::ones({n, bits}, torch::kUInt8));
  near[3].copy_(query[0]);
  near[70000].copy_(query[0]);
  for (const int64_t i : {5, 66000, 130000, 131000, 199999}) {
    near[i].copy_(query[0]);
    near.index_put_({i, i % bits}, 1 - query[0][i % bits].item<int64_t>());
  }
  const auto within = hamming_search(pack_bits(query)[0], pack_bits(near), 10, 1);
  ASSERT_EQ(within.size(), 7u);
  const std::vector<int64_t> expected{3, 70000, 5, 66000, 130000, 131000, 199999};
  for (std::size_t r = 0; r < expected.size(); ++r) {
    EXPECT_EQ(within[r].item, expected[r]);
    EXPECT_EQ(within[r].distance, r < 2 ? 0 : 1);
  }
  const auto nearest = hamming_search(pack_bits(query)[0], pack_bits(near), 4, 1);
  ASSERT_EQ(nearest.size(), 4u);
  EXPECT_EQ(nearest[3].item, 66000);
  // Codes wider than 1024 bits are refused, as before the scan had kernels of its own.
  EXPECT_THROW(hamming_search(torch::zeros({17}, torch::kInt64), torch::zeros({3, 17}, torch::kInt64), 1), c10::Error);
}

}  // namespace
}  // namespace torchae
