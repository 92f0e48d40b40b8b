#include "torchae/data/stream.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

namespace torchae {

int64_t default_loader_workers() {
  const auto cores = static_cast<int64_t>(std::thread::hardware_concurrency());
  return std::clamp<int64_t>(cores / 2, 1, 4);
}

BatchLoader::BatchLoader(const BatchSource& source, torch::Tensor order, uint64_t seed, int64_t epoch,
                         int64_t batch_size, int part, int parts, LoaderOptions options)
    : source_(source),
      order_(std::move(order)),
      seed_(seed),
      epoch_(epoch),
      batch_size_(batch_size),
      batches_((order_.numel() + batch_size - 1) / batch_size),
      part_(part),
      parts_(parts),
      options_(options) {
  TORCH_CHECK(batch_size_ > 0 && options_.prefetch >= 1, "BatchLoader: batch size and prefetch must be positive");
  order_ = order_.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t w = 0; w < options_.workers; ++w) threads_.emplace_back([this] { work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& thread : threads_) thread.join();
}

int64_t BatchLoader::count(int64_t i) const { return std::min(batch_size_, order_.numel() - i * batch_size_); }

LoadResult BatchLoader::load(int64_t i) const {
  const auto [start, length] = shard_of(count(i), part_, parts_);
  return source_.load(seed_, epoch_, order_.narrow(0, i * batch_size_ + start, length));
}

void BatchLoader::work() {
  for (;;) {
    int64_t i = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || claimed_ >= batches_ || claimed_ < consumed_ + options_.prefetch; });
      if (stopping_ || claimed_ >= batches_) return;
      i = claimed_++;
    }
    // A failure is the batch's result: next() rethrows it in order, on the training thread.
    LoadResult result;
    std::exception_ptr failure;
    try {
      result = load(i);
    } catch (...) {
      failure = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failure) {
        failed_[i] = failure;
        stopping_ = true;  // nothing after a failed batch will be used
      } else {
        ready_[i] = std::move(result);
      }
    }
    changed_.notify_all();
  }
}

Dataset BatchLoader::next() {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  TORCH_CHECK(consumed_ < batches_, "BatchLoader: the epoch has no more batches");
  LoadResult result;
  if (threads_.empty()) {
    result = load(consumed_);
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return ready_.count(consumed_) || failed_.count(consumed_); });
    if (auto failed = failed_.find(consumed_); failed != failed_.end()) std::rethrow_exception(failed->second);
    auto it = ready_.find(consumed_);
    result = std::move(it->second);
    ready_.erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++consumed_;
    skipped_.insert(result.skipped.begin(), result.skipped.end());
  }
  changed_.notify_all();
  waited_ += std::chrono::duration<double>(Clock::now() - start).count();
  return std::move(result.data);
}

std::vector<std::string> BatchLoader::skipped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {skipped_.begin(), skipped_.end()};
}

}  // namespace torchae
