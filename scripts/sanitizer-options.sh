# The sanitizers' run-time options for scripts/sanitize.sh and scripts/fuzz.sh (sourced).
#
# - allocator_may_return_null=1: an allocation too large to serve returns null, as malloc does,
#   and LibTorch turns that into an error, which torchae reports naming the option that asked
#   for it (the tests of models too large to allocate). ASan's default is to abort.
# - LeakSanitizer suppressions, each with its reason: scripts/lsan-suppressions.txt.
# - Every UndefinedBehaviorSanitizer finding stops the program (it is also compiled with
#   -fno-sanitize-recover) and prints its stack.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_stack_use_after_return=0:strict_init_order=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan-suppressions.txt"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer || true)"
