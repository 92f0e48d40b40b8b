#include "torchae/train/distributed.h"

#include "torchae/core/error.h"
#include "torchae/version.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TORCHAE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

namespace torchae {

namespace {

using Clock = std::chrono::steady_clock;

// One line of a c10 or Gloo message: they carry context lines and backtraces.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string reason_of(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return first_line(c10_error->what_without_backtrace());
  return first_line(e.what());
}

const char* variable(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

int64_t integer_variable(const char* name, int64_t lo, int64_t hi) {
  const char* text = variable(name);
  if (text == nullptr) throw Error(fmt::format("{} is not set; torchrun sets it for every rank", name));
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0' || value < lo || value > hi) {
    throw Error(fmt::format("{}={}: expected an integer from {} to {}", name, text, lo, hi));
  }
  return value;
}

// c10d logs each failed attempt to bind or connect on stderr (through glog or c10's logger) before
// it throws; the exception says it again, and torchae's one line names the address. While the
// store and the group are being joined, stderr goes nowhere.
class QuietStderr {
 public:
  QuietStderr() : saved_(::dup(STDERR_FILENO)) {
    std::fflush(stderr);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved_ >= 0 && null >= 0) ::dup2(null, STDERR_FILENO);
    if (null >= 0) ::close(null);
  }
  ~QuietStderr() {
    std::fflush(stderr);
    if (saved_ >= 0) {
      ::dup2(saved_, STDERR_FILENO);
      ::close(saved_);
    }
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;

 private:
  int saved_;
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

std::unique_ptr<ProcessPlace> ProcessPlace::from_environment() {
  const bool has_rank = variable("RANK") != nullptr, has_world = variable("WORLD_SIZE") != nullptr;
  if (!has_rank && !has_world) return nullptr;
  if (!has_rank || !has_world) {
    throw Error(fmt::format("{} is set but {} is not: start data-parallel runs with torchrun",
                            has_rank ? "RANK" : "WORLD_SIZE", has_rank ? "WORLD_SIZE" : "RANK"));
  }
  auto place = std::make_unique<ProcessPlace>();
  place->world_size = static_cast<int>(integer_variable("WORLD_SIZE", 1, 1 << 20));
  place->rank = static_cast<int>(integer_variable("RANK", 0, place->world_size - 1));
  place->local_rank = variable("LOCAL_RANK") ? static_cast<int>(integer_variable("LOCAL_RANK", 0, 1 << 20)) : 0;
  if (place->world_size == 1) return place;
  const char* host = variable("MASTER_ADDR");
  if (host == nullptr) throw Error("MASTER_ADDR is not set; torchrun sets it for every rank");
  place->store_host = host;
  place->store_port = static_cast<int>(integer_variable("MASTER_PORT", 1, 65535));
  const char* agent = variable("TORCHELASTIC_USE_AGENT_STORE");
  place->agent_store = agent != nullptr && std::string(agent) == "True";
  return place;
}

namespace {

// What tells one build of torchae from another: its version and a hash of the program itself, so
// that ranks started from different binaries are told apart even at the same version.
std::string program_identity() {
  std::ifstream in("/proc/self/exe", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return fmt::format("torchae {} (program {:016x})", TORCHAE_VERSION, std::hash<std::string>{}(bytes));
}

}  // namespace

ProcessGroup::ProcessGroup(const ProcessPlace& place, std::chrono::milliseconds timeout)
    : place_(place), timeout_(timeout) {
  const std::string address = fmt::format("{}:{}", place_.store_host, place_.store_port);
  std::optional<QuietStderr> quiet(std::in_place);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(place_.store_port);
    options.isServer = !place_.agent_store && place_.rank == 0;
    if (options.isServer) options.numWorkers = place_.world_size;
    options.waitWorkers = false;
    options.timeout = timeout_;
    store = c10::make_intrusive<c10d::TCPStore>(place_.store_host, options);
  } catch (const std::exception& e) {
    const std::string reason = reason_of(e);
    if (reason.find("Address already in use") != std::string::npos) {
      throw Error(fmt::format("rank {}: cannot host the store at {}: the port is in use (choose another "
                              "MASTER_PORT, or torchrun --master_port)",
                              place_.rank, address));
    }
    throw Error(fmt::format("rank {}: cannot reach the store at {} (MASTER_ADDR:MASTER_PORT) within {} s: {}",
                            place_.rank, address, timeout_.count() / 1000.0, reason));
  }
  // torchrun's agent keeps one store for every restart of its workers: PyTorch's own env://
  // rendezvous keeps each attempt's keys apart the same way.
  const char* attempt = variable("TORCHELASTIC_RESTART_COUNT");
  store_ = c10::make_intrusive<c10d::PrefixStore>(
      fmt::format("/torchae/attempt_{}", attempt ? attempt : "0"), std::move(store));
  try {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout_);
    // Peers on this machine meet on the loopback device; elsewhere Gloo finds this host's address
    // (GLOO_SOCKET_IFNAME picks an interface, as in PyTorch).
    if (const char* interface = variable("GLOO_SOCKET_IFNAME")) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (is_loopback(place_.store_host)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    cpu_ = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", store_),
                                                       place_.rank, place_.world_size, options);
#ifdef TORCHAE_WITH_NCCL
    if (torch::cuda::is_available()) {
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout_;
      cuda_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", store_),
                                                          place_.rank, place_.world_size, nccl_options);
    }
#endif
  } catch (const std::exception& e) {
    throw Error(fmt::format("rank {} of {}: the ranks did not all join through the store at {} within {} s: {}",
                            place_.rank, place_.world_size, address, timeout_.count() / 1000.0, reason_of(e)));
  }
  quiet.reset();
  const std::string identity = program_identity();
  const std::vector<std::string> identities = all_gather_text(identity);
  for (int r = 0; r < size(); ++r) {
    if (identities[r] != identities[0]) {
      throw Error(fmt::format("the ranks run different programs: rank 0 runs {}, rank {} runs {}; start every rank "
                              "from the same build",
                              identities[0], r, identities[r]));
    }
  }
}

