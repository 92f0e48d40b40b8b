#!/usr/bin/env bash
# Builds the libFuzzer programs (build-sanitize/, clang with AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs each for SECONDS (default 60), as many at a time as
# there are cores, then prints executions, coverage and findings per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # targets: idx config image_folder model_card hash_index
#
# Each target starts from its seeds (tests/fuzz/corpus/<target>/) and the corpus of earlier runs
# (build-sanitize/fuzz/corpus/<target>/, where new inputs go). An input that crashes a target is
# written to build-sanitize/fuzz/crashes/<target>/ (emptied when the target starts); once the
# bug is fixed, copy it to tests/fuzz/crashes/<target>/, where the test suite runs it
# (FuzzInputs). The exit status is non-zero when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx config image_folder model_card hash_index)

scripts/install-deps.sh --sanitizers
source scripts/sanitizer-options.sh
scripts/build.sh --sanitize "${targets[@]/#/fuzz_}"
# The targets write each input to a file: on a tmpfs, the syncs of write_atomically cost nothing.
[ -w /dev/shm ] && export TMPDIR=/dev/shm

work=build-sanitize/fuzz
run_one() {
  local target=$1
  rm -rf "$work/crashes/$target"
  mkdir -p "$work/corpus/$target" "$work/crashes/$target"
  # -rss_limit_mb: LibTorch's and OpenCV's own footprint is ~1 GB under ASan.
  build-sanitize/tests/fuzz_"$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/$target/" \
    "$work/corpus/$target" "tests/fuzz/corpus/$target" > "$work/$target.log" 2>&1
}
pids=()
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do sleep 1; done
  run_one "$target" &
  pids+=("$!")
done
status=0
for i in "${!targets[@]}"; do
  wait "${pids[$i]}" || status=1
done

printf '%-14s %12s %8s %8s %10s  %s\n' target executions exec/s cov features findings
for target in "${targets[@]}"; do
  log="$work/$target.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  found=$(find "$work/crashes/$target" -type f | wc -l)
  printf '%-14s %12s %8s %8s %10s  %s\n' "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$found"
  if [ "$found" -gt 0 ]; then
    grep -m1 -E 'ERROR: |==[0-9]+==|terminate called|deadly signal' "$log" | sed 's/^/  /' || true
    status=1
  fi
done
exit "$status"
