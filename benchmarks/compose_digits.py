"""Every technique composed on builtin:digits-ddpm: wall-clock sampling speedup (one run) and FD after each step.

Regenerates benchmarks/results/compose_digits.md and compose_digits.png:

    .venv/bin/python benchmarks/compose_digits.py --num 2000 --pruned runs/recovery_digits/<best setting>-s0

Stages, each adding one technique to the one before (a waterfall): the original (DDIM 50, float32 eager); width
pruning (Diff-Pruning T = 0.05, ratio 0.25, recovered with the finetune defaults: `--pruned` takes a model made by
recovery_digits.py, else one is made here); DDIM 25 steps; a DeepCache plan for those 25 steps (`--interval`,
`--branch`); bf16; torch.compile. A second table swaps the cache for fewer DDIM steps (`--alt-steps`) on the pruned,
bf16, compiled model. Speed: seconds to sample 64 images, every stage timed in alternation with the
others in the same run (median of `--rounds`), as a ratio to the original; each stage's share is its ratio to the
stage before. Quality: FD (digits features, not FID) of `--num` samples against all 1,797 digits, with the noise
floor (a second sample set of the original), and SSIM against the original's samples from the same noise.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch
from runinfo import code_version, stamp

from slimfusion.data import load_images
from slimfusion.metrics.consistency import ssim
from slimfusion.metrics.cost import count_macs
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.io import load, save
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, apply_plan, skip_plan

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "compose_digits.md"
PICTURE = ROOT / "benchmarks" / "results" / "compose_digits.png"
SEED = 1000


def pruned_model(path: str | None, work: Path):
    if path:
        return load(path)
    folder = work / f"pruned-{code_version()}"  # made by this code: a code change remakes it
    if not folder.exists():
        from slimfusion.prune import StructuralConfig, prune
        from slimfusion.train import FinetuneConfig, finetune

        images = load_images("digits:train", 16, 1)
        teacher, model = load("builtin:digits-ddpm"), load("builtin:digits-ddpm")
        prune(model, StructuralConfig(method="diff-pruning", threshold=0.05, ratio=0.25), data=images)
        finetune(model, images, FinetuneConfig(steps=1200), teacher=teacher)
        save(model, folder)
    return load(folder)


def stages(args, work: Path) -> list[dict]:
    """name, model, DDIM steps, skip plan; each stage = the previous one plus one technique."""
    original = load("builtin:digits-ddpm")
    pruned = pruned_model(args.pruned, work)
    plan = skip_plan(
        pruned, SkipConfig(method="deepcache", steps=25, interval=args.interval, branch=args.branch), progress=False
    )
    half = quantize(_copy(pruned), QuantizeConfig(scheme="bf16"))
    compiled = quantize(_copy(pruned), QuantizeConfig(scheme="bf16", compile=True))
    return [
        {"name": "original (DDIM 50, float32)", "model": original, "steps": 50, "plan": None, "macs": 1.0},
        {"name": "+ width pruning (Diff-Pruning 0.25, recovered)", "model": pruned, "steps": 50, "plan": None},
        {"name": "+ DDIM 25 steps", "model": pruned, "steps": 25, "plan": None},
        {"name": f"+ DeepCache (interval {args.interval})", "model": pruned, "steps": 25, "plan": plan},
        {"name": "+ bf16", "model": half, "steps": 25, "plan": plan},
        {"name": "+ torch.compile", "model": compiled, "steps": 25, "plan": plan},
    ] + [  # the same pipeline with fewer DDIM steps in place of the cache (how far steps alone go)
        {"name": f"pruned + bf16 + compile, DDIM {n}, no cache", "model": compiled, "steps": n, "plan": None, "alt": 1}
        for n in args.alt_steps
    ]


def _copy(model):
    import copy

    return copy.deepcopy(model)


def images_of(stage: dict, num: int, seed: int = SEED, batch_size: int = 250) -> torch.Tensor:
    applied = apply_plan(stage["model"], stage["plan"]) if stage["plan"] is not None else contextlib.nullcontext()
    with applied:
        return sample(
            stage["model"],
            SampleConfig(num=num, steps=stage["steps"], seed=seed, batch_size=batch_size),
            progress=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--pruned", default=None, help="a recovered pruned model (default: made here)")
    parser.add_argument("--interval", type=int, default=2, help="DeepCache interval on the 25-step schedule")
    parser.add_argument("--branch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alt-steps", type=int, nargs="*", default=[25, 20, 15, 12, 10])
    parser.add_argument("--work", default="runs/compose_digits")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = stages(args, work)
    base_macs = count_macs(rows[0]["model"])
    for row in rows:  # warm-up (compiles), then timing rounds in alternation
        images_of(row, 64, batch_size=64)
    times = {row["name"]: [] for row in rows}
    for _ in range(args.rounds):
        for row in rows:
            start = time.perf_counter()
            images_of(row, 64, batch_size=64)
            times[row["name"]].append(time.perf_counter() - start)
    reference = feature_stats(digit_features(load_images("digits:all", 16, 1)))
    original = images_of(rows[0], args.num)
    second = images_of(rows[0], args.num, seed=SEED + 1)
    floor = frechet_distance(*feature_stats(digit_features(original)), *feature_stats(digit_features(second)))
    results = []
    for row in rows:
        images = original if row is rows[0] else images_of(row, args.num)
        macs = count_macs(row["model"]) / base_macs * row["steps"] / 50
        macs *= row["plan"].macs_ratio if row["plan"] is not None else 1.0
        results.append(
            {
                "name": row["name"],
                "seconds": statistics.median(times[row["name"]]),
                "macs": macs,
                "fd": frechet_distance(*feature_stats(digit_features(images)), *reference),
                "ssim": ssim(images, original),
                "alt": row.get("alt", 0),
            }
        )
        print(results[-1], flush=True)
    write(results, floor, args)


def write(results: list[dict], floor: float, args) -> None:
    base = results[0]
    speed = {r["name"]: base["seconds"] / r["seconds"] for r in results}
    lines = [
        "# Composing every technique on builtin:digits-ddpm",
        "",
        f"Command: `.venv/bin/python benchmarks/compose_digits.py --num {args.num}"
        + (f" --pruned {args.pruned}" if args.pruned else "")
        + f" --interval {args.interval} --branch {args.branch}"
        + f" --alt-steps {' '.join(map(str, args.alt_steps))}` ({stamp()})",
        "",
        "Each stage adds one technique to the stage above. Speedup: seconds to sample 64 images vs the original, all"
        f" rows (both tables) timed in alternation in one run (median of {args.rounds}); share: ratio to the stage"
        f" above. FD of {args.num} samples (digits features) vs all 1,797 digits; SSIM vs the original's samples from"
        f" the same noise. Noise floor (two sample sets of the original): {floor:.3f}.",
        "",
        "| stage | sampling MACs | speedup | this step's share | FD | FD / original | SSIM |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    previous = base
    for r in (r for r in results if not r["alt"]):
        lines.append(
            f"| {r['name']} | {r['macs']:.1%} | {speed[r['name']]:.2f}x |"
            f" {previous['seconds'] / r['seconds']:.2f}x | {r['fd']:.3f} | {r['fd'] / base['fd']:.2f} |"
            f" {r['ssim']:.3f} |"
        )
        previous = r
    alternatives = [r for r in results if r["alt"]]
    if alternatives:
        lines += [
            "",
            "Fewer DDIM steps in place of the cache (the pruned model, bf16, compiled; same timing run):",
            "",
            "| pipeline | sampling MACs | speedup | FD | FD / original | SSIM |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['name']} | {r['macs']:.1%} | {speed[r['name']]:.2f}x | {r['fd']:.3f} | {r['fd'] / base['fd']:.2f} |"
            f" {r['ssim']:.3f} |"
            for r in alternatives
        ]
    last = [r for r in results if not r["alt"]][-1]
    within = [r for r in results[1:] if r["fd"] / base["fd"] <= 1.25]
    best = max(within, key=lambda r: speed[r["name"]]) if within else None
    met = best is not None and speed[best["name"]] >= 8
    lines += [
        "",
        f"Moonshot (>= 8x faster sampling with FD within 1.25x of the original's): **{'met' if met else 'not met'}**."
        f" Every technique stacked: {speed[last['name']]:.2f}x at FD {last['fd'] / base['fd']:.2f}x; "
        + (
            f"fastest row within 1.25x FD: {best['name']}, {speed[best['name']]:.2f}x at FD"
            f" {best['fd'] / base['fd']:.2f}x."
            if best
            else "no row stays within 1.25x FD."
        ),
        "",
        "![speedup against FD](compose_digits.png)",
    ]
    RESULT.write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    stack = [r for r in results if not r["alt"]]
    ax.plot([speed[r["name"]] for r in stack], [r["fd"] for r in stack], "o-", label="waterfall (each stage adds one)")
    for r in stack:
        ax.annotate(r["name"].split("(")[0].strip(), (speed[r["name"]], r["fd"]), fontsize=7)
    if alternatives:
        xs, ys = [speed[r["name"]] for r in alternatives], [r["fd"] for r in alternatives]
        ax.plot(xs, ys, "s--", label="pruned + bf16 + compile, fewer DDIM steps")
        for r in alternatives:
            ax.annotate(r["name"].split(",")[-2].strip(), (speed[r["name"]], r["fd"]), fontsize=7)
    ax.axhline(1.25 * base["fd"], ls="--", c="gray", label="1.25x original FD")
    ax.axvline(8, ls=":", c="gray", label="8x")
    ax.set_xlabel("sampling speedup vs original (64 images, one run)")
    ax.set_ylabel("FD (digits features)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PICTURE, dpi=120)


if __name__ == "__main__":
    main()
