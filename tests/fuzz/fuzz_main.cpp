// One libFuzzer program per target: TORCHAE_FUZZ_TARGET names the function of targets.h.

#include "fuzz/targets.h"

#include "torchae/core/runtime.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torchae::set_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  torchae::fuzz::TORCHAE_FUZZ_TARGET(data, size);
  return 0;
}
