#!/usr/bin/python3
"""LibTorch's transposed convolution against the mirror computation torchae uses, side by side.

On the CPU, LibTorch 1.13 runs a transposed convolution on its native loop (slow_conv_transpose2d)
while the convolution it mirrors runs on oneDNN. A transposed convolution is that convolution's
input gradient, and its weight gradient is the mirror's too, so torchae::conv_transpose2d computes
forward and backward with aten::convolution_backward and aten::conv2d. This script times one
forward and backward of each, for the layers of the conv decoders of the restoration recipes, in
rounds interleaved so that machine noise hits both alike, and checks that they agree.

With --channels-last the maps (input, output and gradient) are NHWC, as torchae's conv backbone keeps them on the
CPU; LibTorch's native loop then reorders them, while oneDNN takes them as they are.

usage: bench/conv_transpose.py [--batch 64] [--rounds 5] [--threads 1] [--channels-last]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (input channels, output channels, input side, stride, kernel) of transposed convolutions.
LAYERS = [(128, 128, 6, 2, 3), (128, 64, 12, 2, 3), (64, 32, 24, 2, 3), (32, 3, 48, 1, 3), (64, 3, 24, 2, 5)]


def mirrored(x, w, b, stride, padding, output_padding):
    n, _, h, width = x.shape
    k = w.shape[2]
    shape = [n, w.shape[1], (h - 1) * stride - 2 * padding + k + output_padding,
             (width - 1) * stride - 2 * padding + k + output_padding]
    out = torch.empty(shape, memory_format=torch.channels_last if x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format)
    return torch.ops.aten.convolution_backward(x, out, w, None, [stride] * 2, [padding] * 2, [1, 1],
                                               False, [0, 0], 1, [True, False, False])[0] + b.view(1, -1, 1, 1)


def mirrored_backward(x, w, grad, stride, padding):
    grad_x = F.conv2d(grad, w, None, stride=stride, padding=padding)
    grad_w = torch.ops.aten.convolution_backward(x, grad, w, None, [stride] * 2, [padding] * 2, [1, 1], False,
                                                 [0, 0], 1, [False, True, False])[1]
    return grad_x, grad_w, grad.sum((0, 2, 3))


def timed(step, repeats=3):
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels-last", action="store_true", help="NHWC maps, as torchae's conv backbone on the CPU")
    args = parser.parse_args()
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| layer (in-out, side, stride, kernel) | LibTorch ms | mirrored ms | speed-up | max rel. difference |")
    print("|---|---|---|---|---|")
    for ci, co, side, stride, k in LAYERS:
        padding, output_padding = (k - 1) // 2, stride - 1
        x = torch.randn(args.batch, ci, side, side).contiguous(memory_format=layout).requires_grad_()
        w = torch.randn(ci, co, k, k, requires_grad=True)
        b = torch.zeros(co, requires_grad=True)
        y = F.conv_transpose2d(x, w, b, stride, padding, output_padding)
        grad = torch.randn(y.shape).contiguous(memory_format=layout)
        theirs = [y.detach()] + list(torch.autograd.grad(y, (x, w, b), grad))
        with torch.no_grad():
            ours = [mirrored(x, w, b, stride, padding, output_padding)] + list(
                mirrored_backward(x, w, grad, stride, padding))
        difference = max(((a - t).abs().max() / t.abs().max()).item() for a, t in zip(ours, theirs))

        def libtorch():
            F.conv_transpose2d(x, w, b, stride, padding, output_padding).backward(grad)

        def ours_step():
            with torch.no_grad():
                mirrored(x, w, b, stride, padding, output_padding)
                mirrored_backward(x, w, grad, stride, padding)

        rounds = [(timed(libtorch), timed(ours_step)) for _ in range(args.rounds)]
        a = statistics.median(r[0] for r in rounds)
        m = statistics.median(r[1] for r in rounds)
        ratio = statistics.median(r[0] / r[1] for r in rounds)
        print(f"| {ci}-{co}, {side}, {stride}, {k} | {a:.1f} | {m:.1f} | {ratio:.2f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
