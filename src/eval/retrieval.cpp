#include "torchae/eval/retrieval.h"

#include "torchae/core/error.h"
#include "torchae/core/parallel.h"
#include "torchae/eval/metrics.h"
#include "torchae/nn/binary_code.h"
#include "src/nn/kernels.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace torchae {

namespace {

// Codes of up to 1024 bits: enough for any code layer meant for hashing, and it keeps a
// distance in 16 bits and the inner loops over a handful of words.
constexpr int64_t kMaxWords = 16;

torch::Tensor cpu_contiguous(const torch::Tensor& t, torch::ScalarType type) {
  return t.to(torch::kCPU, type).contiguous();
}

void check_packed(const torch::Tensor& queries, const torch::Tensor& database) {
  TORCH_CHECK(queries.dim() == 2 && database.dim() == 2 && queries.size(1) == database.size(1),
              "hamming: expected packed codes [Q, W] and [N, W] of one width, got ", queries.sizes(), " and ",
              database.sizes());
  TORCH_CHECK(queries.size(1) >= 1 && queries.size(1) <= kMaxWords, "hamming: codes of 1 to ", kMaxWords * 64, " bits");
}

}  // namespace

torch::Tensor pack_bits(const torch::Tensor& bits) {
  TORCH_CHECK(bits.dim() == 2 && bits.size(1) >= 1, "pack_bits: expected 0/1 codes [N, bits], got ", bits.sizes());
  const torch::Tensor b = cpu_contiguous(bits.ne(0), torch::kUInt8);
  const int64_t n = b.size(0), width = b.size(1), words = (width + 63) / 64;
  torch::Tensor packed = torch::zeros({n, words}, torch::kInt64);
  const uint8_t* in = b.data_ptr<uint8_t>();
  auto* out = reinterpret_cast<uint64_t*>(packed.data_ptr<int64_t>());
  parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t j = 0; j < width; ++j) {
        out[i * words + j / 64] |= static_cast<uint64_t>(in[i * width + j]) << (j % 64);
      }
    }
  });
  return packed;
}

torch::Tensor unpack_bits(const torch::Tensor& words, int64_t bits) {
  TORCH_CHECK(words.dim() == 2 && words.size(1) * 64 >= bits && bits >= 1, "unpack_bits: ", words.sizes(),
              " does not hold ", bits, " bits a code");
  const torch::Tensor w = cpu_contiguous(words, torch::kInt64);
  torch::Tensor out = torch::empty({w.size(0), bits}, torch::kUInt8);
  const auto* in = reinterpret_cast<const uint64_t*>(w.data_ptr<int64_t>());
  uint8_t* o = out.data_ptr<uint8_t>();
  const int64_t n_words = w.size(1);
  for (int64_t i = 0; i < w.size(0); ++i) {
    for (int64_t j = 0; j < bits; ++j)
      o[i * bits + j] = static_cast<uint8_t>((in[i * n_words + j / 64] >> (j % 64)) & 1u);
  }
  return out;
}

torch::Tensor hamming_distances(const torch::Tensor& queries, const torch::Tensor& database) {
  check_packed(queries, database);
  const torch::Tensor q = cpu_contiguous(queries, torch::kInt64), db = cpu_contiguous(database, torch::kInt64);
  const int64_t words = q.size(1), n = db.size(0);
  torch::Tensor out = torch::empty({q.size(0), n}, torch::kInt16);
  const auto* qp = reinterpret_cast<const uint64_t*>(q.data_ptr<int64_t>());
  const auto* dp = reinterpret_cast<const uint64_t*>(db.data_ptr<int64_t>());
  int16_t* o = out.data_ptr<int16_t>();
  // Parallel over the database: a search has one query.
  for (int64_t i = 0; i < q.size(0); ++i) {
    parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
      kernels::hamming_distances(qp + i * words, dp, words, begin, end, o + i * n);
    });
  }
  return out;
}

