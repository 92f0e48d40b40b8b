#!/usr/bin/python3
"""The restoration recipes' training steps in torchae against the same models in plain PyTorch, side by side.

For each recipe (models/zoo), first the twin check: `torchae bench --recipe NAME --twin DIR` writes the model's
initial weights, a training batch, what torchae made of it, the loss and the gradients, and bench/restore.py must
reproduce the loss (1e-5 relative) and every gradient (1e-4 of its largest entry) from the same weights and input,
or the script stops. Then rounds: each runs `torchae bench --recipe NAME` as a user would (no environment set:
torchae picks its own OpenMP wait policy and threads) and bench/restore.py at every setting Python could be run
with here (OMP_WAIT_POLICY=PASSIVE, 1 or 2 threads, NCHW or channels-last weights and batches; Adam with foreach
throughout: these models have 8 to 10 parameter tensors, not tried without it), keeping Python's best. Both
step on the recipe's batch size, corrupting each batch themselves. Figures are medians over the rounds; each ratio
is the median of the rounds' ratios, so that machine noise, which hits both runs of a round alike, cancels.

usage: bench/restore_compare.py [--rounds 3] [--steps N] [--warmup 3] [--recipes a,b]   (after building)
Prints a Markdown table and, last, one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from compare import PYTHON, machine, run_json, torchae_binary, user_env

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = ["dae-conv-fashion", "dae-conv-natural", "inpaint-conv-natural", "colorize-conv-natural"]
# Timed steps of each recipe by default: about 5 s of torchae's training here.
STEPS = {"dae-conv-fashion": 60, "dae-conv-natural": 20, "inpaint-conv-natural": 12, "colorize-conv-natural": 25}


def torchae_bench(recipe, steps, warmup, twin=None):
    command = [torchae_binary(), "bench", "--recipe", recipe, "--steps", str(steps), "--warmup", str(warmup)]
    if twin:
        command += ["--twin", twin]
    return run_json(command, user_env())


def python_bench(twin, steps, warmup, threads, channels_last):
    env = user_env()
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["OMP_NUM_THREADS"] = str(threads)
    command = [PYTHON, os.path.join(HERE, "restore.py"), twin, "--steps", str(steps), "--warmup", str(warmup),
               "--foreach"]
    if channels_last:
        command.append("--channels-last")
    return run_json(command, env)


def twin_check(twin):
    result = subprocess.run([PYTHON, os.path.join(HERE, "restore.py"), twin, "--check"], env=user_env(),
                            capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    if not lines:
        sys.exit(f"restore_compare.py: the twin check failed to run:\n{result.stderr}")
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: about 5 s of torchae's, per recipe)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    if not os.access(torchae_binary(), os.X_OK):
        sys.exit(f"restore_compare.py: {torchae_binary()} not built (scripts/build.sh torchae)")

    host = machine()
    print(f"machine: {host['cpu']}, {host['cores']} cores, {' '.join(host['flags'])}")
    with tempfile.TemporaryDirectory(prefix="torchae-twins-") as scratch:
        twins, checks = {}, {}
        for recipe in recipes:
            twins[recipe] = os.path.join(scratch, recipe)
            torchae_bench(recipe, 1, 0, twins[recipe])
            checks[recipe] = twin_check(twins[recipe])
            c = checks[recipe]
            print(f"twin check, {recipe}: loss {c['loss_torchae']:.7f} (torchae) {c['loss_pytorch']:.7f} (PyTorch), "
                  f"relative difference {c['loss_relative_error']:.1e}, worst gradient {c['worst_gradient_error']:.1e}",
                  flush=True)
            if c["check"] != "ok":
                sys.exit(f"restore_compare.py: torchae and restore.py do not compute the same step for {recipe}")

        rows = {r: {"torchae": [], "threads": [], "pytorch": [], "setting": [], "ratio": []} for r in recipes}
        for round_ in range(args.rounds):
            for recipe in recipes:
                steps = args.steps or STEPS.get(recipe, 12)
                ours = torchae_bench(recipe, steps, args.warmup)
                best, setting = 0.0, ""
                for threads in (1, 2):
                    for channels_last in (False, True):
                        rate = python_bench(twins[recipe], steps, args.warmup, threads, channels_last)["samples_per_s"]
                        if rate > best:
                            best, setting = rate, f"{threads} thread{'s' if threads > 1 else ''}" + \
                                                  (", channels-last" if channels_last else "")
                row = rows[recipe]
                row["torchae"].append(ours["samples_per_s"])
                row["threads"].append(ours["threads"])
                row["pytorch"].append(best)
                row["setting"].append(setting)
                row["ratio"].append(ours["samples_per_s"] / best)
                print(f"round {round_ + 1}, {recipe} (batch {ours['batch']}): torchae {ours['samples_per_s']:,.1f} "
                      f"samples/s ({ours['threads']} thread(s)), PyTorch best {best:,.1f} ({setting}), "
                      f"ratio {ours['samples_per_s'] / best:.2f}", flush=True)

    med = statistics.median
    print()
    print("| recipe | torchae (no environment set) | plain PyTorch, best setting | ratio |")
    print("|---|---|---|---|")
    summary = {"machine": host, "rounds": args.rounds, "steps": args.steps, "twin": checks, "recipes": {}}
    for recipe in recipes:
        row = rows[recipe]
        setting = max(set(row["setting"]), key=row["setting"].count)
        threads = max(set(row["threads"]), key=row["threads"].count)
        print(f"| {recipe} | {med(row['torchae']):,.0f} ({threads} thread{'s' if threads > 1 else ''}) | "
              f"{med(row['pytorch']):,.0f} ({setting}) | **{med(row['ratio']):.2f}x** |")
        summary["recipes"][recipe] = {"torchae": med(row["torchae"]), "pytorch": med(row["pytorch"]),
                                      "ratio": med(row["ratio"]), "ratios": row["ratio"]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
