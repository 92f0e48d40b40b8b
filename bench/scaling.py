#!/usr/bin/python3
"""How the training step scales with work: samples/s against batch size and against width.

Each point is `torchae bench --floor` (no environment set) on the reference autoencoder's shape,
784-H-C-H-784 (ReLU, sigmoid output with BCE, Adam): first the batch from 16 to 1024 at H = 512,
C = 128; then the code width C from 32 to 1024 at H = 512 and the hidden width H from 256 to 4096
at C = 128, batch 128. Each is also given as a fraction of its floor, the same step's matrix
products timed alone in rounds interleaved with the steps, and of that floor with Adam's update of
the parameters after the products. Medians over rounds.

usage: bench/scaling.py [--rounds 3] [--steps 100]    (after building)
Prints two Markdown tables and, last, one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BATCHES = [16, 32, 64, 128, 256, 512, 1024]
WIDTHS = [(512, 32), (512, 128), (512, 512), (512, 1024), (256, 128), (1024, 128), (2048, 128), (4096, 128)]


def torchae_binary():
    return os.environ.get("TORCHAE", os.path.join(HERE, "..", "build", "torchae"))


def bench(hidden, code, batch, steps):
    model = {"family": "undercomplete", "hidden": [hidden], "code_size": code, "activation": "relu",
             "code_activation": "relu", "output_activation": "sigmoid", "loss": "bce"}
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    command = [torchae_binary(), "bench", "--floor", "--model", json.dumps(model), "--batch", str(batch),
               "--steps", str(steps), "--warmup", "10"]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps at batch 128 and H = 512, C = 128")
    args = parser.parse_args()
    if not os.access(torchae_binary(), os.X_OK):
        sys.exit(f"scaling.py: {torchae_binary()} not built (scripts/build.sh torchae_cli)")

    base_work = 128 * (784 * 512 + 512 * 128)
    points = [("batch", 512, 128, b) for b in BATCHES] + [("width", h, c, 128) for h, c in WIDTHS]
    figures = {p: {"rate": [], "floor": [], "of_floor": [], "of_adam_floor": [], "gflops": []} for p in points}
    for r in range(args.rounds):
        for point in points:
            _, hidden, code, batch = point
            # Steps scale down with the work of a step, so that each point takes about as long.
            work = batch * (784 * hidden + hidden * code)
            steps = max(20, int(args.steps * base_work / work))
            j = bench(hidden, code, batch, steps)
            f = figures[point]
            f["rate"].append(j["samples_per_s"])
            f["floor"].append(j["floor"]["samples_per_s"])
            f["of_floor"].append(j["of_floor"])
            f["of_adam_floor"].append(j["of_floor_with_adam"])
            f["gflops"].append(j["floor"]["gemm_gflops"])
            print(f"round {r + 1}: H={hidden} C={code} batch {batch}: {j['samples_per_s']:,.0f} samples/s, "
                  f"{j['of_floor']:.0%} of the floor ({j['floor']['gemm_gflops']:.0f} GFLOP/s), "
                  f"{j['of_floor_with_adam']:.0%} of the floor with Adam", flush=True)

    med = statistics.median
    summary = {"rounds": args.rounds, "points": []}
    for kind, title in (("batch", "batch"), ("width", "H-C")):
        print()
        print(f"| {title} | samples/s | floor samples/s | fraction of the floor | of the floor with Adam |")
        print("|---|---|---|---|---|")
        for point in points:
            if point[0] != kind:
                continue
            _, hidden, code, batch = point
            f = figures[point]
            label = str(batch) if kind == "batch" else f"{hidden}-{code}"
            print(f"| {label} | {med(f['rate']):,.0f} | {med(f['floor']):,.0f} | **{med(f['of_floor']):.0%}** | "
                  f"{med(f['of_adam_floor']):.0%} |")
            summary["points"].append({"hidden": hidden, "code": code, "batch": batch, "samples_per_s": med(f["rate"]),
                                      "floor_samples_per_s": med(f["floor"]), "of_floor": med(f["of_floor"]),
                                      "of_floor_with_adam": med(f["of_adam_floor"])})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