HammingHistograms hamming_histograms(const torch::Tensor& queries, const torch::Tensor& query_labels,
                                     const torch::Tensor& database, const torch::Tensor& database_labels,
                                     int64_t bits) {
  check_packed(queries, database);
  TORCH_CHECK(bits >= 1 && bits <= queries.size(1) * 64, "hamming_histograms: ", bits, " bits in ", queries.size(1),
              " words");
  TORCH_CHECK(query_labels.numel() == queries.size(0) && database_labels.numel() == database.size(0),
              "hamming_histograms: one label per code");
  const torch::Tensor q = cpu_contiguous(queries, torch::kInt64), db = cpu_contiguous(database, torch::kInt64);
  const torch::Tensor ql = cpu_contiguous(query_labels, torch::kInt64),
                      dl = cpu_contiguous(database_labels, torch::kInt64);
  const int64_t words = q.size(1), n = db.size(0), buckets = bits + 1;
  HammingHistograms h{torch::zeros({q.size(0), buckets}, torch::kInt64),
                      torch::zeros({q.size(0), buckets}, torch::kInt64)};
  const auto* qp = reinterpret_cast<const uint64_t*>(q.data_ptr<int64_t>());
  const auto* dp = reinterpret_cast<const uint64_t*>(db.data_ptr<int64_t>());
  const int64_t* qlp = ql.data_ptr<int64_t>();
  const int64_t* dlp = dl.data_ptr<int64_t>();
  int64_t* counts = h.counts.data_ptr<int64_t>();
  int64_t* relevant = h.relevant.data_ptr<int64_t>();
  parallel_for(0, q.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      kernels::hamming_histogram(qp + i * words, dp, words, n, dlp, qlp[i], counts + i * buckets,
                                 relevant + i * buckets);
    }
  });
  return h;
}

RetrievalMetrics hamming_retrieval_metrics(const HammingHistograms& histograms, int64_t map_cutoff,
                                           int64_t precision_cutoff, int64_t radius) {
  TORCH_CHECK(map_cutoff >= 1 && precision_cutoff >= 1 && radius >= 0, "hamming_retrieval_metrics: bad cutoffs");
  const torch::Tensor counts = cpu_contiguous(histograms.counts, torch::kInt64);
  const torch::Tensor relevant = cpu_contiguous(histograms.relevant, torch::kInt64);
  TORCH_CHECK(counts.dim() == 2 && counts.sizes() == relevant.sizes() && counts.size(0) > 0,
              "hamming_retrieval_metrics: histograms [Q, bits + 1] of one shape");
  const int64_t queries = counts.size(0), buckets = counts.size(1);
  const int64_t n = counts[0].sum().item<int64_t>();
  TORCH_CHECK(n > 0, "hamming_retrieval_metrics: an empty database");
  // Harmonic numbers H_m = sum_{i <= m} 1/i: the sums over tied positions below are differences.
  std::vector<double> harmonic(static_cast<std::size_t>(n) + 1, 0.0);
  for (int64_t m = 1; m <= n; ++m) harmonic[m] = harmonic[m - 1] + 1.0 / static_cast<double>(m);
  // sum_{i=1..m} (a + b (i - 1)) / (before + i), written as (a - b (before + 1)) sum 1/(before + i) + b m.
  auto tied_sum = [&](double a, double b, int64_t before, int64_t m) {
    return (a - b * static_cast<double>(before + 1)) * (harmonic[before + m] - harmonic[before]) +
           b * static_cast<double>(m);
  };
  const int64_t precision_k = std::min(precision_cutoff, n);
  RetrievalMetrics out;
  std::vector<double> ball_retrieved(buckets, 0.0), ball_relevant(buckets, 0.0);
  double all_relevant = 0.0;
  int64_t scored = 0;
  const int64_t* c = counts.data_ptr<int64_t>();
  const int64_t* r = relevant.data_ptr<int64_t>();
  for (int64_t q = 0; q < queries; ++q, c += buckets, r += buckets) {
    int64_t total_relevant = 0;
    for (int64_t d = 0; d < buckets; ++d) total_relevant += r[d];
    all_relevant += static_cast<double>(total_relevant);
    double ap = 0.0, ap_cut = 0.0, relevant_in_top = 0.0;
    int64_t before = 0, relevant_before = 0;
    for (int64_t d = 0; d < buckets; ++d) {
      const int64_t items = c[d], hits = r[d];
      if (items > 0 && hits > 0) {
        // A relevant item lies at each position i of the tied group with probability hits/items;
        // given that, the expected relevant items before it in the group are (i-1)(hits-1)/(items-1).
        const double a = static_cast<double>(relevant_before + 1);
        const double b = items > 1 ? static_cast<double>(hits - 1) / static_cast<double>(items - 1) : 0.0;
        const double share = static_cast<double>(hits) / static_cast<double>(items);
        ap += share * tied_sum(a, b, before, items);
        const int64_t in_cut = std::clamp<int64_t>(map_cutoff - before, 0, items);
        if (in_cut > 0) ap_cut += share * tied_sum(a, b, before, in_cut);
        const int64_t in_top = std::clamp<int64_t>(precision_k - before, 0, items);
        relevant_in_top += share * static_cast<double>(in_top);
      }
      before += items;
      relevant_before += hits;
      ball_retrieved[d] += static_cast<double>(before);
      ball_relevant[d] += static_cast<double>(relevant_before);
    }
    int64_t ball = 0, ball_hits = 0;
    for (int64_t d = 0; d <= std::min(radius, buckets - 1); ++d) {
      ball += c[d];
      ball_hits += r[d];
    }
    out.precision_within_radius += ball > 0 ? static_cast<double>(ball_hits) / static_cast<double>(ball) : 0.0;
    out.empty_within_radius += ball == 0 ? 1.0 : 0.0;
    out.precision_at_cutoff += relevant_in_top / static_cast<double>(precision_k);
    // A query with nothing relevant has no average precision; it is left out of the means.
    if (total_relevant == 0) continue;
    ++scored;
    out.map += ap / static_cast<double>(total_relevant);
    out.map_at_cutoff += ap_cut / static_cast<double>(std::min(map_cutoff, total_relevant));
  }
  const auto nq = static_cast<double>(queries);
  out.map = scored > 0 ? out.map / static_cast<double>(scored) : 0.0;
  out.map_at_cutoff = scored > 0 ? out.map_at_cutoff / static_cast<double>(scored) : 0.0;
  out.precision_at_cutoff /= nq;
  out.precision_within_radius /= nq;
  out.empty_within_radius /= nq;
  for (int64_t d = 0; d < buckets; ++d) {
    out.curve_precision.push_back(ball_retrieved[d] > 0 ? ball_relevant[d] / ball_retrieved[d]
                                                        : std::numeric_limits<double>::quiet_NaN());
    out.curve_recall.push_back(all_relevant > 0 ? ball_relevant[d] / all_relevant : 0.0);
  }
  return out;
}