ProcessGroup::~ProcessGroup() = default;

namespace {

// Why a collective failed: every rank still here says so in the store and waits a moment for the
// others; the ranks that never do are named. Without a store (its host, rank 0, is gone) that is
// the answer.
std::string silent_ranks(c10d::Store& store, const ProcessPlace& place, std::chrono::milliseconds timeout) {
  try {
    store.set(fmt::format("failed/{}", place.rank), std::vector<uint8_t>{1});
    std::vector<int> missing;
    const auto deadline = Clock::now() + std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(5));
    do {
      missing.clear();
      for (int r = 0; r < place.world_size; ++r) {
        if (!store.check({fmt::format("failed/{}", r)})) missing.push_back(r);
      }
      if (missing.empty()) return "every rank reports the failure";
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } while (Clock::now() < deadline);
    return fmt::format("rank{} {} did not answer (stopped, or cannot be reached)", missing.size() > 1 ? "s" : "",
                       fmt::join(missing, ", "));
  } catch (const std::exception&) {
    return place.agent_store ? fmt::format("the store at {}:{} does not answer", place.store_host, place.store_port)
                             : "rank 0 (the host of the store) did not answer (stopped, or cannot be reached)";
  }
}

}  // namespace

template <typename Collective>
void ProcessGroup::run(const char* what, const torch::Tensor& t, Collective&& collective) {
  try {
    if (!t.is_cuda()) {
      collective(*cpu_)->wait();
      return;
    }
#ifdef TORCHAE_WITH_NCCL
    if (cuda_) {
      collective(static_cast<c10d::ProcessGroupNCCL&>(*cuda_))->wait();
      return;
    }
#endif
  } catch (const std::exception& e) {
    throw Error(fmt::format("rank {} of {}: {} failed: {} [{}]", rank(), size(), what,
                            silent_ranks(*store_, place_, timeout_), reason_of(e)));
  }
  throw Error("this build of torchae has no NCCL: a data-parallel run on CUDA needs a LibTorch built with it");
}

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors) {
  for (torch::Tensor& t : tensors) {
    std::vector<torch::Tensor> one{t.detach()};
    run("a broadcast from rank 0", t, [&](auto& group) { return group.broadcast(one); });
  }
}

void ProcessGroup::all_reduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> one{tensor};
  run("an all-reduce", tensor, [&](auto& group) { return group.allreduce(one); });
}

std::vector<torch::Tensor> ProcessGroup::all_gather(const torch::Tensor& tensor) {
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < size(); ++r) outputs[0].push_back(torch::empty_like(tensor));
  std::vector<torch::Tensor> inputs{tensor.contiguous()};
  run("an all-gather", tensor, [&](auto& group) { return group.allgather(outputs, inputs); });
  return outputs[0];
}

