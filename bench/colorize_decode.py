#!/usr/bin/python3
"""How a colouriser's class scores decode: PSNR against colourfulness at other temperatures and chroma gains.

A colouriser by classification (`chroma_bins`) scores cells of the chroma plane and decodes them by the annealed
mean at its temperature T (README, "Colour as classes"). This script decodes the scores of an exported archive
(its `net_forward` and `chroma_kernel`) at each T of --temperatures, and multiplies the chroma by each gain of
--gains (1: as torchae decodes), then keeps the input's luma as `restore --task colorize` does. It scores the
result on the five held-out photographs of the opencv-doc recipes and on the validation crops `restore-eval`
chooses settings on (centre crops, 128x128 at most, of every fifth other colour image), each whole image in one
pass (reflect-padded to a multiple of its strides' product) rather than tiled: at T and gain of the archive it
gives the shipped figure (figures.json) to 0.02 dB, which the script checks first. The settings of the model
(its temperature, lambda, strides, held-out photographs) are read from the archive's model card.

A gain scales the predicted chroma about gray, so colourfulness (Hasler & Suesstrunk 2003, linear in the
chroma) scales with it; under the model's own distribution it is the decoding that adds a given chroma energy
at the least expected squared error, if that distribution were calibrated. Settings read off the photographs
are chosen on the test images: report them as such.

A model trained with rebalancing (`rebalance` lambda < 1) scores each cell as if it were as much more frequent
as its weight w says: the scores minimise the weighted cross-entropy, so their softmax is about p(c) w(c),
normalised. With --calibrate each setting is also decoded from the scores minus log w, which undoes that
(their softmax is then about p(c) itself, whose mean at T 1 is the least squared error guess, were the model
calibrated). w is `ChromaBins::class_weights` of the model's lambda (or --rebalance), from the cells'
frequencies counted on the training images (every image that is not held out, gray ones too unless
--skip-gray, whole and averaged to the scores' grid as the loss averages its target) rather than on the
training patches the model counted (the archive does not keep its counts): an approximation.

With --match each setting is also decoded with a gain of each image's own, applied about the image's mean
chroma rather than about gray: the one that makes the spread of the decoded chroma over the image what the
model's distribution says the truth's is. By the law of total variance the truth's chroma varies over an image
by the variance of the predicted means plus the mean of the predicted variances, so the gain is
sqrt(1 + mean variance / variance of the means) (on the scores' grid, cb and cr together), and the mean chroma,
which a calibrated model predicts without bias, is left as it is. It needs no setting read off any image.

usage: bench/colorize_decode.py [--model models/zoo/shipped/colorize-conv-natural.pt]
                                [--temperatures 0.38,0.6,1] [--gains 1,1.1,1.2,1.3]
                                [--calibrate [--rebalance L] [--skip-gray]] [--match]
Prints one line a setting and, last, one JSON line.
"""
import argparse
import json
import os

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = "/usr/share/doc/opencv-doc/examples/data"
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}


def read(path):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).double() / 255
    return rgb, bgr


def is_gray(bgr):
    b, g, r = (bgr[..., i].astype(int) for i in range(3))
    return max(abs(b - g).max(), abs(g - r).max()) <= 2


def image_files():
    """The image files of DATA, sorted."""
    return sorted(f for f in os.listdir(DATA) if os.path.splitext(f)[1].lower() in EXTENSIONS)


def images(held):
    """The held-out photographs and the validation crops, as restore-eval picks them."""
    files = image_files()
    test = [read(os.path.join(DATA, f))[0] for f in held]
    validation, k = [], 0
    for f in files:
        if f in held:
            continue
        k += 1
        if (k - 1) % 5:
            continue
        rgb, bgr = read(os.path.join(DATA, f))
        if is_gray(bgr):
            continue
        h, w = min(128, rgb.shape[1]), min(128, rgb.shape[2])
        top, left = (rgb.shape[1] - h) // 2, (rgb.shape[2] - w) // 2
        validation.append(rgb[:, top:top + h, left:left + w].contiguous())
    return test, validation


def luma(x):
    return 0.299 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :] + 0.114 * x[..., 2:3, :, :]


def scores(model, image, multiple):
    """The class scores of the gray image, its luma, and its size."""
    y = luma(image)[None].float()
    h, w = image.shape[1:]
    hp, wp = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    gray = y.expand(1, 3, h, w)
    if (hp, wp) != (h, w):
        mode = "reflect" if hp - h < h and wp - w < w else "replicate"
        gray = torch.nn.functional.pad(gray, (0, wp - w, 0, hp - h), mode=mode)
    with torch.no_grad():
        return model.net_forward(gray.contiguous()), y, (h, w, hp, wp)


def class_log_weights(centres, held, rebalance, skip_gray, step, pool):
    """log w of ChromaBins::class_weights for cells of side `step` at `centres` [Q, 2] (cb, cr), from the training
    images averaged `pool` x `pool` (the scores' grid)."""
    counts = torch.zeros(centres.shape[0], dtype=torch.float64)
    for f in (f for f in image_files() if f not in held):
        rgb, bgr = read(os.path.join(DATA, f))
        if skip_gray and is_gray(bgr):
            continue
        x = torch.nn.functional.avg_pool2d(rgb[None], pool, pool)[0]
        y = luma(x[None])[0, 0]
        chroma = torch.stack([(x[2] - y) / 1.772, (x[0] - y) / 1.402], -1).reshape(-1, 2)
        counts += torch.bincount(torch.cdist(chroma, centres).argmin(1), minlength=centres.shape[0]).double()
    sigma = step / 2
    kernel = torch.exp(torch.cdist(centres, centres).pow(2) / (-2 * sigma * sigma))
    p = (kernel / kernel.sum(0, keepdim=True)).mv(counts / counts.sum())
    w = 1 / ((1 - rebalance) * p + rebalance / centres.shape[0])
    return torch.log(w / (p * w).sum()).float().view(1, -1, 1, 1)


