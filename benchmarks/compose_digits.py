"""Every technique composed on builtin:digits-ddpm: wall-clock sampling speedup and FD / KD / SSIM after each step,
each with its 95% interval, and a paired verdict for what each step did.

Regenerates benchmarks/results/compose_digits.md and compose_digits.png:

    .venv/bin/python benchmarks/compose_digits.py --num 2000 --rounds 9

Stages, each adding one technique to the one before (a waterfall): the original (DDIM 50, float32 eager); width
pruning (Diff-Pruning T = 0.05, ratio 0.25, recovered with the finetune defaults for 1,200 steps: `--pruned` takes a
model made elsewhere, else one is made here and named by its weights and history hashes); DDIM 25 steps; a DeepCache
plan for those 25 steps (`--interval`, `--branch`); bf16; torch.compile. A second table swaps the cache for fewer
DDIM steps (`--alt-steps`) on the pruned, bf16, compiled model. Speed: seconds to sample 64 images, every row timed
in alternation with the others in each of `--rounds` rounds; a speedup is the median of the per-round ratios with a
95% bootstrap interval over rounds ("tie" when it covers 1). Quality: FD and KD (digits features, not FID / KID) of
`--num` samples against all 1,797 digits and SSIM against the original's samples from the same noise, each with a
95% bootstrap interval over samples; each stage against the stage above, and each fewer-steps row against the full
stack, paired on identical noise: better / worse only when the interval of the difference excludes zero, else tie.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
from pathlib import Path

import torch
from runinfo import code_version, model_id, stamp
from skip_digits import span

from slimfusion.data import load_images
from slimfusion.metrics.cost import count_macs
from slimfusion.metrics.timing import cell, interleaved, ratio
from slimfusion.models.io import load, save
from slimfusion.quality import Quality, References, quality_of
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, apply_plan, skip_plan

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "compose_digits.md"
PICTURE = ROOT / "benchmarks" / "results" / "compose_digits.png"
SEED = 1000
METRICS = ("fd", "kd", "ssim")
REFERENCES = References("digits:all")
STACK = "+ torch.compile"  # the full waterfall: the fewer-steps rows are compared with it


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
    half = quantize(copy.deepcopy(pruned), QuantizeConfig(scheme="bf16"))
    compiled = quantize(copy.deepcopy(pruned), QuantizeConfig(scheme="bf16", compile=True))
    return [
        {"name": "original (DDIM 50, float32)", "model": original, "steps": 50, "plan": None},
        {"name": "+ width pruning (Diff-Pruning 0.25, recovered)", "model": pruned, "steps": 50, "plan": None},
        {"name": "+ DDIM 25 steps", "model": pruned, "steps": 25, "plan": None},
        {"name": f"+ DeepCache (interval {args.interval})", "model": pruned, "steps": 25, "plan": plan},
        {"name": "+ bf16", "model": half, "steps": 25, "plan": plan},
        {"name": STACK, "model": compiled, "steps": 25, "plan": plan},
    ] + [  # the same pipeline with fewer DDIM steps in place of the cache (how far steps alone go)
        {"name": f"pruned + bf16 + compile, DDIM {n}, no cache", "model": compiled, "steps": n, "plan": None, "alt": 1}
        for n in args.alt_steps
    ]


def images_of(stage: dict, num: int, seed: int = SEED, batch_size: int = 250) -> torch.Tensor:
    applied = apply_plan(stage["model"], stage["plan"]) if stage["plan"] is not None else contextlib.nullcontext()
    with applied:
        return sample(
            stage["model"],
            SampleConfig(num=num, steps=stage["steps"], seed=seed, batch_size=batch_size),
            progress=False,
        )


def quality(images: torch.Tensor, original: torch.Tensor | None) -> Quality:
    wanted = list(METRICS) if original is not None else ["fd", "kd"]
    return quality_of(images, {}, wanted, REFERENCES, base=original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--pruned", default=None, help="a recovered pruned model (default: made here)")
    parser.add_argument("--interval", type=int, default=2, help="DeepCache interval on the 25-step schedule")
    parser.add_argument("--branch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9, help="timing rounds (all rows alternate within a round)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per interval")
    parser.add_argument("--alt-steps", type=int, nargs="*", default=[25, 20, 15, 12, 10])
    parser.add_argument("--work", default="runs/compose_digits")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = stages(args, work)
    base_macs = count_macs(rows[0]["model"])
    # every row once to warm up (compiles), then one call each per round, alternating
    times = interleaved({r["name"]: lambda r=r: images_of(r, 64, batch_size=64) for r in rows}, 1, args.rounds)
    original = images_of(rows[0], args.num)
    second = images_of(rows[0], args.num, seed=SEED + 1)
    original_q, second_q = quality(original, original), quality(second, None)
    floor = {k: v["verdict"] for k, v in second_q.versus(original_q, args.resamples, False).items()}
    floor["fd_gap"] = abs(second_q.values()["fd"] - original_q.values()["fd"])
    measured, results = {}, []
    for index, row in enumerate(rows):
        measured[row["name"]] = original_q if index == 0 else quality(images_of(row, args.num), original)
        partner = STACK if row.get("alt") else rows[max(index - 1, 0)]["name"]
        macs = count_macs(row["model"]) / base_macs * row["steps"] / 50
        macs *= row["plan"].macs_ratio if row["plan"] is not None else 1.0
        mine = measured[row["name"]]
        results.append(
            {
                "name": row["name"],
                "macs": macs,
                "speedup": ratio(times[rows[0]["name"]], times[row["name"]]),
                "share": ratio(times[partner], times[row["name"]]),  # against the stage above / the full stack
                "metrics": mine.values(),
                "intervals": mine.intervals(args.resamples),
                "versus": {k: v["verdict"] for k, v in mine.versus(measured[partner], args.resamples).items()},
                "alt": row.get("alt", 0),
                "model": model_id(row["model"]) if index == 1 else None,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    write(results, floor, args)


def verdicts(row: dict) -> str:
    return " / ".join(row["versus"].get(k, "-") for k in METRICS)


def write(results: list[dict], floor: dict, args) -> None:
    base = results[0]
    command = f".venv/bin/python benchmarks/compose_digits.py --num {args.num} --rounds {args.rounds}"
    command += f" --pruned {args.pruned}" if args.pruned else ""
    command += f" --interval {args.interval} --branch {args.branch} --alt-steps {' '.join(map(str, args.alt_steps))}"
    lines = [
        "# Composing every technique on builtin:digits-ddpm",
        "",
        f"Command: `{command}` ({stamp()})",
        "",
        next(p for p in __doc__.split("\n\n") if p.startswith("Stages")).strip().replace("\n", " "),
        "",
        f"The pruned model: {results[1]['model']}. Noise floor: the FD (to the digits) of a second {args.num}-sample"
        f" set of the original differs from the first's by {floor['fd_gap']:.3f}; the second set against the first"
        f" (unpaired): FD {floor['fd']}, KD {floor['kd']}.",
        "",
        "| stage | sampling MACs | speedup [95%] | share of this step [95%] | FD | KD x1000 | SSIM vs original |"
        " vs the stage above (FD / KD / SSIM) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in (r for r in results if not r["alt"]):
        first = r is base
        lines.append(
            f"| {r['name']} | {r['macs']:.1%} | {'(reference)' if first else cell(*r['speedup'])} |"
            f" {'-' if first else cell(*r['share'])} | {span(r, 'fd')} | {span(r, 'kd', 1000, 2)} |"
            f" {span(r, 'ssim')} | {'-' if first else verdicts(r)} |"
        )
    alternatives = [r for r in results if r["alt"]]
    if alternatives:
        lines += [
            "",
            f"Fewer DDIM steps in place of the cache (the pruned model, bf16, compiled; same timing run), against the"
            f" full stack ({STACK}, DDIM 25 with the cache):",
            "",
            "| pipeline | sampling MACs | speedup [95%] | speed vs full stack [95%] | FD | KD x1000 | SSIM vs"
            " original | vs full stack (FD / KD / SSIM) |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {r['name']} | {r['macs']:.1%} | {cell(*r['speedup'])} | {cell(*r['share'])} | {span(r, 'fd')} |"
            f" {span(r, 'kd', 1000, 2)} | {span(r, 'ssim')} | {verdicts(r)} |"
            for r in alternatives
        ]
    lines += ["", moonshot(results), "", "![speedup against FD](compose_digits.png)"]
    RESULT.write_text("\n".join(lines) + "\n")
    picture(results)


def moonshot(results: list[dict]) -> str:
    """The issue's moonshot, on point values: >= 8x faster sampling with FD within 1.25x of the original's."""
    base = results[0]
    stack = [r for r in results if not r["alt"]][-1]
    within = [r for r in results[1:] if r["metrics"]["fd"] / base["metrics"]["fd"] <= 1.25]
    best = max(within, key=lambda r: r["speedup"][0]) if within else None
    met = best is not None and best["speedup"][1] >= 8

    def said(r: dict) -> str:
        return f"{r['name']}, {cell(*r['speedup'])} at FD {r['metrics']['fd'] / base['metrics']['fd']:.2f}x"

    return (
        f"Moonshot (>= 8x faster sampling, the interval's low end, with FD within 1.25x of the original's): "
        f"**{'met' if met else 'not met'}**. Every technique stacked: {said(stack)}; fastest row within 1.25x FD: "
        + (said(best) if best else "none")
        + "."
    )


def picture(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = results[0]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    waterfall = [r for r in results if not r["alt"]]
    fewer = [r for r in results if r["alt"]]
    for group, style, label in (
        (waterfall, "o-", "waterfall (each stage adds one)"),
        (fewer, "s--", "pruned + bf16 + compile, fewer DDIM steps"),
    ):
        if not group:
            continue
        xs = [r["speedup"][0] for r in group]
        ys = [r["metrics"]["fd"] for r in group]
        xerr = [[r["speedup"][0] - r["speedup"][1] for r in group], [r["speedup"][2] - r["speedup"][0] for r in group]]
        yerr = [[max(0.0, r["metrics"]["fd"] - r["intervals"]["fd"][0]) for r in group],
                [max(0.0, r["intervals"]["fd"][1] - r["metrics"]["fd"]) for r in group]]  # fmt: skip
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt=style, capsize=2, label=label)
        for r in group:
            short = r["name"].split(",")[-2] if r["alt"] else r["name"].split("(")[0]
            ax.annotate(short.strip(), (r["speedup"][0], r["metrics"]["fd"]), fontsize=7)
    ax.axhline(1.25 * base["metrics"]["fd"], ls="--", c="gray", label="1.25x original FD")
    ax.axvline(8, ls=":", c="gray", label="8x")
    ax.set_xlabel("sampling speedup vs original (64 images; 95% interval over rounds)")
    ax.set_ylabel("FD (digits features; 95% interval over samples)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PICTURE, dpi=120)


if __name__ == "__main__":
    main()
