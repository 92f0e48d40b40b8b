#!/usr/bin/env bash
# Builds torchae against a CUDA LibTorch and runs what needs a GPU, on a machine that has
# PyTorch with CUDA but none of Debian's packages (and no network).
#
#   scripts/cuda_check.sh pack DIR   on this Debian 12 machine: copies the build dependencies
#                                    (headers, CMake configs, OpenCV with every library it
#                                    loads) and Fashion-MNIST's test split into DIR/deps.tar.xz
#   scripts/cuda_check.sh run DIR OUT   on the GPU machine: unpacks DIR/deps.tar.xz, builds
#                                    build-cuda/ against python3's torch, runs the Cuda* tests,
#                                    a train/eval/export/viz session on CUDA, the CUDA benchmark
#                                    and then the rest of the suite; logs go to OUT
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: cuda_check.sh pack DIR | run DIR OUT}
dir=${2:?usage: cuda_check.sh pack DIR | run DIR OUT}
arch=x86_64-linux-gnu

pack() {
  local stage
  stage=$(mktemp -d)
  local usr=$stage/deps/usr lib=$stage/deps/usr/lib/$arch
  mkdir -p "$usr/include" "$lib/cmake" "$usr/share/cmake" "$stage/deps/fashion" "$stage/deps/opencv"
  cp -a /usr/include/opencv4 /usr/include/fmt /usr/include/nlohmann /usr/include/CLI /usr/include/gtest /usr/include/gmock \
    /usr/include/zlib.h /usr/include/zconf.h "$usr/include/"
  cp -a /usr/share/cmake/nlohmann_json /usr/share/cmake/CLI11 "$usr/share/cmake/"
  cp -a /usr/lib/$arch/cmake/fmt /usr/lib/$arch/cmake/GTest "$lib/cmake/"
  cp -a /usr/lib/$arch/libfmt.so* /usr/lib/$arch/libgtest*.a /usr/lib/$arch/libgmock*.a /usr/lib/$arch/libz.so* "$lib/"
  # OpenCV's three modules and the closure of what they load, less the C and C++ runtimes
  # every Linux has.
  cp -a /usr/lib/$arch/libopencv_{core,imgproc,imgcodecs}.so* "$lib/"
  ldd /usr/lib/$arch/libopencv_{core,imgproc,imgcodecs}.so.4.6.0 | awk '/=> \// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
    while read -r l; do cp -L "$l" "$lib/"; done
  cat >"$stage/deps/opencv/OpenCVConfig.cmake" <<'EOF'
# The three OpenCV modules torchae links, from the packed Debian libraries.
get_filename_component(_deps "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(OpenCV_INCLUDE_DIRS "${_deps}/usr/include/opencv4")
set(OpenCV_LIBS)
foreach(_m core imgproc imgcodecs)
  list(APPEND OpenCV_LIBS "${_deps}/usr/lib/x86_64-linux-gnu/libopencv_${_m}.so")
endforeach()
set(OpenCV_VERSION 4.6.0)
set(OpenCV_FOUND TRUE)
EOF
  # Fashion-MNIST's test split stands in for both splits: enough to train and check on.
  local f=/usr/share/datasets/fashion-mnist
  cp "$f/t10k-images-idx3-ubyte.gz" "$f/t10k-labels-idx1-ubyte.gz" "$stage/deps/fashion/"
  ln "$stage/deps/fashion/t10k-images-idx3-ubyte.gz" "$stage/deps/fashion/train-images-idx3-ubyte.gz"
  ln "$stage/deps/fashion/t10k-labels-idx1-ubyte.gz" "$stage/deps/fashion/train-labels-idx1-ubyte.gz"
  mkdir -p "$dir"
  tar -C "$stage" -cJf "$dir/deps.tar.xz" deps
  rm -rf "$stage"
  du -h "$dir/deps.tar.xz"
}

run() {
  local out=${3:?usage: cuda_check.sh run DIR OUT}
  mkdir -p "$out"
  tar -C "$dir" -xJf "$dir/deps.tar.xz"
  local deps
  deps=$(cd "$dir/deps" && pwd)
  local torch_prefix
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' |
    tee "$out/device.txt"
  export PATH=/usr/local/cuda/bin:$PATH LD_LIBRARY_PATH=$deps/usr/lib/$arch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  mkdir -p /usr/share/datasets/fashion-mnist
  for f in "$deps"/fashion/*.gz; do
    [ -e "/usr/share/datasets/fashion-mnist/${f##*/}" ] || cp "$f" /usr/share/datasets/fashion-mnist/
  done
  local started=$SECONDS
  # PyTorch's include directory carries its own {fmt}, which shadows the packed one: use it
  # header-only.
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCHAE_BUILD_TESTS=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DOpenCV_DIR="$deps/opencv" \
    -DCMAKE_CXX_FLAGS=-DFMT_HEADER_ONLY >"$out/configure.log" 2>&1 ||
    { tail -40 "$out/configure.log"; exit 1; }
  cmake --build build-cuda --parallel "$(nproc)" -- -k 0 >"$out/build.log" 2>&1 ||
    { grep -E 'error|Error' "$out/build.log" | head -60; exit 1; }
  echo "built in $((SECONDS - started)) s"
  # A failing test does not stop the check: the summaries say what passed.
  (cd build-cuda && ctest -R 'Cuda' --output-on-failure --timeout 300 >"$out/cuda_tests.log" 2>&1) || true
  grep -A1000 'tests passed' "$out/cuda_tests.log" || tail -20 "$out/cuda_tests.log"

  local t=build-cuda/torchae run=/tmp/torchae-cuda-run
  rm -rf "$run"
  {
    $t train --set train.device=cuda --set train.epochs=2 --set data.limit=5000 --out "$run"
    $t eval --run "$run"
    $t export --run "$run" --out "$run/model.pt"
    $t viz --run "$run" --what recon --out "$run/recon.png"
    $t bench --device cuda --batch 256 --steps 200
  } >"$out/session.log" 2>&1 && echo "CLI session on CUDA: ok" || { echo "CLI session on CUDA failed"; tail -20 "$out/session.log"; }
  (cd build-cuda && ctest -E Cuda -j "$(nproc)" --timeout 300 >"$out/all_tests.log" 2>&1) || true
  grep -A1000 'tests passed' "$out/all_tests.log" || tail -20 "$out/all_tests.log"
}

case $mode in
  pack) pack ;;
  run) run "$@" ;;
  *) echo "usage: cuda_check.sh pack DIR | run DIR OUT" >&2; exit 2 ;;
esac