def decode(model, s, y, size, temperature, gain, match=False):
    h, w, hp, wp = size
    p = torch.softmax(s / temperature, 1)
    c = torch.conv2d(p, model.chroma_kernel)
    if match:
        # The predicted variance at each cell: E|chroma|^2 - |E chroma|^2.
        variance = torch.conv2d(p, model.chroma_kernel.pow(2).sum(0, keepdim=True)) - c.pow(2).sum(1, keepdim=True)
        mean = c.mean((2, 3), keepdim=True)
        spread = (c - mean).pow(2).sum(1).mean()
        c = mean + (c - mean) * torch.sqrt(1 + variance.clamp_min(0).mean() / spread)
    c = c * gain
    c = torch.nn.functional.interpolate(c, size=(hp, wp), mode="bilinear", align_corners=False)[..., :h, :w]
    cb, cr = c[:, 0:1], c[:, 1:2]
    out = torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1).clamp(0, 1)[0].double()
    # The input's luma kept, as restore does.
    return (out + (luma(y[0].double().expand(3, h, w)) - luma(out))).clamp(0, 1)


def psnr(a, b):
    return 10 * np.log10(1 / ((a - b) ** 2).mean().item())


def colourfulness(x):
    x = x * 255
    rg, yb = x[0] - x[1], 0.5 * (x[0] + x[1]) - x[2]
    return float(np.sqrt(rg.var(unbiased=False) + yb.var(unbiased=False)) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.path.join(ROOT, "models/zoo/shipped/colorize-conv-natural.pt"))
    parser.add_argument("--temperatures", default="0.38,0.6,1")
    parser.add_argument("--gains", default="1,1.1,1.2,1.3")
    parser.add_argument("--calibrate", action="store_true", help="also decode the scores minus log w (see above)")
    parser.add_argument("--rebalance", type=float, help="the lambda of w (default: the model's)")
    parser.add_argument("--skip-gray", action="store_true", help="count colour training images only (skip_gray)")
    parser.add_argument("--match", action="store_true",
                        help="also decode with each image's own gain about its mean chroma (see above)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = {"model_card.json": ""}
    model = torch.jit.load(args.model, _extra_files=extra)
    # The model's own settings and held-out photographs, as it was trained (its card's configuration).
    recipe = json.loads(extra["model_card.json"])["config"]
    test, validation = images(recipe["data"]["test_images"])
    own_t = recipe["model"]["temperature"]
    multiple = int(np.prod(recipe["model"]["strides"]))
    log_w = None
    if args.calibrate:
        rebalance = recipe["model"]["rebalance"] if args.rebalance is None else args.rebalance
        centres = model.chroma_kernel.double()[:, :, 0, 0].t()
        log_w = class_log_weights(centres, recipe["data"]["test_images"], rebalance, args.skip_gray,
                                  recipe["model"]["chroma_bins"], recipe["model"]["strides"][0])
    sets = {"photographs": test, "validation": validation}
    decoded = {name: [scores(model, x, multiple) for x in xs] for name, xs in sets.items()}
    result = {"model": args.model, "settings": []}
    for name, xs in sets.items():
        gray = np.mean([psnr(luma(x).expand(3, *x.shape[1:]), x) for x in xs])
        truth = np.mean([colourfulness(x) for x in xs])
        result[name] = {"n": len(xs), "gray_psnr_db": gray, "truth_colourfulness": truth}
        print(f"{name}: {len(xs)} images, the gray input {gray:.2f} dB, the truth's colourfulness {truth:.1f}")
    figure = json.load(open(os.path.join(ROOT, "models/zoo/shipped/figures.json")))["colorize-conv-natural"]
    for calibrated, match in [(c, m) for c in ([False, True] if args.calibrate else [False])
                              for m in ([False, True] if args.match else [False])]:
        for t in [float(v) for v in args.temperatures.split(",")] + [own_t]:
            for g in [float(v) for v in args.gains.split(",")] + [1.0]:
                if any(r["calibrated"] == calibrated and r["matched"] == match and r["temperature"] == t
                       and r["gain"] == g for r in result["settings"]):
                    continue
                row = {"calibrated": calibrated, "matched": match, "temperature": t, "gain": g}
                for name, xs in sets.items():
                    outs = [decode(model, s - log_w if calibrated else s, y, size, t, g, match)
                            for s, y, size in decoded[name]]
                    row[name] = {"psnr_db": float(np.mean([psnr(o, x) for o, x in zip(outs, xs)])),
                                 "colourfulness": float(np.mean([colourfulness(o) for o in outs]))}
                if (not calibrated and not match and t == own_t and g == 1.0
                        and args.model.endswith("shipped/colorize-conv-natural.pt")):
                    gap = abs(row["photographs"]["psnr_db"] - figure["psnr_db"])
                    assert gap < 0.02, f"the archive's own decoding is {gap:.3f} dB from its figure: this script is off"
                result["settings"].append(row)
                photographs = row["photographs"]
                print(f"{'calibrated, ' if calibrated else ''}{'matched, ' if match else ''}T {t:.2f} gain {g:.2f}: "
                      f"photographs {photographs['psnr_db']:.2f} dB, colourfulness {photographs['colourfulness']:.1f}; validation "
                      f"{row['validation']['psnr_db']:.2f} dB, {row['validation']['colourfulness']:.1f}",
                      flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
