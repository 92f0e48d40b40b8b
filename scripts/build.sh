#!/usr/bin/env bash
# Configures torchae (Release, Ninja, ccache) in build/ and builds the given targets (default:
# everything, tests included). One configuration for every caller, so that the main job and
# the test suite never reconfigure the build under each other.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null && [ ! -f build/Makefile ] && generator=(-G Ninja)
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DTORCHAE_BUILD_TESTS=ON >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build --parallel "$(nproc)" "${targets[@]}"
