#!/usr/bin/env bash
# The main job: installs what is needed, builds, trains the default model (undercomplete
# autoencoder) on Fashion-MNIST, evaluates it against PCA, exports it as a TorchScript archive
# and draws its reconstructions and filters. The run lands in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh torchae_cli
run=runs/default-$(date +%Y%m%d-%H%M%S)
echo "== training the default model into $run"
build/torchae train --out "$run"
echo "== evaluating $run on the Fashion-MNIST test set"
build/torchae eval --run "$run"
echo "== exporting $run as TorchScript"
build/torchae export --run "$run" --out "$run/model.pt"
echo "== drawing reconstructions and filters"
build/torchae viz --run "$run" --what recon --out "$run/recon.png"
build/torchae viz --run "$run" --what filters --out "$run/filters.png"
echo "== done: $run holds config.json, metrics.jsonl, checkpoint.pt, eval.json, recon.png, filters.png"
echo "== the TorchScript archive (load it with torch::jit::load or torch.jit.load): $run/model.pt"
