#!/usr/bin/env bash
# Installs every Debian 12 package torchae needs to build, test and run; with --sanitizers also
# what scripts/sanitize.sh and scripts/fuzz.sh need. Idempotent: packages already present are
# left alone, and apt's lists are refreshed only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev          # LibTorch 1.13.1
  libgloo-dev           # headers of the Gloo that LibTorch's c10d (ProcessGroupGloo) is built against
  libopenblas0-pthread  # without it LibTorch falls back to the reference BLAS (~20x slower GEMM)
  zlib1g-dev            # gzip-compressed IDX files
  libfmt-dev nlohmann-json3-dev libcli11-dev libgtest-dev libopencv-dev
  dataset-fashion-mnist # /usr/share/datasets/fashion-mnist/*.gz
  opencv-doc            # natural images for restoration: /usr/share/doc/opencv-doc/examples/data
  python3-torch         # /usr/bin/python3 with the same PyTorch, for reference checks and bench/
  python3-opencv        # cv2 for /usr/bin/python3: bench/colorize_decode.py reads the photographs with it
  time                  # GNU time: the peak memory of a streamed run, measured by the tests
  chromium              # headless: the tests render torchae report's HTML page in a real browser
)
if [ "${1:-}" = --sanitizers ]; then
  packages+=(
    clang libclang-rt-14-dev  # AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's runtimes
    libfuzzer-14-dev
    llvm                      # llvm-symbolizer: sanitizer reports with file and line
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root (or with sudo)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
