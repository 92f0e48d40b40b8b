#!/usr/bin/python3
"""The restoration recipes' models in plain PyTorch: bench/restore_compare.py's twins of `torchae bench --recipe`.

Each is written as a PyTorch user would write it (nn.Conv2d, nn.ConvTranspose2d, F.mse_loss, torch.optim.Adam),
built from the model section torchae resolved (model.json, written by `torchae bench --recipe NAME --twin DIR`):
a fully convolutional encoder (with `blocks`, residual blocks after its layers) and its mirror of transposed
convolutions; with `skips`, each encoder feature map
added to its mirror's output; with `mask_input`, the holes first filled `prefill` rings deep by averaging and the
mask as a fourth channel; with `noise_map`, each example's noise sigma as one more channel; with `residual`, the
output is the (prefilled) input plus the network's; with `chroma_bins`, colourisation by classification (Zhang,
Isola & Efros 2016): class scores over the chroma cells on the first feature map's grid, a cross-entropy against the
chroma soft-encoded over its 5 nearest cells, rebalanced by the cells' frequencies, decoded by the annealed mean.

--check DIR: loads torchae's initial parameters and buffers, runs the same batch (torchae's corrupted input, mask
and noise level map) in training mode, and checks the loss (relative 1e-5) and every gradient (relative to its
largest entry, 1e-4) against torchae's. Without it: times --steps training steps (after --warmup) on the example
pool in DIR, corrupting each batch itself as torchae does (Gaussian noise, gray, or holes drawn from the pool of
torchae's masks: the one part of the step Python gets for free), and prints one JSON line. --channels-last is what
PyTorch's performance guide advises for convolutions on the CPU: the model's weights and each batch in NHWC.

usage: bench/restore.py DIR [--check] [--steps 30] [--warmup 5] [--foreach] [--channels-last] [--threads N]
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def luma(x):
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def chroma(rgb):
    y = luma(rgb)
    return torch.cat([(rgb[:, 2:3] - y) / 1.772, (rgb[:, 0:1] - y) / 1.402], 1)


def rgb_from_luma_chroma(y, c):
    cb, cr = c[:, 0:1], c[:, 1:2]
    return torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)


def chroma_cells(step):
    """Centres [Q, 2] of the grid cells of side `step` on the (Cb, Cr) plane that some in-gamut colour reaches, and
    each grid square's cell (-1: out of gamut)."""
    n = int(math.floor(1.0 / step + 1e-9))
    centres, cell_of_square = [], []
    for i in range(n):
        for j in range(n):
            cb, cr = (i - (n - 1) / 2) * step, (j - (n - 1) / 2) * step
            g = 0.344136 * cb + 0.714136 * cr
            lo = max(0.0, -1.402 * cr, g, -1.772 * cb)
            hi = min(1.0, 1.0 - 1.402 * cr, 1.0 + g, 1.0 - 1.772 * cb)
            cell_of_square.append(len(centres) if lo <= hi else -1)
            if lo <= hi:
                centres.append((cb, cr))
    return torch.tensor(centres, dtype=torch.float32), torch.tensor(cell_of_square)


def fill_by_averaging(x, missing, steps):
    with torch.no_grad():
        known = 1.0 - missing
        x = x * known
        for _ in range(steps):
            count = F.avg_pool2d(known, 3, 1, 1)
            total = F.avg_pool2d(x, 3, 1, 1)
            reached = count > 0
            x = torch.where(reached & (known == 0), total / count.clamp_min(1e-12), x)
            known = reached.to(x.dtype)
    return x


