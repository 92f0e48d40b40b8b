#!/usr/bin/python3
"""Loads TorchScript archives written by torchae with Python's torch.jit.load and checks
their forward/encode/decode against the native outputs the C++ test saved beside them.

    check_archive.py MODEL.pt EXPECTED.pt [MODEL.pt EXPECTED.pt ...]

EXPECTED.pt is a dict written by torch::pickle_save: x, forward, encode, code, decode, and, for a
model with a binary code, hash (uint8 0/1 bits, which must be equal).
Prints one line per archive; exits 1 when any differs by more than 1e-5.
"""
import json
import sys

import torch

TOLERANCE = 1e-5


def check(archive, expected_file):
    extra = {"model_card.json": ""}
    model = torch.jit.load(archive, map_location="cpu", _extra_files=extra).eval()
    card = json.loads(extra["model_card.json"])
    expected = torch.load(expected_file)
    with torch.no_grad():
        got = {
            "forward": model(expected["x"]),
            "encode": model.encode(expected["x"]),
            "decode": model.decode(expected["code"]),
        }
    worst = max((got[k] - expected[k]).abs().max().item() for k in got)
    hashed = ""
    if "hash" in expected:
        with torch.no_grad():
            bits = model.hash(expected["x"])
        if bits.dtype != torch.uint8 or not torch.equal(bits, expected["hash"]):
            print(f"{archive}: {card['family']}: hash(x) differs from the native bits")
            return False
        hashed = f", hash(x) equal ({bits.shape[1]} bits)"
    # A generative model's sample(n) runs in Python too: n images of the input's shape.
    sampled = ""
    if hasattr(model, "sample"):
        with torch.no_grad():
            images = model.sample(3)
        if images.shape != (3,) + tuple(expected["x"].shape[1:]) or not torch.isfinite(images).all():
            print(f"{archive}: {card['family']}: sample(3) gave {tuple(images.shape)}")
            return False
        sampled = ", sample(3) ok"
    print(f"{archive}: {card['family']}: max |python - native| = {worst:.3g}{sampled}{hashed}")
    return worst <= TOLERANCE


def main():
    pairs = sys.argv[1:]
    if not pairs or len(pairs) % 2:
        sys.exit("usage: check_archive.py MODEL.pt EXPECTED.pt [...]")
    ok = all([check(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
