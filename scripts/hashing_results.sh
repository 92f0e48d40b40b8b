#!/usr/bin/env bash
# Reproduces the semantic-hashing results of the README on the full Fashion-MNIST:
#  - for each recipe in configs/hashing/ and 16, 32 and 64 bits: train, then eval --retrieval (the
#    10,000 test images as queries, the 60,000 training images as the database), where LSH, PCA
#    hashing and ITQ are computed at the same bits;
#  - the table of mAP, mAP@1000, precision@100 and precision within Hamming radius 2;
#  - the precision-recall picture of the 32-bit runs, an index of the training set and a search;
#  - torchae bench --hamming: a million 64-bit codes against brute-force float kNN.
# Usage: scripts/hashing_results.sh [OUT_DIR]   (default runs/hashing; about 40 min on 2 cores)
# Runs already complete are not trained again (train --resume continues or does nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/hashing}
. scripts/results_lib.sh

recipes=(${RECIPES:-$(cd configs/hashing && ls *.json | sed 's/\.json$//')})
for recipe in "${recipes[@]}"; do
  for bits in 16 32 64; do
    name="$recipe-$bits"
    train "$name" --config "configs/hashing/$recipe.json" --set model.code_size=$bits > "$out/$name.log"
    [ -f "$out/$name.eval.json" ] || "$bin" eval --run "$out/$name" --retrieval > "$out/$name.eval.json"
  done
done
"$bin" viz --run "$out/${recipes[0]}-32" --what pr --out "$out/pr-32.png"
"$bin" export --run "$out/${recipes[0]}-32" --out "$out/${recipes[0]}-32.pt" > /dev/null
"$bin" index --model "$out/${recipes[0]}-32.pt" --data fashion-mnist --out "$out/train.index" > "$out/index.json"
/usr/bin/python3 - "$out" <<'PY'
import gzip, sys
import numpy as np
# Test image 0 as a PNG query (gray, 28x28), written with OpenCV's own format through numpy.
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
out = sys.argv[1]
with open(f"{out}/query.pgm", "wb") as f:
    f.write(b"P5 28 28 255\n" + images[0].tobytes())
PY
"$bin" search --index "$out/train.index" --model "$out/${recipes[0]}-32.pt" --query "$out/query.pgm" -k 12 \
  --picture "$out/search.png" > "$out/search.json"
"$bin" bench --hamming --items 1000000 --bits 64 --queries 100 > "$out/bench-hamming.json"

/usr/bin/python3 - "$out" "${recipes[@]}" <<'PY'
import json, sys
out, recipes = sys.argv[1], sys.argv[2:]
keys = ["map", "map_at_1000", "precision_at_100", "precision_within_radius_2"]
print("| bits | method | mAP | mAP@1000 | P@100 | P (r <= 2) | empty (r <= 2) |")
print("|---|---|---|---|---|---|---|")
for bits in (16, 32, 64):
    rows = {}
    for recipe in recipes:
        r = json.load(open(f"{out}/{recipe}-{bits}.eval.json"))["retrieval"]["methods"]
        rows[f"torchae `{recipe}`"] = r["model"]
        rows[f"`{recipe}`, Euclidean kNN on its float code"] = r["model_float_knn"]
    for name in ("itq", "pca", "lsh", "pixels_knn"):
        rows[{"itq": "ITQ", "pca": "PCA hashing", "lsh": "LSH", "pixels_knn": "Euclidean kNN on pixels"}[name]] = r[name]
    for name, m in rows.items():
        cells = [f"{m[k]:.4f}" if k in m else "" for k in keys]
        empty = f"{m['empty_within_radius_2']:.1%}" if "empty_within_radius_2" in m else ""
        print(f"| {bits} | {name} | " + " | ".join(cells) + f" | {empty} |")
b = json.load(open(f"{out}/bench-hamming.json"))
for key in sorted(k for k in b if k.startswith("threads_")):
    t = b[key]
    print(f"\nbench --hamming, {t['threads']} thread(s): Hamming {t['hamming_comparisons_per_second']:.3g}/s "
          f"({t['hamming_comparisons_per_second_per_core']:.3g}/s per core), float kNN one query "
          f"{t['float_knn_comparisons_per_second']:.3g}/s, batched {t['float_knn_batched_comparisons_per_second']:.3g}/s: "
          f"Hamming {t['hamming_over_float']:.1f}x one-query float, {t['hamming_over_float_batched']:.1f}x batched")
PY
