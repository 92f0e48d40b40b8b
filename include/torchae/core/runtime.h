#pragma once

#include <torch/types.h>

#include <string>

namespace torchae {

/// LibTorch's OpenMP runtime (libgomp) spin-waits between parallel regions by default, which
/// on a small machine starves the threads doing the work: the reference autoencoder trained at
/// about 4,700 samples/s that way against 15,000 with OMP_WAIT_POLICY=PASSIVE. libgomp reads
/// the variable once, when it loads, before `main`, so the only way to set it for the user is
/// to set it and re-execute the program. Call this first thing in `main`; it returns at once
/// when OMP_WAIT_POLICY is already set (by the user or by the re-executed process), so a
/// user's explicit choice always wins.
void ensure_passive_omp_wait(char** argv);

/// Resolves "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"; throws Error
/// for an unknown spec or a CUDA device that is not there.
torch::Device resolve_device(const std::string& spec);

/// Sets LibTorch's intra-op thread count; 0 keeps LibTorch's default.
void set_threads(int64_t threads);

}  // namespace torchae
