#pragma once

#include <torch/types.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>

namespace torchae {

/// glibc's malloc serves blocks above 32 MiB by mmap and unmaps them on free, so every step of
/// a model whose activations are that large (a conv net on 48x48 colour patches, batch 128)
/// faults its memory in afresh (11.5 s of 29.6 in the kernel, 57 against 231 samples/s for
/// a conv denoiser on 1,500 patches). This raises malloc's mmap and trim thresholds to 1 GiB
/// (mallopt), unless the user set MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_.
/// `ensure_fast_runtime` calls it.
void keep_large_blocks_in_heap();

/// Two defaults of the runtime cost torchae most of its speed on a small machine:
/// - LibTorch's OpenMP runtime (libgomp) spin-waits between parallel regions, which starves
///   the threads doing the work: the reference autoencoder trained at about 4,700 samples/s
///   that way against 15,000 with OMP_WAIT_POLICY=PASSIVE. libgomp reads the variable once,
///   when it loads, before `main`, so the only way to set it for the user is to set it and
///   re-execute the program.
/// - malloc's handling of large blocks (`keep_large_blocks_in_heap`), set in the process.
/// Call this first thing in `main`; it re-executes only when OMP_WAIT_POLICY is not set (by
/// the user or by the re-executed process), so a user's explicit choice always wins.
void ensure_fast_runtime(char** argv);

/// Resolves "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"; throws Error
/// for an unknown spec or a CUDA device that is not there.
torch::Device resolve_device(const std::string& spec);

/// Sets LibTorch's intra-op thread count; 0 sets LibTorch's default (the count the process had
/// when torchae first set it), so that a setting does not leak from one caller to the next.
void set_threads(int64_t threads);

/// OpenBLAS's own thread count (its matrix products run on threads of their own, apart from
/// LibTorch's intra-op threads): `openblas_get_num_threads`, looked up in the running process, so
/// that a LibTorch on another BLAS still links and runs; 0 when the process has no OpenBLAS.
int64_t blas_threads();

/// Sets OpenBLAS's thread count (`openblas_set_num_threads`); 0 sets the count the process had
/// when torchae first set it. false, and nothing done, when the process has no OpenBLAS.
bool set_blas_threads(int64_t threads);

/// The cores this process may run on (its CPU affinity), shared by the ranks of a data-parallel
/// run on this machine (torchrun's LOCAL_WORLD_SIZE): at least 1.
int64_t cores_per_process();

/// Lets `thread` run on any core the calling thread may run on but the one it is on now, when
/// that core is not `*kept_off` (then set to it). On two cores the scheduler may otherwise wake
/// `thread` on the caller's core while the other looks busy (OpenBLAS's idle threads spin there,
/// yielding), and the two share one core. Does nothing off Linux or on one core.
void keep_off_this_core(std::thread& thread, int* kept_off);

/// A second thread for a task beside the caller's: `both(there, here)` runs `there` on it and
/// `here` on the calling thread, and returns when both are done, rethrowing the first error
/// (the caller's first). For work split a few times a millisecond (the halves of a layer's
/// products, see `PairedProducts`), it waits spinning for 100 microseconds before it sleeps, on
/// either side, and it is kept off the caller's core (`keep_off_this_core`). One caller at a time.
class HelperThread {
 public:
  HelperThread();
  HelperThread(const HelperThread&) = delete;
  HelperThread& operator=(const HelperThread&) = delete;
  ~HelperThread();

  template <typename There, typename Here>
  void both(There&& there, Here&& here) {
    post(&call<std::remove_reference_t<There>>, const_cast<void*>(static_cast<const void*>(&there)));
    std::exception_ptr mine;
    try {
      here();
    } catch (...) {
      mine = std::current_exception();
    }
    std::exception_ptr theirs = wait();
    if (mine) std::rethrow_exception(mine);
    if (theirs) std::rethrow_exception(theirs);
  }

 private:
  template <typename Task>
  static void call(void* task) {
    (*static_cast<Task*>(task))();  // Task may be const: the cast adds it back
  }
  void post(void (*task)(void*), void* argument);
  std::exception_ptr wait();
  void run();

  void (*task_)(void*) = nullptr;
  void* argument_ = nullptr;
  std::exception_ptr error_;
  std::atomic<uint64_t> posted_{0}, done_{0};
  std::atomic<bool> helper_sleeps_{false}, caller_sleeps_{false}, stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_helper_, wake_caller_;
  int kept_off_ = -1;
  std::thread thread_;
};

}  // namespace torchae
