#!/usr/bin/env bash
# Trains a plain, two denoising (25% and 50% masking) and a contractive autoencoder of the same
# shape (784-256 sigmoid code, 10 epochs, full Fashion-MNIST) and draws each one's first-layer
# filters and reconstructions into runs/filters/. Prints each model's test evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/filters
mkdir -p "$out"
shape='--set model.hidden=[] --set model.code_size=256 --set model.code_activation=sigmoid'
declare -A extra=(
  [plain]="--set model.family=undercomplete"
  [denoising25]="--set model.family=denoising --set model.level=0.25"
  [denoising50]="--set model.family=denoising --set model.level=0.5"
  [contractive]="--set model.family=contractive"
)
for name in plain denoising25 denoising50 contractive; do
  run=$out/$name
  [ -f "$run/checkpoint.pt" ] || build/torchae train $shape ${extra[$name]} --set train.progress=none --out "$run"
  build/torchae viz --run "$run" --what filters --count 100 --out "$out/$name-filters.png"
  build/torchae viz --run "$run" --what recon --count 12 --out "$out/$name-recon.png"
  build/torchae eval --run "$run" | /usr/bin/python3 -c \
    "import json,sys; d=json.load(sys.stdin); print(f'$name: test_mse {d[\"test_mse\"]:.5f}  psnr {d[\"test_psnr_db\"]:.2f} dB')"
done