RetrievalMetrics euclidean_retrieval_metrics(const torch::Tensor& queries, const torch::Tensor& query_labels,
                                             const torch::Tensor& database, const torch::Tensor& database_labels,
                                             int64_t map_cutoff, int64_t precision_cutoff) {
  TORCH_CHECK(map_cutoff >= 1 && precision_cutoff >= 1, "euclidean_retrieval_metrics: bad cutoffs");
  TORCH_CHECK(queries.dim() == 2 && database.dim() == 2 && queries.size(1) == database.size(1) && database.size(0) > 0,
              "euclidean_retrieval_metrics: expected [Q, d] and [N, d]");
  torch::NoGradGuard no_grad;
  const torch::Tensor db = cpu_contiguous(database, torch::kFloat32);
  const torch::Tensor dl = cpu_contiguous(database_labels, torch::kInt64);
  const torch::Tensor db_norms = db.pow(2).sum(1);
  const int64_t n = db.size(0), map_k = std::min(map_cutoff, n), precision_k = std::min(precision_cutoff, n);
  const torch::Tensor positions = torch::arange(1, n + 1, torch::kFloat64);
  RetrievalMetrics out;
  int64_t scored = 0;
  // Blocks of queries: a block's [B, N] distances and ranks are what is held at a time.
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 24) / n);
  for (int64_t start = 0; start < queries.size(0); start += block) {
    const int64_t b = std::min(block, queries.size(0) - start);
    const torch::Tensor q = cpu_contiguous(queries.narrow(0, start, b), torch::kFloat32);
    const torch::Tensor labels = cpu_contiguous(query_labels.narrow(0, start, b), torch::kInt64);
    const torch::Tensor distances = torch::addmm(db_norms.unsqueeze(0), q, db.t(), 1.0, -2.0);
    const torch::Tensor order = std::get<1>(torch::sort(distances, /*stable=*/true, /*dim=*/1, /*descending=*/false));
    const torch::Tensor hits = dl.index({order}).eq(labels.unsqueeze(1)).to(torch::kFloat64);
    const torch::Tensor found = hits.cumsum(1);
    const torch::Tensor precision_hits = found / positions * hits;
    const torch::Tensor total = found.select(1, n - 1);
    const torch::Tensor has = total.gt(0);
    scored += has.sum().item<int64_t>();
    out.map += (precision_hits.sum(1) / total.clamp_min(1)).masked_select(has).sum().item<double>();
    out.map_at_cutoff += (precision_hits.narrow(1, 0, map_k).sum(1) / total.clamp_max(map_cutoff).clamp_min(1))
                             .masked_select(has)
                             .sum()
                             .item<double>();
    out.precision_at_cutoff +=
        (found.select(1, precision_k - 1) / static_cast<double>(precision_k)).sum().item<double>();
  }
  out.map = scored > 0 ? out.map / static_cast<double>(scored) : 0.0;
  out.map_at_cutoff = scored > 0 ? out.map_at_cutoff / static_cast<double>(scored) : 0.0;
  out.precision_at_cutoff /= static_cast<double>(queries.size(0));
  return out;
}

