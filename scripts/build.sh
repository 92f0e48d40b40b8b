#!/usr/bin/env bash
# Configures torchae (Release, Ninja, ccache) in build/ and builds the given targets (default:
# everything, tests included). One configuration for every caller, so that the main job and
# the test suite never reconfigure the build under each other.
#
# scripts/build.sh --sanitize [TARGET...] builds in build-sanitize/ instead: clang, with
# AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's coverage (TORCHAE_SANITIZE), at
# -O1 with line tables for the reports; scripts/sanitize.sh and scripts/fuzz.sh share it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
options=(-DCMAKE_BUILD_TYPE=Release -DTORCHAE_BUILD_TESTS=ON)
if [ "${1:-}" = --sanitize ]; then
  shift
  dir=build-sanitize
  options+=(-DCMAKE_CXX_COMPILER=clang++ -DTORCHAE_SANITIZE=ON "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -gline-tables-only")
fi
generator=()
command -v ninja >/dev/null && [ ! -f "$dir/Makefile" ] && generator=(-G Ninja)
cmake -S . -B "$dir" "${generator[@]}" "${options[@]}" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$dir" --parallel "$(nproc)" "${targets[@]}"
