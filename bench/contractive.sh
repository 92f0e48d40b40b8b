#!/usr/bin/env bash
# Cost of a contractive training step by penalty method, relative to a plain step of the same
# network (784-128 sigmoid code, tied=false, BCE, Adam, batch 128, Fashion-MNIST). Each method is
# stepped with the plain model in one process (`bench --baseline`, ten interleaved rounds), so
# that machine noise hits both alike; the costs are medians over this script's rounds.
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
order=(analytic hutchinson1 hutchinson4 exact)
declare -A rates costs
plain_rates=""
for r in $(seq "$rounds"); do
  for name in "${order[@]}"; do
    # One process steps the method and the plain model in interleaved rounds (bench --baseline).
    read -r rate cost plain_rate < <("$torchae" bench --steps "$steps" --warmup 5 --model "${models[$name]}" \
        --baseline "${models[plain]}" | /usr/bin/python3 -c \
        'import json,sys; j=json.load(sys.stdin); print(j["samples_per_s"], j["cost"], j["baseline"]["samples_per_s"])')
    rates[$name]="${rates[$name]:-} $rate"
    costs[$name]="${costs[$name]:-} $cost"
    plain_rates="$plain_rates $plain_rate"
  done
done
median() { echo "$@" | tr ' ' '\n' | sort -g | awk 'NF {a[++n]=$1} END {print a[int((n+1)/2)]}'; }
echo "method        samples/s (median)   step cost vs plain (median)"
/usr/bin/python3 -c "print(f'{\"plain\":<13} {$(median $plain_rates):>12.0f}        {1:>6.2f}x')"
for name in "${order[@]}"; do
  /usr/bin/python3 -c "print(f'{\"$name\":<13} {$(median ${rates[$name]}):>12.0f}        {$(median ${costs[$name]}):>6.2f}x')"
done
