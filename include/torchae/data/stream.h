#pragma once

#include "torchae/data/dataset.h"

#include <torch/types.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace torchae {

/// What loading some examples gave: the examples (inputs, and labels where the source has them)
/// and the files skipped on the way as unreadable (`data.on_error` "skip").
struct LoadResult {
  Dataset data;
  std::vector<std::string> skipped;
};

/// A training set read on demand rather than held in memory: an image folder's random crops, or
/// an IDX file too large to load. An epoch is a sequence of `size()` examples; example j of epoch
/// e is a pure function of (seed, e, j), so that any thread may load any part of an epoch in any
/// order and the batches are the same. Implementations are thread-safe.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// Examples in one epoch.
  virtual int64_t size() const = 0;
  /// Whether the trainer shuffles the examples as it does data in memory (a fixed set, addressed
  /// by index: an IDX file), rather than each epoch's examples being drawn afresh (random crops).
  virtual bool shuffled() const = 0;
  /// The examples at `positions` (int64, CPU) of epoch `epoch`, in that order: the indices of
  /// a fixed set when `shuffled()`, else positions in the epoch's sequence of fresh draws.
  virtual LoadResult load(uint64_t seed, int64_t epoch, const torch::Tensor& positions) const = 0;
};

/// How the loader threads of a streamed training set work (`data.workers`, `data.prefetch`).
struct LoaderOptions {
  /// Loader threads; 0 loads each batch on the training thread when it is needed.
  int64_t workers = 1;
  /// Batches loaded ahead of the one in use, at most.
  int64_t prefetch = 4;
};

/// One epoch of a `BatchSource`, loaded by worker threads into a bounded queue of at most
/// `prefetch` batches and handed out in order: batch i is always `order[i*B : (i+1)*B]`, whichever
/// thread loaded it and whenever it arrived. In a data-parallel run each rank loads only its part
/// of every batch (`shard_of`). A load that fails (a file `data.on_error` "stop" refuses) is
/// rethrown by `next()`; the destructor stops and joins the threads, so an error or an early
/// stop never leaves one running.
///
///   BatchLoader loader(source, order, seed, epoch, 128, 0, 1, {2, 4});
///   for (int64_t i = 0; i < loader.size(); ++i) trainer.step(loader.next().inputs);
class BatchLoader {
 public:
  BatchLoader(const BatchSource& source, torch::Tensor order, uint64_t seed, int64_t epoch, int64_t batch_size,
              int part, int parts, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  /// Batches in the epoch.
  int64_t size() const { return batches_; }
  /// Examples in batch i, all parts together.
  int64_t count(int64_t i) const;
  /// This rank's part of the next batch, waiting for it when it is not loaded yet.
  Dataset next();
  /// Seconds `next()` spent waiting for batches (or loading them, without workers).
  double waited_seconds() const { return waited_; }
  /// The distinct files skipped as unreadable in the batches handed out so far, sorted.
  std::vector<std::string> skipped() const;

 private:
  LoadResult load(int64_t i) const;
  void work();

  const BatchSource& source_;
  torch::Tensor order_;
  uint64_t seed_;
  int64_t epoch_, batch_size_, batches_;
  int part_, parts_;
  LoaderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  int64_t claimed_ = 0;   // batches handed to a worker
  int64_t consumed_ = 0;  // batches handed out by next()
  bool stopping_ = false;
  std::map<int64_t, LoadResult> ready_;
  std::map<int64_t, std::exception_ptr> failed_;
  std::set<std::string> skipped_;
  double waited_ = 0.0;
  std::vector<std::thread> threads_;
};

}  // namespace torchae
