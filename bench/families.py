#!/usr/bin/python3
"""What each family's training step costs over a plain step of the same network.

Each row is a family's model and its plain twin: the same widths and activations as a plain
undercomplete autoencoder (family "undercomplete", the family's own keys dropped), both stepped
by one `torchae bench --baseline TWIN` (batch 128, Adam, Fashion-MNIST in memory), which steps the
family and its twin in ten interleaved rounds in one process, so that machine noise hits both
alike, and gives the median of the rounds' cost (the family's step time over the twin's); the
cost of a row is the median of that over this script's rounds, which interleave the rows.
Stacked pretraining is measured on its second stage, the top layer
on the codes of the first, cached once as the staged trainer does (`bench --stage 2`); its twin
is the same stage of a stack of plain layers, and the table gives what caching the codes costs
(the first layer's pass over the 60,000 images) as a fraction of one epoch of that stage.

With --against BINARY (a build that has `bench --baseline`) every measurement is repeated, in the same round and right after, with
another build (say the one before a change), so that both see the same machine; the table then
gives both costs and each one's range over the rounds. --only keeps the rows whose name
contains one of the given words.

usage: bench/families.py [--rounds 3] [--steps 150] [--batch 128] [--against BINARY] [--only WORD,...]
Prints a Markdown table and, last, one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEEP = {"hidden": [512], "code_size": 128}
ONE_SIGMOID_LAYER = {"hidden": [], "code_size": 128, "code_activation": "sigmoid"}

# (name, the family's model, its plain twin, the goal for the cost, or None, what the family adds)
ROWS = [
    ("sparse, L1", {"family": "sparse", "penalty": "l1", **DEEP},
     {"family": "undercomplete", **DEEP}, None, "an L1 norm of the code"),
    ("sparse, KL", {"family": "sparse", "penalty": "kl", **DEEP, "code_activation": "sigmoid"},
     {"family": "undercomplete", **DEEP, "code_activation": "sigmoid"}, None, "the KL divergence of the mean code"),
    ("k-sparse (top-32)", {"family": "ksparse", "k": 32, "tied": False, **DEEP},
     {"family": "undercomplete", **DEEP, "code_activation": "identity"}, None, "a top-k of each code and its mask"),
    ("denoising (masking 25%)", {"family": "denoising", **DEEP},
     {"family": "undercomplete", **DEEP}, None, "a corrupted copy of the batch"),
    ("contractive, analytic", {"family": "contractive", "method": "analytic", **ONE_SIGMOID_LAYER},
     {"family": "undercomplete", **ONE_SIGMOID_LAYER}, 1.2, "the closed-form Jacobian norm"),
    ("contractive, Hutchinson (1 probe)", {"family": "contractive", "method": "hutchinson", "probes": 1,
                                           **ONE_SIGMOID_LAYER},
     {"family": "undercomplete", **ONE_SIGMOID_LAYER}, 1.5, "a Jacobian-vector product pushed forward beside the input"),
    ("VAE", {"family": "vae", **DEEP}, {"family": "undercomplete", **DEEP}, None,
     "a second code head (log-variance), sampling, the KL term"),
    ("WAE-MMD", {"family": "wae", **DEEP}, {"family": "undercomplete", **DEEP}, None,
     "prior samples and the MMD's three kernel sums"),
]
STACK = [{"units": 512}, {"units": 128}]
STACKED = ("stacked pretraining, layer 2 on cached codes",
           {"family": "stacked", "layers": STACK},
           {"family": "stacked", "layers": [dict(layer, family="undercomplete") for layer in STACK]},
           None, "its layers' family (denoising by default); the codes below, once")


def torchae_binary():
    return os.environ.get("TORCHAE", os.path.join(HERE, "..", "build", "torchae"))


def bench(model, twin, steps, batch, stage=0, binary=None):
    command = [binary or torchae_binary(), "bench", "--model", json.dumps(model), "--baseline", json.dumps(twin),
               "--steps", str(steps), "--warmup", "10", "--batch", str(batch)]
    if stage:
        command += ["--stage", str(stage)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--against", help="another torchae binary, measured alongside")
    parser.add_argument("--only", help="comma-separated words: the rows whose name contains one")
    args = parser.parse_args()
    for binary in [torchae_binary()] + ([args.against] if args.against else []):
        if not os.access(binary, os.X_OK):
            sys.exit(f"families.py: {binary} is not an executable (scripts/build.sh torchae_cli)")

    rows = ROWS + [STACKED]
    if args.only:
        words = args.only.split(",")
        rows = [row for row in rows if any(word in row[0] for word in words)]
    costs = {row[0]: [] for row in rows}
    other_costs = {row[0]: [] for row in rows}
    rates = {row[0]: ([], []) for row in rows}
    cache_fraction = []
    for r in range(args.rounds):
        for name, model, twin, _, _ in rows:
            stage = 2 if model["family"] == "stacked" else 0
            ours = bench(model, twin, args.steps, args.batch, stage)
            plain = ours["baseline"]
            costs[name].append(ours["cost"])
            rates[name][0].append(ours["samples_per_s"])
            rates[name][1].append(plain["samples_per_s"])
            if stage:
                epoch_seconds = 60000 / ours["samples_per_s"]
                cache_fraction.append(ours["stage"]["cache_seconds"] / epoch_seconds)
            print(f"round {r + 1}: {name}: {ours['samples_per_s']:,.0f} samples/s, plain "
                  f"{plain['samples_per_s']:,.0f}: {costs[name][-1]:.2f}x", flush=True)
            if args.against:
                theirs = bench(model, twin, args.steps, args.batch, stage, args.against)
                other_costs[name].append(theirs["cost"])
                print(f"round {r + 1}: {name}, --against: {other_costs[name][-1]:.2f}x", flush=True)

    med = statistics.median
    spread = lambda values: f"{min(values):.2f}-{max(values):.2f}"
    print()
    if args.against:
        print(f"| family | step cost, --against {args.against} (range) | step cost (range) |")
        print("|---|---|---|")
        for name, *_ in rows:
            print(f"| {name} | {med(other_costs[name]):.2f}x ({spread(other_costs[name])}) | "
                  f"**{med(costs[name]):.2f}x** ({spread(costs[name])}) |")
        print()
    print("| family | what it adds to the step | samples/s | plain twin | step cost | goal |")
    print("|---|---|---|---|---|---|")
    summary = {"rounds": args.rounds, "steps": args.steps, "batch": args.batch, "families": {}}
    for name, _, _, goal, adds in rows:
        cost = med(costs[name])
        verdict = "" if goal is None else (f"{goal:.1f}x: met" if cost <= goal else f"{goal:.1f}x: **not met**")
        if goal is None and cost > 1.5:
            verdict = "over 1.5x"
        print(f"| {name} | {adds} | {med(rates[name][0]):,.0f} | {med(rates[name][1]):,.0f} | **{cost:.2f}x** | "
              f"{verdict} |")
        summary["families"][name] = {"cost": cost, "samples_per_s": med(rates[name][0]),
                                     "plain_samples_per_s": med(rates[name][1]), "goal": goal}
        if args.against:
            summary["families"][name]["cost_against"] = med(other_costs[name])
    if cache_fraction:
        print(f"\ncaching layer 1's codes of the 60,000 images: {med(cache_fraction):.0%} of one epoch of layer 2")
        summary["stacked_cache_fraction_of_epoch"] = med(cache_fraction)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
