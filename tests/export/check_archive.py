#!/usr/bin/python3
"""Loads TorchScript archives written by torchae with Python's torch.jit.load and checks
their forward/encode/decode against the native outputs the C++ test saved beside them.

    check_archive.py MODEL.pt EXPECTED.pt [MODEL.pt EXPECTED.pt ...]

EXPECTED.pt is a dict written by torch::pickle_save: x, forward, encode, code, decode.
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
    print(f"{archive}: {card['family']}: max |python - native| = {worst:.3g}")
    return worst <= TOLERANCE


def main():
    pairs = sys.argv[1:]
    if not pairs or len(pairs) % 2:
        sys.exit("usage: check_archive.py MODEL.pt EXPECTED.pt [...]")
    ok = all([check(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