class Encoder(nn.Module):
    def __init__(self, m, in_channels):
        super().__init__()
        self.n = len(m["channels"])
        self.blocks = [blocks(m, i) for i in range(self.n)]
        for i, c in enumerate(m["channels"]):
            k = kernel(m, i)
            setattr(self, f"conv{i}", nn.Conv2d(in_channels, c, k, stride(m, i), (k - 1) // 2))
            # Residual blocks: x + conv(relu(conv(x))), 3x3, the layer's channels.
            for b in range(self.blocks[i]):
                setattr(self, f"block{i}_{b}a", nn.Conv2d(c, c, 3, 1, 1))
                setattr(self, f"block{i}_{b}b", nn.Conv2d(c, c, 3, 1, 1))
            in_channels = c

    def forward(self, x):
        features = []
        for i in range(self.n):
            x = getattr(self, f"conv{i}")(x)
            if i + 1 < self.n:
                x = F.relu(x)
            for b in range(self.blocks[i]):
                x = x + getattr(self, f"block{i}_{b}b")(F.relu(getattr(self, f"block{i}_{b}a")(x)))
            if i + 1 < self.n:
                features.append(x)
        return x, features


class Decoder(nn.Module):
    def __init__(self, m, image_channels, classes):
        super().__init__()
        channels = m["channels"]
        self.n = len(channels)
        self.layers = self.n - 1 if classes else self.n
        for j in range(self.layers):
            i = self.n - 1 - j
            k, s = kernel(m, i), stride(m, i)
            out = image_channels if i == 0 else channels[i - 1]
            setattr(self, f"deconv{j}", nn.ConvTranspose2d(channels[i], out, k, s, (k - 1) // 2, s - 1))
        self.head = nn.Conv2d(channels[0], classes, 1) if classes else None

    def forward(self, x, features):
        for j in range(self.layers):
            x = getattr(self, f"deconv{j}")(x)
            if j + 1 == self.layers and self.head is None:
                break
            if features:
                x = x + features[self.n - 2 - j]
            x = F.relu(x)
        return self.head(x) if self.head is not None else x


def kernel(m, i):
    k = m["kernels"]
    return k[0] if len(k) == 1 else k[i]


def stride(m, i):
    s = m["strides"]
    return s[0] if len(s) == 1 else s[i]


def blocks(m, i):
    b = m.get("blocks", [0])
    return b[0] if len(b) == 1 else b[i]


class Backbone(nn.Module):
    def __init__(self, m, image_channels, classes):
        super().__init__()
        self.skips = m["skips"]
        self.encoder = Encoder(m, image_channels + (1 if m["mask_input"] or m.get("noise_map") else 0))
        self.decoder = Decoder(m, image_channels, classes)

    def forward(self, x):
        code, features = self.encoder(x)
        return self.decoder(code, features if self.skips else [])


class Restorer(nn.Module):
    """The denoising family's conv models, as the restoration recipes use them."""

    def __init__(self, m, image_channels):
        super().__init__()
        assert m["family"] == "denoising" and m["backbone"] == "conv" and m["code_size"] == 0, "not a recipe of these"
        assert m["activation"] == "relu" and m["dropout"] == 0 and m["input_dropout"] == 0
        assert m["chroma_bins"] > 0 or (
            m["output_activation"] == ("identity" if m.get("residual") else "sigmoid") and m["loss"] == "mse")
        self.m = m
        self.cells = None
        if m["chroma_bins"] > 0:
            self.cells, self.cell_of_square = chroma_cells(m["chroma_bins"])
            self.register_buffer("chroma_kernel", self.cells.t().reshape(2, -1, 1, 1).clone())
            self.register_buffer("chroma_counts", torch.zeros(len(self.cells), dtype=torch.float64))
        self.backbone = Backbone(m, image_channels, len(self.cells) if self.cells is not None else 0)

    def corrupt(self, x, pool_masks):
        """What torchae's corruption makes of a clean batch in training: (input, mask, noise level map)."""
        m = self.m
        with torch.no_grad():
            if m["corruption"] == "gaussian":
                sigma = m["level"] * (torch.rand(x.size(0)) if m["blind"] else torch.ones(x.size(0)))
                y = x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
                level = sigma.view(-1, 1, 1, 1).expand(x.size(0), 1, x.size(2), x.size(3))
                return (y.clamp(0, 1) if m["clip"] else y), None, level
            if m["corruption"] == "inpaint":
                mask = pool_masks[torch.randint(len(pool_masks), (x.size(0),))].expand_as(x)
                y = x.masked_fill(mask, 0.0)
                return (y.clamp(0, 1) if m["clip"] else y), mask, None
            if m["corruption"] == "gray":
                return luma(x).expand_as(x).contiguous(), None, None
        raise SystemExit(f"restore.py: corruption {m['corruption']} is not one of the recipes'")

    def forward(self, x, mask, level=None):
        """The class scores (colouriser) or the output logits, from the corrupted input."""
        if self.m["mask_input"]:
            missing = mask[:, 0:1].to(x.dtype)
            x = fill_by_averaging(x, missing, self.m["prefill"])
            out = self.backbone(torch.cat([x, missing], 1))
        elif self.m.get("noise_map"):
            out = self.backbone(torch.cat([x, level.to(x.dtype)], 1))
        else:
            out = self.backbone(x)
        return out + x if self.m.get("residual") else out

    def loss(self, target, out, mask):
        m = self.m
        if self.cells is None:
            error = F.mse_loss(out if m.get("residual") else torch.sigmoid(out), target, reduction="none")
            if mask is not None and (m["alpha"] != 1 or m["beta"] != 1):
                error = torch.where(mask, m["alpha"] * error, m["beta"] * error)
            return error.mean()
        # Colourisation: soft targets over the 5 cells nearest to each pixel's chroma on the scores' grid.
        f = target.size(2) // out.size(2)
        c = chroma(F.avg_pool2d(target, f, f) if f > 1 else target)
        with torch.no_grad():
            cells, weights = self.soft_encode(c)
            self.chroma_counts += torch.bincount(cells[:, 0].flatten(), minlength=len(self.cells)).double()
            w = self.class_weights(m["rebalance"])[cells[:, 0]]
        ce = -(weights * torch.log_softmax(out, 1).gather(1, cells)).sum(1)
        total = (w * ce).mean()
        # The colours themselves (torchae's model makes them in forward and logs their squared error).
        with torch.no_grad():
            colours = F.conv2d(torch.softmax(out / m["temperature"], 1), self.chroma_kernel)
            y = luma(target)
            colours = F.interpolate(colours, size=y.shape[2:], mode="bilinear", align_corners=False)
            rgb_from_luma_chroma(y, colours).clamp(0, 1)
        return total

    def soft_encode(self, c):
        """The 5 cells nearest to each pixel's chroma c [B, 2, h, w] and their Gaussian weights: searched among the
        cells of the 5x5 grid squares around it (ties broken as torchae's search breaks them, so that the twin check
        can be exact), among all cells where the gamut's edge leaves too few within reach."""
        step = self.m["chroma_bins"]
        side = int(math.floor(1.0 / step + 1e-9))
        half = (side - 1) / 2
        grid = torch.round(c.double() / step + half).clamp(0, side - 1).long()
        offsets = torch.arange(-2, 3)
        i = grid[:, 0:1] + offsets.repeat_interleave(5).view(1, 25, 1, 1)
        j = grid[:, 1:2] + offsets.repeat(5).view(1, 25, 1, 1)
        inside = (i >= 0) & (i < side) & (j >= 0) & (j < side)
        cells = self.cell_of_square[i.clamp(0, side - 1) * side + j.clamp(0, side - 1)].masked_fill(~inside, -1)
        di = c[:, 0:1] - (i.to(c.dtype) - half) * step
        dj = c[:, 1:2] - (j.to(c.dtype) - half) * step
        d2 = (di * di + dj * dj).masked_fill(cells < 0, math.inf)
        near, k = d2.topk(5, 1, largest=False)
        chosen = cells.gather(1, k)
        unsure = near[:, 4] > (2.0 * step) ** 2
        if unsure.any():
            points = c.permute(0, 2, 3, 1)[unsure]
            far_near, far_cells = torch.cdist(points, self.cells).pow(2).topk(5, 1, largest=False)
            near = near.permute(0, 2, 3, 1).index_put((unsure,), far_near).permute(0, 3, 1, 2)
            chosen = chosen.permute(0, 2, 3, 1).index_put((unsure,), far_cells).permute(0, 3, 1, 2)
        sigma = step / 2
        return chosen, torch.softmax(near / (-2.0 * sigma * sigma), 1)

    def class_weights(self, lam):
        n = self.chroma_counts
        c = self.cells.double()
        sigma = self.m["chroma_bins"] / 2
        k = torch.exp(torch.cdist(c, c).pow(2) / (-2 * sigma * sigma))
        k = k / k.sum(0, keepdim=True)
        p = k.mv(n / n.sum())
        w = 1.0 / ((1 - lam) * p + lam / len(c))
        return (w / (p * w).sum()).float()


def load(directory):
    """The twin of torchae's model, with torchae's initial weights and buffers, and what torchae wrote."""
    with open(os.path.join(directory, "model.json")) as f:
        m = json.load(f)
    twin = torch.load(os.path.join(directory, "twin.pt"))
    model = Restorer(m, twin["batch"].size(1))
    state = {k.split("/", 1)[1]: v for k, v in twin.items() if k.startswith(("param/", "buffer/"))}
    model.load_state_dict(state, strict=True)
    return model, twin


def check(directory):
    model, twin = load(directory)
    model.train()
    x = twin["batch"]
    mask = twin.get("mask") if model.m["corruption"] == "inpaint" else None
    out = model(twin["input"], mask, twin.get("noise_level"))
    loss = model.loss(x, out, mask)
    loss.backward()
    ref = twin["loss"].item()
    worst = {}
    for name, p in model.named_parameters():
        g = twin["grad/" + name]
        worst[name] = ((p.grad - g).abs().max() / g.abs().max().clamp_min(1e-30)).item()
    loss_error = abs(loss.item() - ref) / abs(ref)
    ok = loss_error < 1e-5 and max(worst.values()) < 1e-4
    print(json.dumps({"check": "ok" if ok else "FAILED", "loss_torchae": ref, "loss_pytorch": loss.item(),
                      "loss_relative_error": loss_error, "worst_gradient_error": max(worst.values())}))
    raise SystemExit(0 if ok else 1)


def bench(directory, steps, warmup, foreach, channels_last):
    model, twin = load(directory)
    torch.manual_seed(0)
    pool, pool_masks = twin["pool"], twin.get("pool_masks")
    batch = twin["batch"].size(0)
    model.train()
    if channels_last:
        model.backbone.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
    order, position = None, len(pool)

    def step():
        nonlocal order, position
        if position + batch > len(pool):
            order, position = torch.randperm(len(pool)), 0
        x = pool.index_select(0, order[position:position + batch])
        position += batch
        corrupted, mask, level = model.corrupt(x, pool_masks)
        if channels_last:
            corrupted = corrupted.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(x, model(corrupted, mask, level), mask)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "pytorch", "batch": batch, "steps": steps, "threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"), "foreach": foreach,
                      "channels_last": channels_last,
                      "seconds": seconds, "samples_per_s": batch * steps / seconds, "final_loss": loss}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="what `torchae bench --recipe NAME --twin DIR` wrote")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--foreach", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true", help="the model's weights and inputs NHWC")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.check:
        check(args.dir)
    else:
        bench(args.dir, args.steps, args.warmup, args.foreach, args.channels_last)


if __name__ == "__main__":
    main()
