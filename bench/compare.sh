#!/usr/bin/env bash
# torchae against plain PyTorch on the reference autoencoder, side by side.
#
# Each round runs `torchae bench` as a user would (no environment set: torchae picks its own
# OpenMP wait policy) and bench/reference.py at every setting Python could be run with here
# (OMP_WAIT_POLICY=PASSIVE, 1 or 2 threads, Adam with and without foreach), keeping Python's
# best. Rounds interleave the two so that machine noise hits both alike; the ratio printed at
# the end is the median over rounds of torchae / best Python.
#
# usage: bench/compare.sh [ROUNDS] [STEPS]     (from the repository root, after building)
set -euo pipefail
rounds=${1:-3}
steps=${2:-300}
here=$(cd "$(dirname "$0")" && pwd)
torchae=${TORCHAE:-$here/../build/torchae}
python=/usr/bin/python3
[ -x "$torchae" ] || { echo "compare.sh: $torchae not built (cmake --build build)" >&2; exit 1; }
$python -c 'import torch' 2>/dev/null || { echo "compare.sh: $python has no torch (apt-get install python3-torch)" >&2; exit 1; }

field() { $python -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

ratios=()
for r in $(seq "$rounds"); do
  ours=$(env -u OMP_WAIT_POLICY -u OMP_NUM_THREADS "$torchae" bench --steps "$steps" | field samples_per_s)
  best=0; best_setting=""
  for threads in 1 2; do
    for foreach in "" "--foreach"; do
      rate=$(OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$threads $python "$here/reference.py" --steps "$steps" $foreach \
             | field samples_per_s)
      if $python -c "import sys; sys.exit(0 if $rate > $best else 1)"; then
        best=$rate; best_setting="threads=$threads${foreach:+ foreach}"
      fi
    done
  done
  ratio=$($python -c "print(f'{$ours / $best:.2f}')")
  ratios+=("$ratio")
  printf 'round %d: torchae %.0f samples/s, pytorch best %.0f samples/s (%s, PASSIVE): %sx\n' \
    "$r" "$ours" "$best" "$best_setting" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "{\"rounds\": $rounds, \"steps\": $steps, \"ratio_median\": $median}"
