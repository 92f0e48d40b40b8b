#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace c10d {
class ProcessGroupGloo;
class Store;
}  // namespace c10d

namespace torchae {

/// How long a collective or the store may wait for the other ranks before the run stops.
inline constexpr std::chrono::seconds kDefaultCollectiveTimeout{60};

/// Where a process sits in a data-parallel run, as torchrun describes it in the environment.
struct ProcessPlace {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  /// The store's address (MASTER_ADDR, MASTER_PORT).
  std::string store_host = "127.0.0.1";
  int store_port = 29500;
  /// The launcher's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True): every rank joins it
  /// as a client. Otherwise rank 0 hosts it, as PyTorch's env:// initialisation does.
  bool agent_store = false;

  /// The place torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
  /// TORCHELASTIC_USE_AGENT_STORE) describe; null when RANK and WORLD_SIZE are not set (a plain
  /// one-process run). Inconsistent values are an Error naming the variable.
  static std::unique_ptr<ProcessPlace> from_environment();
};

/// The processes of a data-parallel run, joined through PyTorch's c10d: a TCPStore for the
/// rendezvous and ProcessGroupGloo for CPU tensors (ProcessGroupNCCL for CUDA tensors in a build
/// whose LibTorch has it). Every collective is bounded by the timeout the group was joined with; a
/// peer that died or stopped answering is an Error naming the ranks that did not answer.
///
///   auto group = torchae::join_process_group();  // null outside torchrun
///   torchae::TrainOptions options;
///   options.group = group;                       // the trainer is now data-parallel
class ProcessGroup {
 public:
  ProcessGroup(const ProcessPlace& place, std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return place_.rank; }
  int size() const { return place_.world_size; }
  int local_rank() const { return place_.local_rank; }
  /// Rank 0: the one process that writes the run directory and prints.
  bool is_writer() const { return place_.rank == 0; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// Overwrites `tensors` on every rank with rank 0's.
  void broadcast(std::vector<torch::Tensor>& tensors);
  /// Sums `tensor` over the ranks, in place.
  void all_reduce_sum(torch::Tensor& tensor);
  /// Every rank's `tensor` (same shape and type on every rank), in rank order.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor);
  /// Rank 0's text, on every rank.
  std::string broadcast_text(const std::string& text);
  /// Every rank's text, in rank order.
  std::vector<std::string> all_gather_text(const std::string& text);
  /// Runs `action` on rank 0 alone (writing the run directory); when it fails, every rank throws
  /// rank 0's Error, so that no rank waits for a peer that has given up.
  void on_writer(const std::function<void()>& action);

  /// Seconds spent in `GradientReducer::reduce`, and the bytes it all-reduced.
  double all_reduce_seconds = 0.0;
  int64_t all_reduce_bytes = 0;

 private:
  /// Runs `collective` on the group that carries tensors of `t`'s device (Gloo for CPU tensors,
  /// NCCL for CUDA ones); a failure becomes an Error naming the ranks that did not answer.
  template <typename Collective>
  void run(const char* what, const torch::Tensor& t, Collective&& collective);

  ProcessPlace place_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  // The concrete groups: LibTorch 1.13 derives them from c10d::ProcessGroup, 2.x from c10d::Backend.
  // The NCCL group is a c10d::ProcessGroupNCCL, in a build that has it (held by its base here, so
  // that a build without NCCL need not know the type).
  c10::intrusive_ptr<c10d::ProcessGroupGloo> cpu_;
  c10::intrusive_ptr<c10::intrusive_ptr_target> cuda_;
};

/// Joins the data-parallel run torchrun started this process in (`ProcessPlace::from_environment`);
/// null when the process was not started by torchrun (then train as one process). Unreachable
/// stores, a port already in use and a peer that does not join within `timeout` are Errors naming
/// the address.
std::shared_ptr<ProcessGroup> join_process_group(std::chrono::milliseconds timeout = kDefaultCollectiveTimeout);

/// Sums gradients over the ranks, weighted by each rank's share of the global batch, in buckets of
/// about `bucket_bytes` (one all-reduce per bucket, not per tensor; the bucket's tensors are
/// flattened into one buffer that the gradients then view). With `extra`, a small tensor of the
/// same dtype summed in the last bucket (the step's loss figures).
class GradientReducer {
 public:
  GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> parameters, int64_t bucket_bytes = 25 << 20);
  /// After backward: every parameter's gradient becomes sum_r weight_r * grad_r (missing gradients
  /// count as zero), and `extra` the sum over the ranks of its values.
  void reduce(double weight, torch::Tensor* extra = nullptr);

 private:
  ProcessGroup& group_;
  std::vector<torch::Tensor> parameters_;
  /// Each bucket's first and one-past-last parameter; the buffers are made on first use.
  std::vector<std::pair<std::size_t, std::size_t>> buckets_;
  std::vector<torch::Tensor> buffers_;
};

}  // namespace torchae
