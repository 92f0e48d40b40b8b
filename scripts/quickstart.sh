#!/usr/bin/env bash
# The main job: installs what is needed, builds, trains the default model (undercomplete
# autoencoder) on Fashion-MNIST and evaluates it against PCA. The run lands in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh torchae_cli
run=runs/default-$(date +%Y%m%d-%H%M%S)
echo "== training the default model into $run"
build/torchae train --out "$run"
echo "== evaluating $run on the Fashion-MNIST test set"
build/torchae eval --run "$run"
echo "== done: $run holds config.json, metrics.jsonl, checkpoint.pt and eval.json"
