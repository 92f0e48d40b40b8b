#!/usr/bin/env bash
# Data-parallel scaling on this machine: 1 process x 2 threads against 2 processes x 1 thread
# (torchrun, Gloo over loopback), for the reference MLP and a conv model, at the same global batch.
# Rounds interleave the two so that machine noise hits both alike; the figures are medians. For
# the two-process runs it also gives the all-reduce's share of the step (waiting for the slower rank
# included), the bytes all-reduced per step, and the all-reduce alone: the time of one all-reduce
# of a step's gradients, back to back with both ranks ready, and its rate. One process with one
# thread is measured too, for the scaling of the work itself.
#
# usage: bench/distributed.sh [ROUNDS] [STEPS]     (from the repository root, after building)
set -euo pipefail
rounds=${1:-3}
steps=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
torchae=${TORCHAE:-$here/../build/torchae}
[ -x "$torchae" ] || { echo "distributed.sh: $torchae not built (scripts/build.sh)" >&2; exit 1; }
command -v torchrun >/dev/null || { echo "distributed.sh: no torchrun (apt-get install python3-torch)" >&2; exit 1; }

declare -A models=(
  [mlp]=''
  [conv]='{"family": "undercomplete", "backbone": "conv", "channels": [16, 32], "code_size": 32}'
)
json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join(str(d.get(k, 0)) for k in '$1'.split()))"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-6s %11s %11s %11s %8s %12s %11s %12s %11s\n' model "1x1 samp/s" "1x2 samp/s" "2x1 samp/s" "2x1/1x2" \
  "allreduce %" "bytes/step" "alone (ms)" "alone MB/s"
for name in mlp conv; do
  model=()
  [ -n "${models[$name]}" ] && model=(--model "${models[$name]}")
  single=(); one=(); two=(); share=(); bytes=0; alone=(); rate=()
  for r in $(seq "$rounds"); do
    single+=("$("$torchae" bench --threads 1 --steps "$steps" "${model[@]}" | json samples_per_s)")
    one+=("$("$torchae" bench --threads 2 --steps "$steps" "${model[@]}" | json samples_per_s)")
    read -r s f b t m < <(OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 -r 2 -t 2 --no_python \
      "$torchae" bench --threads 1 --steps "$steps" "${model[@]}" 2>/dev/null \
      | json "samples_per_s all_reduce_fraction all_reduce_bytes_per_step all_reduce_alone_ms all_reduce_alone_mb_per_s")
    two+=("$s"); share+=("$f"); bytes=$b; alone+=("$t"); rate+=("$m")
  done
  awk -v n="$name" -v z="$(median "${single[@]}")" -v a="$(median "${one[@]}")" -v b="$(median "${two[@]}")" \
    -v f="$(median "${share[@]}")" -v y="$bytes" -v t="$(median "${alone[@]}")" -v m="$(median "${rate[@]}")" \
    'BEGIN {printf "%-6s %11.0f %11.0f %11.0f %8.2f %12.1f %11s %12.2f %11.0f\n", n, z, a, b, b / a, 100 * f, y, t, m}'
done
