#!/usr/bin/env bash
# Cost of a contractive training step by penalty method, relative to a plain step of the same
# network (784-128 sigmoid code, tied=false, BCE, Adam, batch 128, Fashion-MNIST). Rounds
# interleave the models so that machine noise hits all alike; the ratios are medians.
#
# usage: bench/contractive.sh [ROUNDS] [STEPS]     (from the repository root, after building)
set -euo pipefail
rounds=${1:-3}
steps=${2:-100}
here=$(cd "$(dirname "$0")" && pwd)
torchae=${TORCHAE:-$here/../build/torchae}
backbone='"hidden": [], "code_size": 128, "code_activation": "sigmoid"'
declare -A models=(
  [plain]="{\"family\": \"undercomplete\", $backbone}"
  [analytic]="{\"family\": \"contractive\", \"method\": \"analytic\", $backbone}"
  [hutchinson1]="{\"family\": \"contractive\", \"method\": \"hutchinson\", \"probes\": 1, $backbone}"
  [hutchinson4]="{\"family\": \"contractive\", \"method\": \"hutchinson\", \"probes\": 4, $backbone}"
  [exact]="{\"family\": \"contractive\", \"method\": \"exact\", $backbone}"
)
order=(plain analytic hutchinson1 hutchinson4 exact)
declare -A rates
for r in $(seq "$rounds"); do
  for name in "${order[@]}"; do
    rate=$("$torchae" bench --steps "$steps" --warmup 5 --model "${models[$name]}" \
           | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])')
    rates[$name]="${rates[$name]:-} $rate"
  done
done
echo "method        samples/s (median)   step cost vs plain"
plain=$(echo ${rates[plain]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for name in "${order[@]}"; do
  median=$(echo ${rates[$name]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  /usr/bin/python3 -c "print(f'{\"$name\":<13} {$median:>12.0f}        {$plain / $median:>6.2f}x')"
done
