#pragma once

#include "torchae/core/config.h"

#include <torch/script.h>
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace torchae {

/// An exported model with a binary code (its archive has `hash`, see `torchae export`), as
/// `torchae index` and `torchae search` use it.
///
///   HashModel model = HashModel::load("hash-32.pt");
///   torch::Tensor bits = model.hash(images);  // uint8 0/1 [N, 32]
struct HashModel {
  std::filesystem::path path;
  torch::jit::Module module;
  /// One example's shape {C, H, W}, from the model card.
  std::vector<int64_t> input_shape;
  int64_t bits = 0;
  /// `model_fingerprint` of the module: what ties an index to the model that made it.
  uint64_t fingerprint = 0;

  /// Loads an archive; an Error naming the file when it is not a torchae archive or has no `hash`.
  static HashModel load(const std::filesystem::path& path);
  /// The bits of `images` [N, C, H, W] in [0, 1], the card's input conventions applied (the
  /// training mean subtracted, the deviation divided, where the model was trained so), in
  /// batches: uint8 0/1 [N, bits].
  torch::Tensor hash(const torch::Tensor& images) const;
};

/// FNV-1a (64 bits) over the names, shapes and bytes of a module's parameters and buffers.
uint64_t model_fingerprint(const torch::jit::Module& module);

/// The binary codes of a collection, with each item's name and label: what `torchae index`
/// writes and `torchae search` reads. An index file (little-endian) is
///
///   header, 40 bytes: magic "TAEHASH\0", u32 version (1), u32 bits, u64 count, u32 words per
///                     code (ceil(bits / 64)), u32 0, u64 the model's fingerprint
///   codes:  count x words u64, bit j of a code at bit j % 64 of word j / 64 (`pack_bits`)
///   labels: count x i64, -1 where unknown
///   names:  count x (u32 length, that many bytes of UTF-8)
///   u64 FNV-1a of every byte before it
///
/// A name says where the item came from, so that a search can show it: an image file's path,
/// "fashion-mnist:train:I" or "fashion-mnist:test:I", or an IDX file's path with ":I".
struct HashIndex {
  int64_t bits = 0;
  uint64_t model_fingerprint = 0;
  /// Packed codes, int64 [N, words].
  torch::Tensor codes;
  /// int64 [N].
  torch::Tensor labels;
  std::vector<std::string> names;

  int64_t size() const { return codes.defined() ? codes.size(0) : 0; }
};

inline constexpr uint32_t kIndexVersion = 1;

/// Writes `index` to `path` atomically (temporary file, then rename).
void write_index(const HashIndex& index, const std::filesystem::path& path);
/// Reads an index, checking everything (magic, version, sizes, unused bits, checksum): a
/// truncated or corrupt file is a one-line Error naming it.
HashIndex read_index(const std::filesystem::path& path);

/// Images of a collection with their names and labels (-1 where unknown), as `torchae index`
/// reads them for a model taking examples of `shape` {C, H, W}: "fashion-mnist" (Debian's 60,000
/// training images; "fashion-mnist:test", the 10,000 test images), an IDX image file, or a folder
/// of images (each must have the model's size and channels, or an Error names it).
struct ImageCollection {
  torch::Tensor images;  // [N, C, H, W] in [0, 1]
  torch::Tensor labels;  // int64 [N]
  std::vector<std::string> names;
};
ImageCollection read_collection(const std::string& data, const std::vector<int64_t>& shape);

/// One image file for a model taking examples of `shape` {C, H, W}: [C, H, W] in [0, 1]. An image
/// of another size or another number of channels is an Error naming the file (nothing is resized
/// or converted: a search should not answer for a picture it did not see).
torch::Tensor read_model_image(const std::filesystem::path& path, const std::vector<int64_t>& shape);

/// The image an index item's name refers to (`HashIndex::names`), or none when it cannot be read.
std::optional<torch::Tensor> read_item_image(const std::string& name, const std::vector<int64_t>& shape);

/// One result of a search.
struct Neighbour {
  int64_t item = 0;
  int64_t distance = 0;
};

/// The `k` codes of `codes` (packed [N, W]) nearest to `query` (packed [W]) in Hamming distance,
/// nearest first, ties in the order of the index; with `radius` >= 0 only those within it (all of
/// them when fewer than k). XOR and popcount over LibTorch's intra-op threads, in pieces of 64 K
/// codes, each with the histogram of its distances; then a counting selection.
std::vector<Neighbour> hamming_search(const torch::Tensor& query, const torch::Tensor& codes, int64_t k,
                                      int64_t radius = -1);

/// `torchae index`: the codes of `data` (see `read_collection`) by the model, written to `out`.
/// Returns a summary as JSON.
Json build_index(const std::filesystem::path& model, const std::string& data, const std::filesystem::path& out);

/// `torchae search`: the neighbours of the image `query` in the index, as JSON; `k` > the
/// index's size, an index of another model, a query of the wrong size are Errors. With
/// `picture`, a PNG of the query ("q" above it) and its neighbours (their distances above them).
Json search_index(const std::filesystem::path& index, const std::filesystem::path& model,
                  const std::filesystem::path& query, int64_t k, int64_t radius, const std::filesystem::path& picture);

/// `torchae bench --hamming`: `items` random codes of `bits` bits; the Hamming scan
/// (`hamming_search`, k = 10) against a brute-force float kNN over as many `bits`-dimensional
/// vectors (one query at a time, and `queries` at once by a matrix product), on one thread and on
/// `threads` (0: LibTorch's default). Comparisons per second, and per core.
Json bench_hamming(int64_t items, int64_t bits, int64_t queries, int64_t threads);

}  // namespace torchae
