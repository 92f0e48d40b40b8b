#!/usr/bin/env bash
# The main job: installs what is needed, builds, trains the default model (undercomplete
# autoencoder) on Fashion-MNIST, evaluates it against PCA, exports it as a TorchScript archive
# draws its curves, reconstructions and filters, and writes its HTML report. The run lands in runs/.
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
echo "== drawing training curves, reconstructions and filters"
build/torchae viz --run "$run" --what curves --out "$run/curves.png"
build/torchae viz --run "$run" --what recon --out "$run/recon.png"
build/torchae viz --run "$run" --what filters --out "$run/filters.png"
echo "== writing the HTML report"
build/torchae report --run "$run" >/dev/null
echo "== done: $run holds config.json, metrics.jsonl, checkpoint.pt, eval.json, curves.png, recon.png, filters.png"
echo "== the TorchScript archive (load it with torch::jit::load or torch.jit.load): $run/model.pt"
echo "== the report (open it in a browser): $run/report.html"
