"""What torch.compile adds on top of a skip plan's hooks, against what it adds without them.

Regenerates benchmarks/results/compile_skip.md:

    .venv/bin/python benchmarks/compile_skip.py --rounds 9

Models: builtin:digits-ddpm (64 images, DDIM 25) and builtin:ddpm-cifar10 (the CIFAR-10 DDPM architecture with random
weights, where compile pays more: 8 images, DDIM 10). Rows, all bf16: eager and compiled (`QuantizeConfig(scheme=
"bf16", compile=True)`, Inductor), each with a DeepCache plan (interval 2, branch 1, as in compose_digits.md) and
without one. Speed: seconds to sample the batch, the four rows of a model alternating in each of `--rounds` rounds
after one warm-up call each (which pays the compilation); a speedup is the median of the per-round ratios with a 95%
bootstrap interval over rounds ("tie" when it covers 1). Graphs: how many graphs Dynamo compiled during the warm-up
(hooks that made Dynamo guard on the step counter compiled a new graph at every step until its recompile limit).
Difference: mean and max |compiled - eager| over the samples (pixels in [-1, 1]) from the same noise: bf16 rounds
differently inside fused kernels, and sampling carries it on.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
from pathlib import Path

import numpy as np
import torch
from runinfo import stamp

from slimfusion.metrics.timing import cell, interleaved, ratio
from slimfusion.models.io import load
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, apply_plan, skip_plan

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "compile_skip.md"
CASES = [("builtin:digits-ddpm", 64, 25), ("builtin:ddpm-cifar10", 8, 10)]  # model, images, DDIM steps


def cpu_name() -> str:
    """The CPU model (timings and bf16 kernels differ between CPUs: AMX on recent Xeons, AVX-512 BF16 on EPYC)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def images_of(model, plan, num: int, steps: int) -> torch.Tensor:
    with apply_plan(model, plan) if plan is not None else contextlib.nullcontext():
        return sample(model, SampleConfig(num=num, steps=steps, seed=0, batch_size=num), progress=False)


def graphs_compiled(fn) -> tuple[torch.Tensor, int]:
    """Run `fn` once; the number of graphs Dynamo compiled meanwhile."""
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    out = fn()
    return out, counters["stats"]["unique_graphs"] - before


def measure(source: str, num: int, steps: int, rounds: int) -> tuple[list[str], str]:
    """The four rows of one model, timed in alternation: its table lines and a note."""
    torch._dynamo.reset()  # every model starts with Dynamo's caches (and recompile counts) empty
    original = load(source)
    plan = skip_plan(original, SkipConfig(method="deepcache", steps=steps, interval=2, branch=1), progress=False)
    eager = quantize(copy.deepcopy(original), QuantizeConfig(scheme="bf16"))
    compiled = quantize(copy.deepcopy(original), QuantizeConfig(scheme="bf16", compile=True))
    rows = {
        "bf16, DeepCache": (eager, plan),
        "bf16 + compile, DeepCache": (compiled, plan),
        "bf16, no cache": (eager, None),
        "bf16 + compile, no cache": (compiled, None),
    }
    calls = {name: (lambda m=m, p=p: images_of(m, p, num, steps)) for name, (m, p) in rows.items()}
    warm = {name: graphs_compiled(call) for name, call in calls.items()}
    times = interleaved(calls, 1, rounds)
    lines = []
    for name in rows:
        eager_name = name.replace(" + compile", "")
        is_compiled = name != eager_name
        speed = cell(*ratio(times[eager_name], times[name])) if is_compiled else "-"
        gap = (warm[name][0] - warm[eager_name][0]).abs()
        diff = f"{gap.mean().item():.4f} / {gap.max().item():.3f}" if is_compiled else "-"
        label = f"{source.removeprefix('builtin:')} ({num} images, DDIM {steps})"
        lines.append(f"| {label} | {name} | {np.median(times[name]):.3f} | {speed} | {warm[name][1]} | {diff} |")
    cache = ratio(times["bf16, no cache"], times["bf16, DeepCache"])
    return lines, f"{source}: DeepCache's own speedup over bf16 without it (eager) {cell(*cache)}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    lines = [
        "# torch.compile on top of a skip plan's hooks",
        "",
        f"Command: `.venv/bin/python benchmarks/compile_skip.py --rounds {args.rounds}` ({stamp()};"
        f" torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} threads)",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
        "| model | row | seconds per batch (median) | compile's speedup over the eager row [95%] | graphs compiled"
        " in the warm-up | mean / max abs difference to the eager row |",
        "|---|---|---:|---:|---:|---:|",
    ]
    notes = []
    for source, num, steps in CASES:
        rows, note = measure(source, num, steps, args.rounds)
        lines += rows
        notes.append(f"- {note}")
    RESULT.write_text("\n".join(lines + [""] + notes + [""]))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
