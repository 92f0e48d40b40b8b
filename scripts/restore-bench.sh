#!/usr/bin/env bash
# The restoration benchmark of the README: builds the restoration models of the zoo (those not
# built yet) into DIR (default runs/restore), then scores each against OpenCV's classical
# methods with `torchae restore-eval`, writing one JSON per row of the README's tables and the
# demo pictures (docs/images/restore-*.png). On 2 cores, with other work beside them, on
# 2026-12-03: dae-conv-fashion trained in 12 minutes, inpaint-conv-natural in 43 (20 epochs,
# beside another training; its first epochs alone took 78-87 s); on 2026-12-05 dae-conv-natural
# (its residual network told the noise level) in 35, partly beside builds; scoring took 3 to 9 minutes for each natural denoising row
# (the DCT filter's sigma is chosen on 18 crops), 3 to 6 minutes for each inpainting row, before
# the classical methods ran an image a core (on 2026-12-07: the sigma 25 row 195 s against 268,
# the text inpainting row 137 s against 234).
# FSR_BEST=1 adds frequency-selective reconstruction's best profile to the inpainting rows
# (restore-eval --fsr-best): 21 to 29 minutes a row here on 2026-12-07, one row a core, before
# the classical methods ran an image a core; after, the text row took 24 minutes alone.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/restore}
natural=/usr/share/doc/opencv-doc/examples/data
scripts/build.sh torchae_cli
mkdir -p "$out" docs/images
for recipe in dae-conv-fashion dae-conv-natural inpaint-conv-natural colorize-conv-natural; do
  [ -f "$out/$recipe.pt" ] || build/torchae zoo build "$recipe" --out "$out"
done
eval_to() {  # eval_to NAME ARGS...: one restore-eval, its JSON in DIR/NAME.json
  local name=$1
  shift
  echo "== $name"
  build/torchae restore-eval "$@" > "$out/$name.json"
}
# Fashion-MNIST, sigma 0.1, 0.2, 0.3 in [0, 1] units: 25.5, 51, 76.5 in 0-255 units.
for sigma in 25.5 51 76.5; do
  picture=()
  [ "$sigma" = 51 ] && picture=(--picture docs/images/restore-fashion-denoise.png)
  eval_to "fashion-denoise-$sigma" --model "$out/dae-conv-fashion.pt" --noise "$sigma" --n 10000 "${picture[@]}"
done
for sigma in 5 15 25; do
  extra=()
  [ "$sigma" = 25 ] && extra=(--picture docs/images/restore-natural-denoise.png)
  [ "$sigma" = 5 ] && extra=(--no-baselines)  # the nearly clean image: the model against its input
  eval_to "natural-denoise-$sigma" --model "$out/dae-conv-natural.pt" --data "$natural" --noise "$sigma" "${extra[@]}"
  # The model told the level, and self-ensembled too (the model's columns only).
  eval_to "natural-denoise-$sigma-told" --model "$out/dae-conv-natural.pt" --data "$natural" --noise "$sigma" \
    --no-baselines --noise-level "$sigma"
  eval_to "natural-denoise-$sigma-told-ensembled" --model "$out/dae-conv-natural.pt" --data "$natural" \
    --noise "$sigma" --no-baselines --noise-level "$sigma" --self-ensemble
done
fsr=()
[ "${FSR_BEST:-0}" = 1 ] && fsr=(--fsr-best)
eval_to natural-inpaint-random --model "$out/inpaint-conv-natural.pt" --task inpaint --data "$natural" --mask random \
  --picture docs/images/restore-natural-inpaint.png "${fsr[@]}"
eval_to natural-inpaint-text --model "$out/inpaint-conv-natural.pt" --task inpaint --data "$natural" --mask text "${fsr[@]}"
eval_to natural-inpaint-blocks25 --model "$out/inpaint-conv-natural.pt" --task inpaint --data "$natural" --mask blocks:0.25 \
  "${fsr[@]}"
eval_to natural-colorize --model "$out/colorize-conv-natural.pt" --task colorize --data "$natural" \
  --picture docs/images/restore-natural-colorize.png
echo "== done: $out/*.json, docs/images/restore-*.png"
