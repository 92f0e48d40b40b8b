#include "torchae/core/runtime.h"

#include "torchae/core/error.h"
#include "torchae/core/parallel.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <dlfcn.h>
#include <malloc.h>
#include <regex>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace torchae {

void keep_large_blocks_in_heap() {
  // 1 GiB (mallopt takes an int): a batch's activations stay in the heap once allocated.
  // The user's MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_, if any, win.
  constexpr int kThreshold = 1 << 30;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) ::mallopt(M_MMAP_THRESHOLD, kThreshold);
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) ::mallopt(M_TRIM_THRESHOLD, kThreshold);
}

void ensure_fast_runtime(char** argv) {
  keep_large_blocks_in_heap();
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (::setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0) != 0) return;
  ::execv("/proc/self/exe", argv);
  // execv only returns on failure (no /proc, say): carry on with the spinning default rather
  // than refuse to run; the variable set above reaches child processes at least.
}

torch::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  if (spec == "cpu") return torch::kCPU;
  static const std::regex cuda(R"(cuda(:(\d+))?)");
  std::smatch m;
  if (!std::regex_match(spec, m, cuda)) {
    throw Error(fmt::format("device \"{}\": expected auto, cpu, cuda or cuda:N", spec));
  }
  const int64_t index = m[2].matched ? std::stoll(m[2].str()) : 0;
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (count == 0) throw Error(fmt::format("device \"{}\": no CUDA device is available", spec));
  if (index >= count) {
    throw Error(fmt::format("device \"{}\": only {} CUDA device(s) present", spec, count));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void set_threads(int64_t threads) {
  static const int library_default = at::get_num_threads();
  at::set_num_threads(threads > 0 ? static_cast<int>(threads) : library_default);
}

namespace {

// OpenBLAS's entry points, where the BLAS LibTorch loaded is OpenBLAS (Debian's libblas.so.3
// alternative): looked up once, null otherwise.
struct OpenBlas {
  int (*get)() = nullptr;
  void (*set)(int) = nullptr;
  int library_default = 0;
  OpenBlas() {
    get = reinterpret_cast<int (*)()>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    set = reinterpret_cast<void (*)(int)>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (get == nullptr || set == nullptr) get = nullptr, set = nullptr;
    if (get) library_default = get();
  }
};

const OpenBlas& openblas() {
  static const OpenBlas blas;
  return blas;
}

// libgomp's entry points (GCC's OpenMP ABI: what `#pragma omp parallel` compiles to), where the
// LibTorch loaded is its OpenMP build: looked up once, null otherwise.
struct Gomp {
  using Parallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
  Parallel parallel = nullptr;
  int (*thread_num)() = nullptr;
  int (*team_size)() = nullptr;
  Gomp() {
    parallel = reinterpret_cast<Parallel>(::dlsym(RTLD_DEFAULT, "GOMP_parallel"));
    thread_num = reinterpret_cast<int (*)()>(::dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
    team_size = reinterpret_cast<int (*)()>(::dlsym(RTLD_DEFAULT, "omp_get_num_threads"));
    if (thread_num == nullptr || team_size == nullptr) parallel = nullptr;
  }
};

const Gomp& gomp() {
  static const Gomp runtime;
  return runtime;
}

// One parallel_for's region: each thread of the team takes its piece, as at::parallel_for's do.
struct Region {
  Region(int64_t begin, int64_t end, int64_t grain, c10::function_ref<void(int64_t, int64_t)> f)
      : begin(begin), end(end), grain(grain), f(f) {}
  int64_t begin, end, grain;
  c10::function_ref<void(int64_t, int64_t)> f;
  std::atomic_flag failed = ATOMIC_FLAG_INIT;
  std::exception_ptr error;
};

void run_piece(void* argument) {
  Region& region = *static_cast<Region*>(argument);
  // The team has LibTorch's count of threads (no num_threads clause: as LibTorch, which leaves
  // libgomp's pool its size); at most one piece for every `grain` elements.
  int64_t pieces = gomp().team_size();
  if (region.grain > 0) pieces = std::min(pieces, at::divup(region.end - region.begin, region.grain));
  const int64_t piece = at::divup(region.end - region.begin, pieces);
  const int thread = gomp().thread_num();
  const int64_t first = region.begin + thread * piece;
  if (first >= region.end) return;
  try {
    at::internal::ThreadIdGuard id(thread);
    region.f(first, std::min(region.end, first + piece));
  } catch (...) {
    if (!region.failed.test_and_set()) region.error = std::current_exception();
  }
}

}  // namespace

bool parallel_for_available() { return gomp().parallel != nullptr; }

void parallel_for(int64_t begin, int64_t end, int64_t grain, c10::function_ref<void(int64_t, int64_t)> f) {
  if (begin >= end) return;
  if (gomp().parallel != nullptr) {
    at::internal::lazy_init_num_threads();
    if (end - begin > std::max<int64_t>(grain, 1) && at::get_num_threads() > 1 && !at::in_parallel_region()) {
      Region region(begin, end, grain, f);
      gomp().parallel(&run_piece, &region, /*num_threads=*/0, /*flags=*/0);
      if (region.error) std::rethrow_exception(region.error);
      return;
    }
  }
  at::internal::ThreadIdGuard id(0);
  f(begin, end);
}

double parallel_sum(int64_t begin, int64_t end, int64_t piece, c10::function_ref<double(int64_t, int64_t)> f) {
  if (begin >= end) return 0.0;
  piece = std::max<int64_t>(piece, 1);
  const int64_t pieces = at::divup(end - begin, piece);
  if (pieces == 1) return f(begin, end);
  std::vector<double> sums(static_cast<std::size_t>(pieces));
  parallel_for(0, pieces, 1, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      sums[static_cast<std::size_t>(i)] = f(begin + i * piece, std::min(end, begin + (i + 1) * piece));
    }
  });
  double total = 0.0;
  for (const double sum : sums) total += sum;
  return total;
}

