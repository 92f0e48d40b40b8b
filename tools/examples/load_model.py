#!/usr/bin/python3
"""Loads a model exported by `torchae export` with plain PyTorch (nothing of torchae),
encodes a grayscale image and writes its reconstruction.

    /usr/bin/python3 load_model.py runs/zoo/undercomplete-32.pt shirt.pgm shirt-reconstructed.pgm

Images are binary PGM (P5, 8 bits), read and written here without other libraries.
"""
import json
import sys

import torch


def read_pgm(path):
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' starts a comment
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P5" or maxval != 255:
        raise ValueError(f"{path}: not an 8-bit binary PGM (P5)")
    pixels = data[pos + 1:pos + 1 + width * height]
    if len(pixels) != width * height:
        raise ValueError(f"{path}: truncated")
    image = torch.frombuffer(bytearray(pixels), dtype=torch.uint8)
    return image.view(1, 1, height, width).float() / 255.0


def write_pgm(path, image):
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (pixels.shape[1], pixels.shape[0]))
        f.write(pixels.contiguous().numpy().tobytes())


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: load_model.py MODEL.pt IMAGE.pgm OUT.pgm")
    extra = {"model_card.json": ""}  # the model card travels inside the archive
    model = torch.jit.load(sys.argv[1], map_location="cpu", _extra_files=extra).eval()
    card = json.loads(extra["model_card.json"])
    print(f"model: {card['family']}, input {card['input']['shape']}, trained {card['training']['epochs']} epochs")

    x = read_pgm(sys.argv[2])
    # A model trained on centred data takes images minus the training mean it carries.
    mean = model.input_mean.view_as(x) if hasattr(model, "input_mean") else torch.zeros_like(x)
    with torch.no_grad():
        code = model.encode(x - mean)
        y = model.decode(code) + mean
    print(f"code: {code.shape[1]} values, first {code.flatten()[:4].tolist()}")
    print(f"reconstruction mse: {(y - x).pow(2).mean().item():.6f}")
    write_pgm(sys.argv[3], y.view(x.shape[2], x.shape[3]))
    print(sys.argv[3])


if __name__ == "__main__":
    main()
