#!/usr/bin/env bash
# Builds torchae and its test suite with AddressSanitizer and UndefinedBehaviorSanitizer
# (clang, build-sanitize/) and runs the whole suite under them through CTest, but for the
# packaging test consumer_find_package (a separate CMake project linking the installed,
# here instrumented, library: a check of the install, not of the code).
#
#   scripts/sanitize.sh            # as root on a fresh machine: installs clang first
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --sanitizers
source scripts/sanitizer-options.sh
scripts/build.sh --sanitize torchae_cli torchae_tests load_model
cd build-sanitize
ctest --output-on-failure --timeout 1800 -j "$(nproc)" -E '^consumer_find_package$'
