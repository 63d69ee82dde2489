"""Block skipping on builtin:digits-dit: DiP-GO vs diffusers' own caches (FirstBlockCache, PyramidAttentionBroadcast)
and fewer DDIM steps, at equal kept MACs.

Regenerates benchmarks/results/skip_dit.md:

    .venv/bin/python benchmarks/skip_dit.py --num 500

DDIM, 25 steps, classifier-free guidance 2, class labels 0-9 in turn. Kept MACs are **measured** for every row by
counting the layers that really ran during sampling (`slimfusion.skip.peers.MacsMeter`), since the diffusers caches
decide at run time. For each target: a DiP-GO plan (defaults of `SkipConfig`, calibrated on the ten labels with
guidance 2); FirstBlockCache with the threshold (from a grid) whose kept MACs on 40 selection images (seeds apart from
the evaluation's) come closest to DiP-GO's; plain DDIM with as many steps as fit in those MACs.
PyramidAttentionBroadcast only skips attention (it cannot go below ~80% here), so it gets rows of its own at skip
ranges 2 and 4. Quality: FD and KD (digits features, not FID / KID) of `num` samples vs all 1,797 digits, class
accuracy by the digit classifier, SSIM vs the full model's samples from the same noise, each with a 95% bootstrap
interval over the samples; every row of a target against its DiP-GO and FirstBlockCache rows, paired on identical
noise: better / worse only when the interval of the difference excludes zero, else tie. Speed: wall-clock of sampling
100 images, the rows of a target and the full model alternating in each of `--rounds` rounds: the median of the
per-round ratios full / row, with a 95% bootstrap interval over rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from runinfo import stamp
from skip_digits import span

from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.metrics.timing import cell, speedups
from slimfusion.pipelines import load_pipeline
from slimfusion.quality import Quality, References, quality_of
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, apply_plan, skip_plan
from slimfusion.skip.peers import MacsMeter, diffusers_cache
from slimfusion.train.conditional_data import NULL_CLASS

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "skip_dit.md"
STEPS, GUIDANCE, LABELS = 25, 2.0, list(range(10))
TARGETS = (0.6, 0.45)
FBC_THRESHOLDS = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4)
EVAL_SEED, SELECT_SEED = 1000, 2000
METRICS = ("fd", "kd", "accuracy", "ssim")
REFERENCES = References("digits:all")
PARTNERS = ("DiP-GO", "FirstBlockCache")  # every row of a target gets a paired verdict against these


def run(pipe, way: tuple, num: int, seed: int) -> tuple[torch.Tensor, float]:
    """(images, measured kept MACs) of sampling `num` images with one way of skipping: (kind, setting, steps)."""
    kind, setting, steps = way
    config = SampleConfig(
        num=num, steps=steps, seed=seed, class_labels=LABELS, guidance=GUIDANCE, batch_size=max(num, 1)
    )
    meter = MacsMeter(pipe.transformer)
    if kind == "plan":
        context = apply_plan(pipe.transformer, setting)
    elif kind in ("first-block-cache", "pyramid-attention-broadcast"):
        context = diffusers_cache(pipe.transformer, kind, **setting)
    else:
        context = nullcontext()
    with context, meter:
        images = sample(pipe, config, progress=False)
    return images, meter.ratio() * steps / STEPS


def quality(images: torch.Tensor, full: torch.Tensor | None) -> Quality:
    """FD, KD, class accuracy and (given the full model's samples from the same noise) SSIM, as index statistics."""
    record = {"indices": list(range(len(images))), "class_labels": LABELS}
    wanted = list(METRICS) if full is not None else ["fd", "kd"]
    return quality_of(images, record, wanted, REFERENCES, base=full)


def closest_fbc(pipe, target: float) -> tuple[dict, float]:
    """The FirstBlockCache threshold whose measured kept MACs on the selection images come closest to `target`."""
    measured = [(abs(run(pipe, ("first-block-cache", {"threshold": t}, STEPS), 40, SELECT_SEED)[1] - target), t)
                for t in FBC_THRESHOLDS]  # fmt: skip
    return {"threshold": min(measured)[1]}, min(measured)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=500, help="evaluation samples per row")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (ways alternate within a round)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per interval")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = load_pipeline("builtin:digits-dit")
    full, _ = run(pipe, ("full", None, STEPS), args.num, EVAL_SEED)
    second, _ = run(pipe, ("full", None, STEPS), args.num, EVAL_SEED + 1)
    full_q, second_q = quality(full, full), quality(second, None)
    floor = {
        "fd": frechet_distance(*feature_stats(digit_features(full)), *feature_stats(digit_features(second))),
        "full": full_q.values(),
        "verdicts": {k: v["verdict"] for k, v in second_q.versus(full_q, args.resamples, paired=False).items()},
    }
    conditions, null = torch.tensor(LABELS), torch.tensor([NULL_CLASS])
    rows = []

    def measure(target, ways: dict[str, tuple], details: dict[str, dict]) -> None:
        every = {"full": ("full", None, STEPS), **ways}  # timed: full-model time / each way's, 100 images
        speed = speedups({n: lambda w=w: run(pipe, w, 100, EVAL_SEED) for n, w in every.items()}, "full", args.rounds)
        measured = {}
        for name, way in ways.items():
            images, kept = run(pipe, way, args.num, EVAL_SEED)
            measured[name] = quality(images, full)
            rows.append(
                {
                    "target": target,
                    "method": name,
                    "kept": kept,
                    "speedup": speed[name],
                    "metrics": measured[name].values(),
                    "intervals": measured[name].intervals(args.resamples),
                    "detail": details.get(name, {}),
                }
            )
        for row in rows[-len(ways) :]:
            mine = measured[row["method"]]
            row["versus"] = {
                partner: {k: v["verdict"] for k, v in mine.versus(measured[partner], args.resamples).items()}
                for partner in PARTNERS
                if partner in measured and partner != row["method"]
            }
            print(json.dumps(row), flush=True)

    for target in TARGETS:
        start = time.perf_counter()
        plan = skip_plan(pipe.transformer, SkipConfig(steps=STEPS, target=target), conditions, null, GUIDANCE, False)
        plan_s = time.perf_counter() - start
        fbc, _ = closest_fbc(pipe, plan.macs_ratio)
        fewer = max(1, round(STEPS * plan.macs_ratio))
        ways = {
            "DiP-GO": ("plan", plan, STEPS),
            "FirstBlockCache": ("first-block-cache", fbc, STEPS),
            f"DDIM {fewer} steps": ("full", None, fewer),
        }
        details = {"DiP-GO": {"plan_macs_ratio": plan.macs_ratio, "plan_s": round(plan_s)}, "FirstBlockCache": fbc}
        measure(target, ways, details)
    pab = {f"PAB skip range {k}": ("pyramid-attention-broadcast", {"skip_range": k}, STEPS) for k in (2, 4)}
    measure("-", pab, {name: way[1] for name, way in pab.items()})
    write(rows, args, floor)


