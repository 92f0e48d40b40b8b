#!/usr/bin/python3
"""Plain-PyTorch twin of `torchae bench`: the same reference autoencoder, data and batching.

784-512-128-512-784, ReLU on every hidden layer (the code included), sigmoid output with the
binary cross-entropy computed from logits, Adam (lr 1e-3), batch 128, Fashion-MNIST training
images held in memory as one float tensor, one index_select per batch of a shuffled index.
This is PyTorch at its best on CPU: no DataLoader, no per-example collation. Run it with
OMP_WAIT_POLICY=PASSIVE for Python's best threading setting (bench/compare.sh does).

It is the exact twin of `torchae bench`: seed 0, then the model's initialisation (LibTorch's
Linear init, layer by layer, from the same generator), then one randperm of the 60,000 images
per pass, so that both take the same batches in the same order and reach the same loss after
the same steps (bench/compare.sh checks 20 steps to 1e-5 before it times anything; over
hundreds of steps rounding differences grow, as between any two BLAS thread counts).

Prints one JSON line: {"impl": "pytorch", "samples_per_s": ..., ...}.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

DEFAULT_IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def load_idx_images(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">u4")
    if magic != 0x803:
        raise SystemExit(f"{path}: not an IDX image file (magic {magic:#x})")
    pixels = np.frombuffer(data[16:], dtype=np.uint8).reshape(n, rows * cols)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--images", default=DEFAULT_IMAGES)
    parser.add_argument("--foreach", action="store_true",
                        help="Adam with foreach=True (multi-tensor ops) instead of the default loop")
    args = parser.parse_args()

    torch.manual_seed(0)
    images = load_idx_images(args.images)
    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 128), nn.ReLU(),
        nn.Linear(128, 512), nn.ReLU(),
        nn.Linear(512, 784),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=args.foreach or None)
    n = images.shape[0]
    order = torch.randperm(n)
    position = 0

    def step():
        nonlocal order, position
        if position + args.batch > n:
            order, position = torch.randperm(n), 0
        x = images.index_select(0, order[position:position + args.batch])
        position += args.batch
        loss = F.binary_cross_entropy_with_logits(model(x), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "batch": args.batch,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "adam_foreach": args.foreach,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "seconds": round(seconds, 4),
        "samples_per_s": round(args.batch * args.steps / seconds, 1),
        "final_loss": loss.item(),
    }))


if __name__ == "__main__":
    main()
