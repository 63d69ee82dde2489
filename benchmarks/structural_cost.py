"""What structural pruning buys on real architectures: params, MACs and CPU latency, original vs pruned.

Regenerates benchmarks/results/structural_cost.md:

    .venv/bin/python benchmarks/structural_cost.py
    .venv/bin/python benchmarks/structural_cost.py --models ddpm-cifar10 --ratios 0.3 0.5 --repeats 5   # quicker

Each model is pruned with magnitude importance (importance does not change cost) at each ratio. Latency is the median
of at least `--repeats` forwards (more for fast models: at least 5 s of timing) after 2 warm-up pairs, original and
pruned interleaved in one run (o, p, o, p, ...) so machine noise hits both alike; the speedup is their ratio.
The goal: latency speedup >= 85% of the MACs ratio.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from runinfo import stamp

import slimfusion
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.models.families import example_inputs
from slimfusion.prune import StructuralConfig, prune

RESULT = Path(__file__).resolve().parent / "results" / "structural_cost.md"
WARMUP = 2
MIN_SECONDS = 5.0  # at least this long of timed forwards per measurement
BATCHES = {"ddpm-cifar10": (1, 16), "sd15-unet": (1, 2), "dit-xl-2": (1, 4)}


@torch.no_grad()
def interleaved_latency(original, pruned, batch: int, repeats: int) -> tuple[float, float]:
    inputs_o, inputs_p = example_inputs(original, batch), example_inputs(pruned, batch)
    for _ in range(WARMUP):
        start = time.perf_counter()
        original(**inputs_o), pruned(**inputs_p)
        pair_s = time.perf_counter() - start
    repeats = max(repeats, int(MIN_SECONDS / pair_s))  # fast models get more repeats: a steadier median
    times_o, times_p = [], []
    for _ in range(repeats):
        for model, inputs, times in ((original, inputs_o, times_o), (pruned, inputs_p, times_p)):
            start = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - start)
    return statistics.median(times_o), statistics.median(times_p)


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
        lat_o, lat_p = interleaved_latency(original, pruned, batch, repeats)
        macs_speedup, speedup = macs0 / macs1, lat_o / lat_p
        rows.append(
            f"| {name} | {ratio} | {batch} | {params0 / 1e6:.2f} -> {params1 / 1e6:.2f} M "
            f"| {macs0 / 1e9:.2f} -> {macs1 / 1e9:.2f} G | {macs_speedup:.2f}x | {lat_o * 1e3:.0f} -> "
            f"{lat_p * 1e3:.0f} ms | {speedup:.2f}x | {speedup / macs_speedup:.0%} | {prune_s:.0f} s |"
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
        " listed; latency = median of interleaved repeats (original, pruned, original, ...). Speedups are ratios"
        " measured in the same run. 'share' = latency speedup / MACs speedup (goal >= 85%).",
        "",
        "| model | ratio | batch | params | MACs | MACs speedup | latency | latency speedup | share | prune time |",
        "|---|---:|---:|---|---|---:|---|---:|---:|---:|",
        *rows,
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
