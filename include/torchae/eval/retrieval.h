#pragma once

#include "torchae/core/config.h"
#include "torchae/data/dataset.h"
#include "torchae/models/autoencoder.h"

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace torchae {

/// Binary codes packed 64 bits to a word: 0/1 codes [N, bits] (uint8 or bool) to int64 words
/// [N, ceil(bits / 64)], bit j of a code at bit j % 64 of word j / 64, unused high bits 0.
torch::Tensor pack_bits(const torch::Tensor& bits);
/// The inverse of `pack_bits`: uint8 0/1 [N, bits].
torch::Tensor unpack_bits(const torch::Tensor& words, int64_t bits);

/// Hamming distances of `queries` to every code of `database` (packed, [Q, W] and [N, W], W at most
/// 16), by 64-bit XOR and popcount, the database split over LibTorch's intra-op threads: int16
/// [Q, N]. Meant for a query or a block of them; `hamming_histograms` never holds the [Q, N] matrix.
torch::Tensor hamming_distances(const torch::Tensor& queries, const torch::Tensor& database);

/// For each query, how many database items lie at each Hamming distance 0..bits, and how many
/// of those are relevant (share its label): int64 [Q, bits + 1] each. Everything the
/// retrieval metrics of a Hamming ranking need, ties included.
struct HammingHistograms {
  torch::Tensor counts;
  torch::Tensor relevant;
};

/// The histograms of `queries` (packed) with labels `query_labels` [Q] against `database` with
/// `database_labels` [N], over LibTorch's intra-op threads.
HammingHistograms hamming_histograms(const torch::Tensor& queries, const torch::Tensor& query_labels,
                                     const torch::Tensor& database, const torch::Tensor& database_labels, int64_t bits);

/// The retrieval metrics `eval --retrieval` reports, each averaged over the queries.
struct RetrievalMetrics {
  /// Mean average precision over the whole ranking, and over its first `kMapCutoff` items.
  double map = 0.0;
  double map_at_cutoff = 0.0;
  /// Precision of the first `kPrecisionCutoff` items.
  double precision_at_cutoff = 0.0;
  /// Hamming rankings only: precision of the items within `kHammingRadius` of the query (0 for a
  /// query with none, Gong & Lazebnik's convention), and the fraction of queries with none.
  double precision_within_radius = 0.0;
  double empty_within_radius = 0.0;
  /// Hamming rankings only: the precision-recall curve of Hamming-ball retrieval, one point per
  /// radius 0..bits, both summed over the queries before dividing (micro-averaged).
  std::vector<double> curve_precision;
  std::vector<double> curve_recall;
};

inline constexpr int64_t kMapCutoff = 1000;
inline constexpr int64_t kPrecisionCutoff = 100;
inline constexpr int64_t kHammingRadius = 2;

/// The metrics of Hamming rankings from their histograms. Items at equal distance are ties and
/// are scored tie-aware (McFee & Lanckriet 2009; He et al. 2018): each metric is its expectation
/// over every order of the tied items, in closed form, rather than its value for one order
/// (by index, say), which would reward or punish a code by the order of the database. AP@k is
/// normalised by min(k, relevant items).
/// The cutoffs are parameters for the tests; `eval` uses the constants.
RetrievalMetrics hamming_retrieval_metrics(const HammingHistograms& histograms, int64_t map_cutoff = kMapCutoff,
                                           int64_t precision_cutoff = kPrecisionCutoff,
                                           int64_t radius = kHammingRadius);

/// The metrics (map, map_at_cutoff, precision_at_cutoff) of ranking `database` [N, d] by
/// Euclidean distance to each of `queries` [Q, d] (ties, which real-valued data hardly has, broken
/// by index).
RetrievalMetrics euclidean_retrieval_metrics(const torch::Tensor& queries, const torch::Tensor& query_labels,
                                             const torch::Tensor& database, const torch::Tensor& database_labels,
                                             int64_t map_cutoff = kMapCutoff,
                                             int64_t precision_cutoff = kPrecisionCutoff);

/// A hash function of the classical kind: bits = (x - mean) W > 0, fitted on training data
/// `train` [N, D] for `bits` bits, in double precision.
///
///   LinearHash itq = LinearHash::itq(train.inputs.flatten(1), 32);
///   torch::Tensor bits = itq.hash(test.inputs.flatten(1));  // uint8 [N, 32]
struct LinearHash {
  /// [D] and [D, bits].
  torch::Tensor mean;
  torch::Tensor projection;

  /// uint8 0/1 [N, bits].
  torch::Tensor hash(const torch::Tensor& x) const;

  /// Locality-sensitive hashing by random hyperplanes through the data's mean (Charikar 2002).
  static LinearHash lsh(const torch::Tensor& train, int64_t bits, uint64_t seed);
  /// The signs of the top `bits` principal components.
  static LinearHash pca(const torch::Tensor& train, int64_t bits);
  /// Iterative quantisation (Gong & Lazebnik 2011): the top principal components rotated by the R
  /// that minimises the quantisation loss ||B - V R||_F^2, alternating B = sign(V R) and the
  /// orthogonal Procrustes solution R = S Ŝ^T from the SVD V^T B = S Ω Ŝ^T, from a random
  /// rotation, for `iterations` rounds (their 50).
  static LinearHash itq(const torch::Tensor& train, int64_t bits, uint64_t seed, int64_t iterations = 50,
                        std::vector<double>* quantization_loss = nullptr);
};

/// `torchae eval --retrieval`: the test split as queries, the training split (validation
/// included) as the database, relevant when the labels agree. The model's binary codes
/// (`Hashing`), Euclidean kNN on its real-valued codes and on the inputs, and LSH, PCA hashing
/// and ITQ at the model's number of bits, as JSON {"bits", "queries", "database", "ties",
/// "methods": {name: metrics}}. An Error when the model's code is not binary.
Json evaluate_retrieval(Autoencoder& model, const DataSplits& data, const torch::Device& device);

}  // namespace torchae
