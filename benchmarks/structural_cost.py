"""What structural pruning buys on real architectures: params, MACs and CPU latency, original vs pruned.

Regenerates benchmarks/results/structural_cost.md:

    .venv/bin/python benchmarks/structural_cost.py
    .venv/bin/python benchmarks/structural_cost.py --models ddpm-cifar10 --ratios 0.3 0.5 --repeats 5   # quicker

Each model is pruned with magnitude importance (importance does not change cost) at each ratio. Original and pruned
alternate one forward each per round (o, p, o, p, ...) so machine noise hits both alike, over at least `--repeats`
rounds (more for fast models: at least 5 s of timing) after 2 warm-up pairs; latency is each model's median, the
speedup the median of the per-round ratios with its 95% bootstrap interval over rounds. The goal: latency speedup >=
85% of the MACs ratio.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from runinfo import stamp

import slimfusion
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.metrics.timing import cell, interleaved, timed
from slimfusion.metrics.timing import ratio as speed_ratio
from slimfusion.models.families import example_inputs
from slimfusion.prune import StructuralConfig, prune

RESULT = Path(__file__).resolve().parent / "results" / "structural_cost.md"
WARMUP = 2
MIN_SECONDS = 5.0  # at least this long of timed forwards per measurement
BATCHES = {"ddpm-cifar10": (1, 16), "sd15-unet": (1, 2), "dit-xl-2": (1, 4)}


@torch.no_grad()
def latencies(original, pruned, batch: int, repeats: int) -> dict[str, np.ndarray]:
    """Seconds per forward of each model, one forward each per round, alternating, over at least `repeats` rounds."""
    inputs_o, inputs_p = example_inputs(original, batch), example_inputs(pruned, batch)
    fns = {"original": lambda: original(**inputs_o), "pruned": lambda: pruned(**inputs_p)}
    for _ in range(WARMUP):
        pair_s = timed(fns["original"], 1) + timed(fns["pruned"], 1)
    rounds = max(repeats, int(MIN_SECONDS / pair_s))  # fast models get more rounds: a steadier median
    return interleaved(fns, 1, rounds)


def measure(name: str, ratio: float, repeats: int, compat: str) -> list[str]:
    """Table rows for one model at one ratio (all batch sizes)."""
    original = slimfusion.load(f"builtin:{name}")
    params0, macs0 = count_params(original), count_macs(original)
    pruned = copy.deepcopy(original)
    start = time.perf_counter()
    prune(pruned, StructuralConfig(method="magnitude", ratio=ratio, compat=compat), progress=False)
    prune_s = time.perf_counter() - start
    params1, macs1 = count_params(pruned), count_macs(pruned)
    rows = []
    for batch in BATCHES[name]:
        times = latencies(original, pruned, batch, repeats)
        speedup = speed_ratio(times["original"], times["pruned"])
        macs_speedup = macs0 / macs1
        ms_o, ms_p = (np.median(times[k]) * 1e3 for k in ("original", "pruned"))
        rows.append(
            f"| {name} | {ratio} | {batch} | {params0 / 1e6:.2f} -> {params1 / 1e6:.2f} M "
            f"| {macs0 / 1e9:.2f} -> {macs1 / 1e9:.2f} G | {macs_speedup:.2f}x | {ms_o:.0f} -> {ms_p:.0f} ms"
            f" | {cell(*speedup)} | {speedup[0] / macs_speedup:.0%}"
            f" [{speedup[1] / macs_speedup:.0%}, {speedup[2] / macs_speedup:.0%}] | {len(times['pruned'])} |"
            f" {prune_s:.0f} s |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BATCHES), choices=list(BATCHES))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.2, 0.3, 0.5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compat", default="torch-pruning", choices=["torch-pruning", "paper"])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one model, one ratio
    args = parser.parse_args()
    if args.one:
        print("\n".join(measure(args.models[0], args.ratios[0], args.repeats, args.compat)))
        return

    rows = []
    for name in args.models:
        for ratio in args.ratios:
            # A fresh process per measurement: two copies of an 860M-param UNet plus a dependency graph fill 24 GB
            # if earlier ratios' memory lingers.
            command = [sys.executable, __file__, "--one", "--models", name, "--ratios", str(ratio)]
            command += ["--repeats", str(args.repeats), "--compat", args.compat]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rows += result.stdout.strip().splitlines()
            print(result.stdout.strip(), flush=True)
    lines = [
        "# Structural pruning: cost on real architectures (CPU)",
        "",
        "Command: `.venv/bin/python benchmarks/structural_cost.py "
        + " ".join(
            [f"--models {' '.join(args.models)}", f"--ratios {' '.join(map(str, args.ratios))}"]
            + [f"--repeats {args.repeats}", f"--compat {args.compat}"]
        )
        + f"` ({stamp()})",
        "",
        f"Magnitude pruning, `--compat {args.compat}`; {torch.get_num_threads()} CPU threads, fp32, batch sizes as"
        " listed; original and pruned alternate one forward each per round; latency = each one's median; latency"
        " speedup = median of the per-round ratios [95% bootstrap interval over rounds]. 'share' = latency speedup /"
        " MACs speedup (goal >= 85%), with the interval's ends.",
        "",
        "| model | ratio | batch | params | MACs | MACs speedup | latency | latency speedup [95%] | share | rounds |"
        " prune time |",
        "|---|---:|---:|---|---|---:|---|---:|---:|---:|---:|",
        *rows,
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