def write(rows: list[dict], args, floor: dict) -> None:
    full = floor["full"]
    lines = [
        "# Block skipping on builtin:digits-dit: DiP-GO vs diffusers' caches (DDIM 25, guidance 2)",
        "",
        f"Command: `.venv/bin/python benchmarks/skip_dit.py --num {args.num} --rounds {args.rounds}` ({stamp()})",
        "",
        next(p for p in __doc__.split("\n\n") if p.startswith("DDIM")).strip().replace("\n", " "),
        "",
        f"Full model: FD {full['fd']:.3f}, KD x1000 {1000 * full['kd']:.2f}, class accuracy {full['accuracy']:.1%};"
        f" noise floor (FD between two independent {args.num}-sample sets) **{floor['fd']:.3f}**; the second set"
        f" against the first: FD {floor['verdicts']['fd']}, KD {floor['verdicts']['kd']} (unpaired).",
        "",
        "| target | method | kept MACs (measured) | speedup [95%] | FD | KD x1000 | class accuracy % | SSIM vs full |"
        " vs DiP-GO (FD / KD / acc. / SSIM) | vs FirstBlockCache (FD / KD / acc. / SSIM) | settings |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        detail = ", ".join(f"{k} {v}" for k, v in r["detail"].items())
        verdicts = [" / ".join(r["versus"][p][k] for k in METRICS) if p in r["versus"] else "-" for p in PARTNERS]
        lines.append(
            f"| {r['target']} | {r['method']} | {r['kept']:.3f} | {cell(*r['speedup'])} | {span(r, 'fd')} |"
            f" {span(r, 'kd', 1000, 2)} | {span(r, 'accuracy', 100, 1)} | {span(r, 'ssim')} | {' | '.join(verdicts)} |"
            f" {detail} |"
        )
    RESULT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
