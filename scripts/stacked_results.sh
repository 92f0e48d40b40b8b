#!/usr/bin/env bash
# Reproduces the stacked-autoencoder results of the README on the full Fashion-MNIST:
#  - sdae: three denoising layers of 1000 units pretrained, then a softmax head fine-tuned with
#    the encoder; sdae-random-init: the same network and supervised epochs without pretraining;
#  - deep-ae-30: 784-1000-500-250-30 pretrained layer by layer, then fine-tuned, against PCA-30;
#  - probe-<family>: two layers (1000, 500) pretrained by each shallow family, and the linear-
#    probe accuracy of the top code (with that of raw pixels for reference).
# Usage: scripts/stacked_results.sh [OUT_DIR]   (default runs/stacked; about 50 min on 2 cores)
# Runs already complete are not trained again (train --resume continues or does nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/stacked}
. scripts/results_lib.sh

for name in sdae sdae-random-init deep-ae-30; do
  train "$name" --config "configs/stacked/$name.json" > "$out/$name.log"
  "$bin" eval --run "$out/$name" > "$out/$name.eval.json"
done
for family in undercomplete sparse ksparse denoising contractive; do
  train "probe-$family" --config configs/stacked/probe.json \
    --set "model.layers=[{\"units\": 1000, \"family\": \"$family\"}, {\"units\": 500, \"family\": \"$family\"}]" \
    > "$out/probe-$family.log"
  "$bin" eval --probe --run "$out/probe-$family" > "$out/probe-$family.eval.json"
done

/usr/bin/env python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def ev(name): return json.load(open(f"{out}/{name}.eval.json"))
def seconds(name):
    return sum(json.loads(l)["seconds"] for l in open(f"{out}/{name}/metrics.jsonl"))
print("| run | test accuracy | training time (s) |")
print("|---|---|---|")
for name in ["sdae", "sdae-random-init"]:
    print(f"| {name} | {100 * ev(name)['test_accuracy']:.2f}% | {seconds(name):.0f} |")
d = ev("deep-ae-30")
print()
print("| model | test squared error per image | test MSE |")
print("|---|---|---|")
print(f"| deep-ae-30 (784-1000-500-250-30) | {d['test_sse_per_image']:.2f} | {d['test_mse']:.4f} |")
print(f"| PCA, 30 components | {d['pca_test_sse_per_image']:.2f} | {d['pca_test_mse']:.4f} |")
print()
print("| layers pretrained by | linear probe, top code (500) | raw pixels |")
print("|---|---|---|")
for family in ["undercomplete", "sparse", "ksparse", "denoising", "contractive"]:
    p = ev(f"probe-{family}")
    print(f"| {family} | {100 * p['probe_test_accuracy']:.2f}% | {100 * p['probe_pixels_test_accuracy']:.2f}% |")
PY
