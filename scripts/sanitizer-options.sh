# The sanitizers' run-time options for scripts/sanitize.sh and scripts/fuzz.sh (sourced).
#
# - allocator_may_return_null=1: an allocation too large to serve returns null, as malloc does,
#   and LibTorch turns that into an error, which torchae reports naming the option that asked
#   for it (the tests of models too large to allocate). ASan's default is to abort.
# - LeakSanitizer suppressions, each with its reason: scripts/lsan-suppressions.txt.
# - Every UndefinedBehaviorSanitizer finding stops the program (it is also compiled with
#   -fno-sanitize-recover) and prints its stack.
# - clear_shadow_mmap_threshold: ASan clears the shadow of a region larger than this (64 KiB by
#   default) by mapping fresh zero pages over it rather than by memset. LibTorch allocates and
#   frees tensors of megabytes every step, each served by its own mmap under ASan, and every
#   clearing of their shadow then faults its pages in again, each fault flushing the other
#   threads' TLBs: 1 GiB keeps the shadow's pages and clears them in place. Nothing found
#   changes; only where the time goes: a test run alone takes about a third less time, while
#   the suite under `ctest -j2`, its cores already busy, takes the same (README, "Sanitizers").
export ASAN_OPTIONS="allocator_may_return_null=1:detect_stack_use_after_return=0:strict_init_order=1:check_initialization_order=1:clear_shadow_mmap_threshold=1073741824"
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan-suppressions.txt"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer || true)"