torch::Tensor LinearHash::hash(const torch::Tensor& x) const {
  return binary_code_bits(torch::mm(x.flatten(1).to(torch::kFloat64) - mean, projection));
}

LinearHash LinearHash::lsh(const torch::Tensor& train, int64_t bits, uint64_t seed) {
  TORCH_CHECK(train.dim() == 2 && bits >= 1, "LinearHash::lsh: expected [N, D] data and bits >= 1");
  const torch::Tensor x = train.to(torch::kCPU, torch::kFloat64);
  return {x.mean(0), torch::randn({x.size(1), bits}, at::detail::createCPUGenerator(seed), torch::kFloat64)};
}

LinearHash LinearHash::pca(const torch::Tensor& train, int64_t bits) {
  TORCH_CHECK(train.dim() == 2 && bits >= 1 && bits <= train.size(1),
              "LinearHash::pca: expected [N, D] data and 1 <= bits <= D");
  const PCA fitted = PCA::fit(train.to(torch::kCPU), bits);
  return {fitted.mean, fitted.components};
}

LinearHash LinearHash::itq(const torch::Tensor& train, int64_t bits, uint64_t seed, int64_t iterations,
                           std::vector<double>* quantization_loss) {
  LinearHash h = pca(train, bits);
  const torch::Tensor v = torch::mm(train.to(torch::kCPU, torch::kFloat64) - h.mean, h.projection);
  torch::Tensor rotation =
      std::get<0>(torch::linalg_qr(torch::randn({bits, bits}, at::detail::createCPUGenerator(seed), torch::kFloat64)));
  for (int64_t it = 0; it < iterations; ++it) {
    const torch::Tensor projected = v.mm(rotation);
    const torch::Tensor b = projected.gt(0).to(torch::kFloat64) * 2.0 - 1.0;
    if (quantization_loss) quantization_loss->push_back((b - projected).pow(2).sum().item<double>());
    auto [u, s, vh] = torch::linalg_svd(v.t().mm(b), /*full_matrices=*/false);
    rotation = u.mm(vh);
  }
  h.projection = h.projection.mm(rotation);
  return h;
}

namespace {

Json metrics_json(const RetrievalMetrics& m, bool hamming) {
  Json j{{"map", m.map},
         {fmt::format("map_at_{}", kMapCutoff), m.map_at_cutoff},
         {fmt::format("precision_at_{}", kPrecisionCutoff), m.precision_at_cutoff}};
  if (!hamming) return j;
  j[fmt::format("precision_within_radius_{}", kHammingRadius)] = m.precision_within_radius;
  j[fmt::format("empty_within_radius_{}", kHammingRadius)] = m.empty_within_radius;
  Json radius = Json::array(), precision = Json::array();
  for (std::size_t d = 0; d < m.curve_precision.size(); ++d) {
    radius.push_back(d);
    // A radius within which no query found anything has no precision: null.
    precision.push_back(std::isnan(m.curve_precision[d]) ? Json() : Json(m.curve_precision[d]));
  }
  j["pr_curve"] = {{"radius", radius}, {"precision", precision}, {"recall", m.curve_recall}};
  return j;
}

// `f` of `data` in batches on `device`, in eval mode without gradients, gathered on the CPU.
torch::Tensor in_batches(const Dataset& data, const torch::Device& device,
                         const std::function<torch::Tensor(const torch::Tensor&)>& f) {
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < data.size(); start += 1000) {
    parts.push_back(f(data.inputs.narrow(0, start, std::min<int64_t>(1000, data.size() - start)).to(device)).cpu());
  }
  return torch::cat(parts);
}

