#!/usr/bin/env bash
# Reproduces the Boltzmann-machine results of the README on the full Fashion-MNIST:
#  - rbm-cd1, rbm-cd25, rbm-pcd: 500 hidden units on dynamically binarised images, 20 epochs each
#    (configs/rbm/), then log Z by AIS (Salakhutdinov & Murray's 14,500 temperatures, 100 runs) and
#    the test log-likelihood of the binarised test set;
#  - dbn-30: 784-1000-500-250-30 pretrained as a stack of RBMs (the top one linear-Gaussian),
#    unrolled and fine-tuned (configs/stacked/dbn-30.json); deep-ae-30 and deep-ae-30-random: the
#    same network pretrained as autoencoders, and from random initialisation, fine-tuned alike;
#  - dbm: a 784-500-1000 DBM pretrained by modified RBMs, trained jointly, then a classifier
#    fine-tuned from it (configs/dbm/dbm-500-1000.json): its likelihood bound and test accuracy.
# Usage: scripts/boltzmann_results.sh [OUT_DIR]   (default runs/boltzmann; about 70 min on 2 cores)
# Runs already complete are not trained again (train --resume continues or does nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/boltzmann}
. scripts/results_lib.sh

for k in cd1 cd25 pcd; do
  train "rbm-$k" --config "configs/rbm/$k-500.json" > "$out/rbm-$k.log"
  "$bin" eval --run "$out/rbm-$k" --fd-samples 2000 > "$out/rbm-$k.eval.json"
done
train dbn-30 --config configs/stacked/dbn-30.json > "$out/dbn-30.log"
"$bin" eval --run "$out/dbn-30" > "$out/dbn-30.eval.json"
train deep-ae-30 --config configs/stacked/deep-ae-30.json > "$out/deep-ae-30.log"
"$bin" eval --run "$out/deep-ae-30" > "$out/deep-ae-30.eval.json"
train deep-ae-30-random --config configs/stacked/deep-ae-30.json --set model.pretrain=false > "$out/deep-ae-30-random.log"
"$bin" eval --run "$out/deep-ae-30-random" > "$out/deep-ae-30-random.eval.json"
train dbm --config configs/dbm/dbm-500-1000.json > "$out/dbm.log"
"$bin" eval --run "$out/dbm" --fd-samples 1000 > "$out/dbm.eval.json"

/usr/bin/env python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def ev(name): return json.load(open(f"{out}/{name}.eval.json"))
def seconds(name):
    return sum(json.loads(l)["seconds"] for l in open(f"{out}/{name}/metrics.jsonl"))
print("| RBM, 500 hidden | log Z (AIS, +-3 sd) | test log-likelihood (nats) | pseudo-log-likelihood | s/epoch |")
print("|---|---|---|---|---|")
for k, label in [("cd1", "CD-1"), ("cd25", "CD-25"), ("pcd", "PCD-1")]:
    e = ev(f"rbm-{k}")
    lo, hi = e["ais_log_z_interval"]
    lo = "-inf" if lo is None else f"{lo:.2f}"
    print(f"| {label} | {e['ais_log_z']:.2f} [{lo}, {hi:.2f}] | {e['test_log_likelihood_ais']:.2f} "
          f"| {e['test_pseudo_log_likelihood']:.2f} | {seconds(f'rbm-{k}') / 20:.1f} |")
print()
print("| 784-1000-500-250-30 | test squared error per image | test MSE | training time (s) |")
print("|---|---|---|---|")
for name, label in [("dbn-30", "pretrained as RBMs (DBN), fine-tuned"),
                    ("deep-ae-30", "pretrained as autoencoders, fine-tuned"),
                    ("deep-ae-30-random", "random initialisation, fine-tuned")]:
    e = ev(name)
    print(f"| {label} | {e['test_sse_per_image']:.2f} | {e['test_mse']:.4f} | {seconds(name):.0f} |")
d = ev("dbn-30")
print(f"| PCA, 30 components | {d['pca_test_sse_per_image']:.2f} | {d['pca_test_mse']:.4f} | |")
print()
e = ev("dbm")
lo, hi = e["ais_log_z_interval"]
lo = "-inf" if lo is None else f"{lo:.2f}"
print("| DBM 784-500-1000 | log Z (AIS, +-3 sd) | test log-likelihood, lower bound (nats) | test accuracy, fine-tuned | training time (s) |")
print("|---|---|---|---|---|")
print(f"| | {e['ais_log_z']:.2f} [{lo}, {hi:.2f}] | {e['test_log_likelihood_ais']:.2f} | {100 * e['test_accuracy']:.2f}% | {seconds('dbm'):.0f} |")
PY