std::vector<std::string> ProcessGroup::all_gather_text(const std::string& text) {
  const auto lengths = all_gather(torch::tensor({static_cast<int64_t>(text.size())}));
  int64_t longest = 0;
  for (const auto& l : lengths) longest = std::max(longest, l.item<int64_t>());
  std::vector<std::string> texts(size());
  if (longest == 0) return texts;
  torch::Tensor mine = torch::zeros({longest}, torch::kUInt8);
  if (!text.empty()) std::memcpy(mine.data_ptr(), text.data(), text.size());
  const auto gathered = all_gather(mine);
  for (int r = 0; r < size(); ++r) {
    texts[r].assign(reinterpret_cast<const char*>(gathered[r].data_ptr()), lengths[r].item<int64_t>());
  }
  return texts;
}

std::string ProcessGroup::broadcast_text(const std::string& text) {
  std::vector<torch::Tensor> length{torch::tensor({static_cast<int64_t>(is_writer() ? text.size() : 0)})};
  broadcast(length);
  const int64_t size = length[0].item<int64_t>();
  if (size == 0) return {};
  std::vector<torch::Tensor> bytes{torch::zeros({size}, torch::kUInt8)};
  if (is_writer()) std::memcpy(bytes[0].data_ptr(), text.data(), text.size());
  broadcast(bytes);
  return std::string(reinterpret_cast<const char*>(bytes[0].data_ptr()), size);
}

void ProcessGroup::on_writer(const std::function<void()>& action) {
  std::string failure;
  std::exception_ptr thrown;
  if (is_writer()) {
    try {
      action();
    } catch (const std::exception& e) {
      failure = reason_of(e);
      if (failure.empty()) failure = "rank 0 failed";
      thrown = std::current_exception();
    }
  }
  failure = broadcast_text(failure);
  if (thrown) std::rethrow_exception(thrown);
  if (!failure.empty()) throw Error(failure);
}

std::shared_ptr<ProcessGroup> join_process_group(std::chrono::milliseconds timeout) {
  const auto place = ProcessPlace::from_environment();
  if (!place || place->world_size == 1) return nullptr;
  return std::make_shared<ProcessGroup>(*place, timeout);
}

GradientReducer::GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> parameters, int64_t bucket_bytes)
    : group_(group), parameters_(std::move(parameters)) {
  std::size_t first = 0;
  int64_t bytes = 0;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const torch::Tensor& p = parameters_[i];
    const bool other_kind = i > first && (p.scalar_type() != parameters_[first].scalar_type() ||
                                          p.device() != parameters_[first].device());
    if (i > first && (other_kind || bytes >= bucket_bytes)) {
      buckets_.emplace_back(first, i);
      first = i;
      bytes = 0;
    }
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  if (first < parameters_.size()) buckets_.emplace_back(first, parameters_.size());
  buffers_.resize(buckets_.size());
}

void GradientReducer::reduce(double weight, torch::Tensor* extra) {
  torch::NoGradGuard no_grad;
  const auto start = Clock::now();
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    const auto [first, last] = buckets_[b];
    const bool carries_extra = extra != nullptr && b + 1 == buckets_.size();
    int64_t numel = 0;
    for (std::size_t i = first; i < last; ++i) numel += parameters_[i].numel();
    const int64_t extra_numel = carries_extra ? extra->numel() : 0;
    torch::Tensor& buffer = buffers_[b];
    if (!buffer.defined() || buffer.numel() != numel + extra_numel) {
      buffer = torch::empty({numel + extra_numel}, parameters_[first].options().requires_grad(false));
    }
    int64_t offset = 0;
    for (std::size_t i = first; i < last; ++i) {
      torch::Tensor& p = parameters_[i];
      torch::Tensor slot = buffer.narrow(0, offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        torch::mul_out(slot, p.grad(), weight);
      } else {
        slot.zero_();
      }
      offset += p.numel();
    }
    if (carries_extra) buffer.narrow(0, offset, extra_numel).copy_(extra->flatten());
    group_.all_reduce_sum(buffer);
    group_.all_reduce_bytes += buffer.numel() * static_cast<int64_t>(buffer.element_size());
    offset = 0;
    for (std::size_t i = first; i < last; ++i) {
      torch::Tensor& p = parameters_[i];
      p.mutable_grad() = buffer.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
    }
    if (carries_extra) extra->copy_(buffer.narrow(0, offset, extra_numel).view(extra->sizes()));
  }
  group_.all_reduce_seconds += std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace torchae