constexpr uint64_t kLshSeed = 2002;
constexpr uint64_t kItqSeed = 2011;

}  // namespace

Json evaluate_retrieval(Autoencoder& model, const DataSplits& data, const torch::Device& device) {
  auto* hashing = dynamic_cast<Hashing*>(&model);
  if (!hashing || hashing->hash_bits() == 0) {
    throw Error(
        "eval --retrieval: the model's code is not binary (train it with model.binary_code noise or sign; a "
        "stack: its top layer's)");
  }
  // The training split in memory, all of it; of a streamed one, a million examples at most.
  const Dataset train = data.train_sample(int64_t{1} << 20);
  if (!train.labels.defined() || !data.test.labels.defined() || data.test.size() == 0) {
    throw Error("eval --retrieval: needs labelled training and test splits (relevant: the same label)");
  }
  Dataset database = train;
  if (data.validation.size() > 0) {
    database =
        Dataset{torch::cat({train.inputs, data.validation.inputs}), torch::cat({train.labels, data.validation.labels})};
  }
  const Dataset& queries = data.test;
  const int64_t bits = hashing->hash_bits();
  torch::NoGradGuard no_grad;
  model.module().to(device);
  model.module().eval();
  auto hamming_metrics = [&](const torch::Tensor& query_bits, const torch::Tensor& database_bits) {
    return metrics_json(hamming_retrieval_metrics(hamming_histograms(pack_bits(query_bits), queries.labels,
                                                                     pack_bits(database_bits), database.labels, bits)),
                        /*hamming=*/true);
  };
  auto hash = [&](const torch::Tensor& x) { return hashing->hash(x); };
  auto relaxed = [&](const torch::Tensor& x) { return hashing->relaxed_code(x); };
  Json methods = Json::object();
  const torch::Tensor model_queries = in_batches(queries, device, hash);
  const torch::Tensor model_database = in_batches(database, device, hash);
  methods["model"] = hamming_metrics(model_queries, model_database);
  // How balanced the bits are: a bit that is 1 for half the database splits it most evenly.
  const torch::Tensor ones = model_database.to(torch::kFloat64).mean(0);
  methods["model"]["bit_balance"] = {{"min", ones.min().item<double>()}, {"max", ones.max().item<double>()}};
  methods["model_float_knn"] =
      metrics_json(euclidean_retrieval_metrics(in_batches(queries, device, relaxed), queries.labels,
                                               in_batches(database, device, relaxed), database.labels),
                   /*hamming=*/false);
  const torch::Tensor x_database = database.inputs.flatten(1), x_queries = queries.inputs.flatten(1);
  methods["pixels_knn"] = metrics_json(
      euclidean_retrieval_metrics(x_queries, queries.labels, x_database, database.labels), /*hamming=*/false);
  const LinearHash lsh = LinearHash::lsh(x_database, bits, kLshSeed);
  methods["lsh"] = hamming_metrics(lsh.hash(x_queries), lsh.hash(x_database));
  if (bits <= x_database.size(1)) {
    const LinearHash pca = LinearHash::pca(x_database, bits);
    methods["pca"] = hamming_metrics(pca.hash(x_queries), pca.hash(x_database));
    const LinearHash itq = LinearHash::itq(x_database, bits, kItqSeed);
    methods["itq"] = hamming_metrics(itq.hash(x_queries), itq.hash(x_database));
  }
  return Json{{"bits", bits},
              {"queries", queries.size()},
              {"database", database.size()},
              {"relevance", "same label"},
              {"ties",
               "tie-aware: each metric is its expectation over the orders of items at equal Hamming distance "
               "(McFee & Lanckriet 2009; He et al. 2018), in closed form; AP@k is normalised by min(k, relevant "
               "items); precision within the radius counts a query with no item there as 0"},
              {"methods", methods}};
}

}  // namespace torchae