int64_t blas_threads() { return openblas().get ? openblas().get() : 0; }

bool set_blas_threads(int64_t threads) {
  const OpenBlas& blas = openblas();
  if (!blas.set) return false;
  blas.set(threads > 0 ? static_cast<int>(threads) : blas.library_default);
  return true;
}

int64_t cores_per_process() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int64_t cores = ::sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  if (const char* local = std::getenv("LOCAL_WORLD_SIZE")) {
    char* end = nullptr;
    const long ranks = std::strtol(local, &end, 10);
    if (end != local && *end == '\0' && ranks > 0) cores /= ranks;
  }
  return std::max<int64_t>(cores, 1);
}

void keep_off_this_core(std::thread& thread, int* kept_off) {
#ifdef __linux__
  const int core = ::sched_getcpu();
  if (core < 0 || core == *kept_off) return;
  cpu_set_t cores;
  if (::sched_getaffinity(0, sizeof cores, &cores) != 0 || !CPU_ISSET(core, &cores)) return;
  CPU_CLR(core, &cores);
  if (CPU_COUNT(&cores) == 0) return;
  if (::pthread_setaffinity_np(thread.native_handle(), sizeof cores, &cores) == 0) *kept_off = core;
#endif
}

namespace {

void pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Spins until `ready()` or 100 microseconds have passed; whether it became ready.
template <typename Ready>
bool spin_until(const Ready& ready) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + std::chrono::microseconds(100);
  while (true) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      pause();
    }
    if (Clock::now() > until) return ready();
  }
}

}  // namespace

HelperThread::HelperThread() : thread_([this] { run(); }) {}

HelperThread::~HelperThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_helper_.notify_one();
  thread_.join();
}

// The sleeping flags and the counters are sequentially consistent: a side that sets its flag and
// then finds nothing to do, under the mutex, and a side that publishes and then reads the flag
// cannot both miss each other.
void HelperThread::post(void (*task)(void*), void* argument) {
  keep_off_this_core(thread_, &kept_off_);
  task_ = task;
  argument_ = argument;
  posted_.fetch_add(1);
  if (helper_sleeps_.load()) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_helper_.notify_one();
  }
}

std::exception_ptr HelperThread::wait() {
  const uint64_t posted = posted_.load(std::memory_order_relaxed);
  const auto finished = [&] { return done_.load() == posted; };
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeps_ = true;
    wake_caller_.wait(lock, finished);
    caller_sleeps_ = false;
  }
  return std::exchange(error_, nullptr);
}

void HelperThread::run() {
  uint64_t taken = 0;
  const auto posted = [&] { return posted_.load() != taken || stop_.load(); };
  while (true) {
    if (!spin_until(posted)) {
      std::unique_lock<std::mutex> lock(mutex_);
      helper_sleeps_ = true;
      wake_helper_.wait(lock, posted);
      helper_sleeps_ = false;
    }
    if (posted_.load() == taken) return;  // stopping, nothing posted
    ++taken;
    try {
      task_(argument_);
    } catch (...) {
      error_ = std::current_exception();
    }
    done_.store(taken);
    if (caller_sleeps_.load()) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_caller_.notify_one();
    }
  }
}

}  // namespace torchae
