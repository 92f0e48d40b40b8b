#!/usr/bin/python3
"""torchae against plain PyTorch on the reference autoencoder, side by side, against the floor.

First the twin check: `torchae bench` and bench/reference.py must reach the same loss after the
same steps (20 steps from the same seed, to 1e-5, at every batch size), or the comparison means
nothing and the script stops. Then rounds: each runs, at each batch size, `torchae bench --floor`
as a user would (no environment set: torchae picks its own OpenMP wait policy and threads), whose
"floor" is the same step's 11 matrix products timed alone in rounds interleaved with the steps,
and bench/reference.py at every setting Python could be run with here (OMP_WAIT_POLICY=PASSIVE,
1 or 2 threads, which OpenBLAS follows too; Adam with and without foreach), keeping Python's best.
The figures printed are medians over the rounds; each ratio is the median of the rounds' ratios,
so that machine noise, which hits both runs of a round alike, cancels.

With --blas-threads-auto each round also runs `torchae bench --floor --blas-threads auto` (the
setting train.blas_threads auto: OpenBLAS's threads chosen by timing the first steps), and a
second table gives it beside the same rounds' PyTorch.

usage: bench/compare.py [--rounds 3] [--steps 300] [--batches 32,128,512] [--blas-threads-auto]
Prints a Markdown table and, last, one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"


def torchae_binary():
    return os.environ.get("TORCHAE", os.path.join(HERE, "..", "build", "torchae"))


def run_json(command, env):
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def user_env():
    """The environment a user has: none of the variables the comparison varies."""
    env = dict(os.environ)
    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    return env


def torchae_bench(batch, steps, warmup, floor, blas_threads=None):
    command = [torchae_binary(), "bench", "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup)]
    if floor:
        command.append("--floor")
    if blas_threads:
        command += ["--blas-threads", blas_threads]
    return run_json(command, user_env())


def python_bench(batch, steps, warmup, threads, foreach):
    env = user_env()
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["OMP_NUM_THREADS"] = str(threads)
    command = [PYTHON, os.path.join(HERE, "reference.py"), "--batch", str(batch), "--steps", str(steps),
               "--warmup", str(warmup)]
    if foreach:
        command.append("--foreach")
    return run_json(command, env)


def machine():
    model, flags = "?", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    shown = [f for f in ("avx512f", "avx512_bf16", "avx2", "fma") if f in flags]
    return {"cpu": model, "cores": os.cpu_count(), "flags": shown}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batches", default="32,128,512")
    parser.add_argument("--check-steps", type=int, default=20, help="steps of the twin check")
    parser.add_argument("--blas-threads-auto", action="store_true",
                        help="also run torchae with --blas-threads auto in every round")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if not os.access(torchae_binary(), os.X_OK):
        sys.exit(f"compare.py: {torchae_binary()} not built (scripts/build.sh torchae_cli)")

    host = machine()
    print(f"machine: {host['cpu']}, {host['cores']} cores, {' '.join(host['flags'])}")
    twin = {}
    for batch in batches:
        ours = torchae_bench(batch, args.check_steps, 0, False)["final_loss"]
        theirs = python_bench(batch, args.check_steps, 0, 1, False)["final_loss"]
        twin[batch] = {"torchae": ours, "pytorch": theirs, "difference": abs(ours - theirs)}
        print(f"twin check, batch {batch}: loss after {args.check_steps} steps {ours:.7f} (torchae) "
              f"{theirs:.7f} (PyTorch), difference {abs(ours - theirs):.1e}")
        if abs(ours - theirs) > 1e-5:
            sys.exit("compare.py: torchae and reference.py do not compute the same step; no comparison")

    rows = {b: {"torchae": [], "pytorch": [], "setting": [], "floor": [], "gflops": [], "ratio": [],
                "ours_floor": [], "theirs_floor": [], "ours_adam_floor": [],
                "auto": [], "auto_ratio": [], "auto_floor": [], "auto_chosen": []} for b in batches}
    for r in range(args.rounds):
        for batch in batches:
            ours = torchae_bench(batch, args.steps, 30, True)
            auto = torchae_bench(batch, args.steps, 30, True, "auto") if args.blas_threads_auto else None
            best, setting = 0.0, ""
            for threads in (1, 2):
                for foreach in (False, True):
                    rate = python_bench(batch, args.steps, 30, threads, foreach)["samples_per_s"]
                    if rate > best:
                        best, setting = rate, f"{threads} thread{'s' if threads > 1 else ''}" + \
                                              (", foreach" if foreach else "")
            row = rows[batch]
            floor = ours["floor"]["samples_per_s"]
            row["torchae"].append(ours["samples_per_s"])
            row["pytorch"].append(best)
            row["setting"].append(setting)
            row["floor"].append(floor)
            row["gflops"].append(ours["floor"]["gemm_gflops"])
            row["ratio"].append(ours["samples_per_s"] / best)
            row["ours_floor"].append(ours["of_floor"])
            row["ours_adam_floor"].append(ours["of_floor_with_adam"])
            row["theirs_floor"].append(best / floor)
            print(f"round {r + 1}, batch {batch}: torchae {ours['samples_per_s']:,.0f} samples/s "
                  f"({ours['of_floor']:.0%} of the floor, {ours['threads']} thread(s)), PyTorch best "
                  f"{best:,.0f} ({setting}), floor {floor:,.0f} ({ours['floor']['gemm_gflops']:.0f} GFLOP/s)",
                  flush=True)
            if auto:
                row["auto"].append(auto["samples_per_s"])
                row["auto_ratio"].append(auto["samples_per_s"] / best)
                row["auto_floor"].append(auto["of_floor"])
                row["auto_chosen"].append(auto["blas_threads"])
                print(f"round {r + 1}, batch {batch}: torchae --blas-threads auto {auto['samples_per_s']:,.0f} "
                      f"samples/s ({auto['of_floor']:.0%} of its floor, OpenBLAS on {auto['blas_threads']} "
                      f"thread(s): {auto.get('blas_tuning', {}).get('ms_per_step')} ms a step)", flush=True)

    med = statistics.median
    print()
    print("| batch | torchae (no environment set) | plain PyTorch, best setting | ratio | GEMM floor "
          "(GFLOP/s) | torchae / floor | PyTorch / floor | torchae / (floor + Adam) |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {"machine": host, "rounds": args.rounds, "steps": args.steps, "twin": twin, "batches": {}}
    for batch in batches:
        row = rows[batch]
        settings = max(set(row["setting"]), key=row["setting"].count)
        print(f"| {batch} | {med(row['torchae']):,.0f} | {med(row['pytorch']):,.0f} ({settings}) | "
              f"**{med(row['ratio']):.2f}x** | {med(row['floor']):,.0f} ({med(row['gflops']):.0f}) | "
              f"**{med(row['ours_floor']):.0%}** | {med(row['theirs_floor']):.0%} | {med(row['ours_adam_floor']):.0%} |")
        summary["batches"][batch] = {"torchae": med(row["torchae"]), "pytorch": med(row["pytorch"]),
                                     "ratio": med(row["ratio"]), "floor": med(row["floor"]),
                                     "gemm_gflops": med(row["gflops"]), "torchae_of_floor": med(row["ours_floor"]),
                                     "pytorch_of_floor": med(row["theirs_floor"]),
                                     "torchae_of_floor_with_adam": med(row["ours_adam_floor"])}
    if args.blas_threads_auto:
        print()
        print("| batch | torchae, blas_threads auto | OpenBLAS threads chosen, by round | ratio to PyTorch's best | "
              "of the floor |")
        print("|---|---|---|---|---|")
        for batch in batches:
            row = rows[batch]
            print(f"| {batch} | {med(row['auto']):,.0f} | {', '.join(map(str, row['auto_chosen']))} | "
                  f"**{med(row['auto_ratio']):.2f}x** | **{med(row['auto_floor']):.0%}** |")
            summary["batches"][batch].update({"torchae_blas_auto": med(row["auto"]),
                                              "blas_auto_chosen": row["auto_chosen"],
                                              "blas_auto_ratio": med(row["auto_ratio"]),
                                              "blas_auto_of_floor": med(row["auto_floor"])})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
