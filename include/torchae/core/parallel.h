#pragma once

// torchae's own loops on LibTorch's intra-op threads.
//
// LibTorch 1.13's at::parallel_for is an inline template whose OpenMP body is compiled only where
// the including file is compiled with OpenMP (_OPENMP); torchae is not (GCC's -fopenmp would tie
// the build to libgomp and make a clang build load LLVM's runtime beside it), so there it runs
// every loop on the calling thread. These run them on the OpenMP runtime LibTorch itself loaded
// (libgomp's GOMP_parallel, looked up in the running process as the OpenBLAS entry points are),
// in the same pool and under the same thread count as LibTorch's own operations.

#include <c10/util/FunctionRef.h>

#include <cstdint>

namespace torchae {

/// f(b, e) over [begin, end), cut into one contiguous piece for each of LibTorch's intra-op
/// threads (at::get_num_threads(), at most one piece for every `grain` elements) when the range
/// holds more than `grain` elements, LibTorch has more than one thread and no parallel region is
/// running; otherwise f(begin, end) on the calling thread, as it is where the process has no
/// libgomp. The first exception thrown by a piece is rethrown here, after all have ended.
/// Call it from the thread that set LibTorch's thread count (a thread of its own, such as the
/// trainer's helper, would start an OpenMP team of its own beside it).
void parallel_for(int64_t begin, int64_t end, int64_t grain, c10::function_ref<void(int64_t, int64_t)> f);

/// The sum of f(b, e) over [begin, end) cut into pieces of `piece` elements (the last one
/// shorter), the pieces' sums made by `parallel_for` and added in their order: the same double
/// on any number of threads.
double parallel_sum(int64_t begin, int64_t end, int64_t piece, c10::function_ref<double(int64_t, int64_t)> f);

/// Whether `parallel_for` can run on more than the calling thread: the process has libgomp's
/// entry points (LibTorch's OpenMP build).
bool parallel_for_available();

}  // namespace torchae
