"""Which quantization schemes pay on this CPU: latency against float32 (interleaved, one run), error, size, FD.

Regenerates benchmarks/results/quantize_cpu.md:

    .venv/bin/python benchmarks/quantize_cpu.py --num 1000

Models: builtin:ddpm-cifar10 (the CIFAR-10 DDPM architecture, 35.7 M params, random weights: latency and error only)
at batch 8, and the trained builtin:digits-ddpm at batch 64 and batch 1 (plus FD of `--num` DDIM-50 samples against
all 1,797 digits). Schemes: float32 eager (the reference), float32 + torch.compile, bf16, bf16 + compile, fp16,
int8-weight. Every scheme of one model is timed in alternation with the others (median of `--repeats` forwards,
after a warm-up that includes compilation), in each of `--rounds` rounds; the speedup is the median of the per-round
ratios float32 / scheme with a 95% bootstrap interval over rounds ("tie" when it covers 1). fp16 has no fast kernels
on this CPU (about 50x slower than float32), so it is timed in a pair with float32 of its own each round, one forward
each, and not sampled for FD (`--fd-fp16` samples it: over an hour at 1,000 samples). Error: max |eps_scheme -
eps_float| / max |eps_float| over 8 timesteps. Size: bytes of the saved weights file(s). 2 threads, like the rest of
the project's CPU figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from runinfo import stamp

from slimfusion.data import load_images
from slimfusion.metrics.cost import interleaved_latency
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.metrics.timing import cell, ratio
from slimfusion.models.families import example_inputs
from slimfusion.models.io import load, save
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.sample import SampleConfig, sample

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "quantize_cpu.md"
SCHEMES = {  # label -> QuantizeConfig fields (None: the float32 reference)
    "float32": None,
    "float32 + compile": {"scheme": "none", "compile": True},
    "bf16": {"scheme": "bf16"},
    "bf16 + compile": {"scheme": "bf16", "compile": True},
    "fp16": {"scheme": "fp16"},
    "int8-weight": {"scheme": "int8-weight"},
}
CASES = [("builtin:ddpm-cifar10", 8), ("builtin:digits-ddpm", 64), ("builtin:digits-ddpm", 1)]
SLOW = ("fp16",)  # no fast kernels on this CPU: timed in a pair with float32, one forward a round


def speedups(models: dict, batch: int, repeats: int, rounds: int) -> dict[str, tuple[float, float, float]]:
    """float32 time / each scheme's time: median of per-round ratios and its 95% interval over rounds."""
    fast = {k: m for k, m in models.items() if k not in SLOW}
    pairs: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in models}  # (float32 s, scheme s)
    with torch.no_grad():
        for _ in range(rounds):
            times = interleaved_latency(fast, batch=batch, repeats=repeats)
            for label in fast:
                pairs[label][0].append(times["float32"])
                pairs[label][1].append(times[label])
            for label in SLOW:  # against a float32 timed beside it
                pair = interleaved_latency({"float32": models["float32"], label: models[label]}, batch, repeats=1)
                pairs[label][0].append(pair["float32"])
                pairs[label][1].append(pair[label])
    return {label: ratio(np.array(base), np.array(mine)) for label, (base, mine) in pairs.items()}


def variants(source: str) -> dict:
    models = {}
    for label, fields in SCHEMES.items():
        model = load(source)
        models[label] = model if fields is None else quantize(model, QuantizeConfig(**fields))
    return models


def relative_error(model, reference, inputs) -> float:
    with torch.no_grad():
        out, ref = model(**inputs).sample, reference(**inputs).sample
    return ((out - ref).abs().max() / ref.abs().max()).item()


def file_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(model, Path(tmp) / "m")
        return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="digits samples per scheme for FD (0: skip FD)")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per scheme and round")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (schemes alternate within a round)")
    parser.add_argument("--fd-fp16", action="store_true", help="sample fp16 for FD too (slow on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    lines = [
        "# Quantization on this CPU (AMD EPYC, AVX-512 BF16 / VNNI, 2 threads)",
        "",
        f"Command: `.venv/bin/python benchmarks/quantize_cpu.py --num {args.num} --rounds {args.rounds}"
        f"{' --fd-fp16' if args.fd_fp16 else ''}` ({stamp()})",
        "",
        "Speedup: float32 eager time / scheme time, all schemes of a model timed in alternation in one run"
        f" (median of {args.repeats} forwards per round; fp16 one forward a round, in a pair with float32), the"
        f" median of {args.rounds} rounds' ratios with its 95% bootstrap interval over rounds. Error: max |eps -"
        " eps_float32| / max |eps_float32| over timesteps 10..999. FD: DDIM-50 samples of the trained digits model"
        " against all 1,797 digits.",
        "",
        "| model | batch | scheme | speedup [95%] | rel. error | weights file | FD |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    reference_stats = feature_stats(digit_features(load_images("digits:all", 16, 1)))
    fds: dict[str, float] = {}
    for source, batch in CASES:
        models = variants(source)
        base = models["float32"]
        inputs = example_inputs(base, 8)
        inputs["timestep"] = torch.tensor([10, 100, 300, 500, 700, 800, 900, 999])
        speed = speedups(models, batch, args.repeats, args.rounds)
        for label, model in models.items():
            error = relative_error(model, base, inputs) if label != "float32" else 0.0
            fd = ""
            if source == "builtin:digits-ddpm" and args.num and label in SLOW and not args.fd_fp16:
                fd = "not sampled"
            elif source == "builtin:digits-ddpm" and args.num:
                if label not in fds:
                    images = sample(model, SampleConfig(num=args.num, steps=50, seed=1000, batch_size=250))
                    fds[label] = frechet_distance(*feature_stats(digit_features(images)), *reference_stats)
                fd = f"{fds[label]:.3f}"
            size = file_bytes(model) / 2**20
            shown = "1.00x (reference)" if label == "float32" else cell(*speed[label])
            lines.append(
                f"| {source.removeprefix('builtin:')} | {batch} | {label} | {shown} | {error:.4f} |"
                f" {size:.2f} MiB | {fd} |"
            )
            print(lines[-1], flush=True)
    if args.num:
        other = sample(load("builtin:digits-ddpm"), SampleConfig(num=args.num, steps=50, seed=1001, batch_size=250))
        floor = frechet_distance(*feature_stats(digit_features(other)), *reference_stats)
        lines += [
            "",
            f"FD of a second float32 sample set (other noise): {floor:.3f}; its gap to the float32 row"
            f" ({abs(floor - fds['float32']):.3f}) is the scale below which FD differences are noise.",
        ]
    RESULT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
