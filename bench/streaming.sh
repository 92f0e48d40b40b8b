#!/usr/bin/env bash
# Streamed against in-memory training data on the natural-image restoration recipe
# (models/zoo/dae-conv-natural.json: a conv denoiser on 48x48 colour crops of opencv-doc's
# photographs), at the same step count: the in-memory run trains on its fixed crops, the streamed
# one decodes the images on its loader threads and cuts fresh crops every epoch. Rounds interleave
# the variants so that machine noise hits them alike; the figures are medians over the rounds of
# the epoch times after the first (which decodes the folder into the cache), with the seconds
# the training step waited for data (data_wait_s).
#
# usage: bench/streaming.sh [ROUNDS] [PATCHES] [EPOCHS]   (from the repository root, after building)
set -euo pipefail
rounds=${1:-3}
patches=${2:-4000}
epochs=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
torchae=${TORCHAE:-$here/../build/torchae}
[ -x "$torchae" ] || { echo "streaming.sh: $torchae not built (scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The recipe without its description, which is the zoo's and not a configuration key.
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.pop('description'); json.dump(d, open(sys.argv[2], 'w'))" \
  "$here/../models/zoo/dae-conv-natural.json" "$work/recipe.json"
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Mean epoch seconds and data_wait_s over the epochs after the first.
epochs_of() {
  /usr/bin/python3 -c "
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])][1:]
print(sum(l['seconds'] for l in lines) / len(lines), sum(l['data_wait_s'] for l in lines) / len(lines))" "$1"
}

declare -A variants=(
  [memory]='--set data.source=memory'
  [stream]='--set data.source=stream'
  [stream-inline]='--set data.source=stream --set data.workers=0'
)
order=(memory stream stream-inline)
declare -A seconds waits
for r in $(seq "$rounds"); do
  for v in "${order[@]}"; do
    # shellcheck disable=SC2086
    "$torchae" train --config "$work/recipe.json" --set data.patches="$patches" --set train.epochs="$epochs" \
      ${variants[$v]} --set train.progress=none --out "$work/$v-$r" >/dev/null
    read -r s w < <(epochs_of "$work/$v-$r/metrics.jsonl")
    seconds[$v]+="$s "
    waits[$v]+="$w "
  done
done
workers=$(/usr/bin/python3 -c "import json; print(json.load(open('$work/stream-1/config.json'))['data']['workers'])")
echo "patches $patches, epochs $epochs, rounds $rounds; loader threads (stream): $workers"
printf '%-14s %12s %14s %10s\n' variant "epoch (s)" "data_wait_s" "vs memory"
base=$(median ${seconds[memory]})
for v in "${order[@]}"; do
  # shellcheck disable=SC2086
  s=$(median ${seconds[$v]}); w=$(median ${waits[$v]})
  awk -v v="$v" -v s="$s" -v w="$w" -v b="$base" 'BEGIN {printf "%-14s %12.2f %14.3f %9.3fx\n", v, s, w, s / b}'
done
