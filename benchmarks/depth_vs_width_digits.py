"""Depth against width pruning on builtin:digits-ddpm, each recovered with the same budget.

Regenerates benchmarks/results/depth_vs_width_digits.md (+ depth_vs_width_digits.png):

    .venv/bin/python benchmarks/depth_vs_width_digits.py --steps 1000 --num 1000

Rows: width (Diff-Pruning, T = 0.05, the ratio whose MACs come closest to the target); depth chosen greedily and by
learned gates at 80% of the MACs (where the choice matters), and depth at its limit (every stage down to one layer
and no mid block: whole layers cannot go further on this UNet); depth at its limit then width to ~50% and ~30%.
Every row is then fine-tuned `--steps` steps (the original took 8,000) with output distillation W = 0.5 from the
original, batch 64, lr 2e-4, seed 0. Columns: params, MACs, wall-clock speedup of a batch of 64 (original and pruned
alternating one forward each in 9 rounds: the median of the per-round ratios [95% interval]), FD (digits features,
not FID) of `--num` DDIM-50 samples vs all 1,797 digits with the noise floor, SSIM vs the original's samples from
identical noise. Rows are cached under `--work`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffpruning_digits import RESAMPLES, SAMPLES, paired_quality, quality, said, samples_of, speedup
from runinfo import RowCache
from safetensors.torch import save_file

from slimfusion.data import load_images
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.metrics.timing import cell
from slimfusion.models.io import load, save
from slimfusion.prune import DepthConfig, StructuralConfig, prune
from slimfusion.sample import SampleConfig, sample
from slimfusion.train import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "depth_vs_width_digits.md"
DEPTH_LIMIT = 0.6  # below what whole layers can reach: greedy removes all it can
ROWS = {  # label -> list of (kind, value): steps applied in order; "width@" values are overall MACs targets
    "width ~50%": [("width@", 0.5)],
    "depth, its limit": [("depth", {"method": "greedy", "target_macs": DEPTH_LIMIT})],
    "depth limit + width ~50%": [("depth", {"method": "greedy", "target_macs": DEPTH_LIMIT}), ("width@", 0.5)],
    "depth greedy ~80%": [("depth", {"method": "greedy", "target_macs": 0.8})],
    "depth learned ~80%": [("depth", {"method": "learned", "target_macs": 0.8})],
    "width ~30%": [("width@", 0.3)],
    "depth limit + width ~30%": [("depth", {"method": "greedy", "target_macs": DEPTH_LIMIT}), ("width@", 0.3)],
}
PAIRS = (  # (row, against): paired quality verdicts in the reading; same noise, so SSIM / FD differences pair up
    ("depth limit + width ~30%", "width ~30%"),
    ("depth limit + width ~50%", "width ~50%"),
    ("depth, its limit", "width ~50%"),
    ("depth learned ~80%", "depth greedy ~80%"),
)


def row_folder(work: Path, label: str) -> Path:
    """Where a row's recovered model and its evaluation samples live."""
    return work / label.replace(" ", "_").replace("~", "").replace("%", "").replace(",", "")


def width_ratio(model, target_macs: float, ratios: list[float] | None = None) -> float:
    """The pruning ratio (of `ratios`, default 0.02 ... 0.78) whose magnitude-pruned widths (diff-pruning gives the
    same widths) come closest to the target MACs."""
    import copy

    best, best_gap = 0.0, float("inf")
    for ratio in ratios or [round(0.02 * i, 2) for i in range(1, 40)]:
        trial = copy.deepcopy(model)
        prune(trial, StructuralConfig(method="magnitude", ratio=ratio), progress=False)
        gap = abs(count_macs(trial) - target_macs)
        if gap < best_gap:
            best, best_gap = ratio, gap
    return best


def build_row(label: str, base_macs: int, images: torch.Tensor):
    model = load("builtin:digits-ddpm")
    settings = []
    for kind, value in ROWS[label]:
        if kind == "depth":
            prune(model, DepthConfig(**value), data=images, progress=False)
            settings.append(f"depth {value['method']} -> {count_macs(model) / base_macs:.3f}")
        else:
            ratio = width_ratio(model, value * base_macs)
            prune(model, StructuralConfig(method="diff-pruning", ratio=ratio), data=images, progress=False)
            settings.append(f"diff-pruning ratio {ratio:g}")
    return model, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "depth_vs_width")
    parser.add_argument("--cached-only", action="store_true", help="write the table from the finished rows only")
    parser.add_argument(
        "--remeasure-latency", action="store_true", help="re-time the cached rows' saved models (on a quiet machine)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 lets two benchmarks share 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    teacher = load("builtin:digits-ddpm")
    images = load_images("digits:train", 16, 1)
    reference = feature_stats(digit_features(load_images("digits:all", 16, 1)))
    original = samples_of(teacher, args.num)
    second = sample(teacher, SampleConfig(num=args.num, steps=50, seed=2000, batch_size=250))
    base = {
        "params": count_params(teacher),
        "macs": count_macs(teacher),
        "fd": frechet_distance(*feature_stats(digit_features(original)), *reference),
        "floor": frechet_distance(*feature_stats(digit_features(original)), *feature_stats(digit_features(second))),
    }
    cache = RowCache(args.work / "rows.json")  # keyed by the row's steps, --steps, --num and the code version
    rows = []
    for label in ROWS:
        key = {"label": label, "how": ROWS[label], "steps": args.steps, "num": args.num}
        folder = row_folder(args.work, label)
        row = cache.get(key)
        if row is not None and not (folder / SAMPLES).exists():
            row = None  # a row whose samples are gone cannot enter the paired verdicts: rebuild it
        if row is not None:
            if args.remeasure_latency:
                row = cache.put(key, row | {"speedup": speedup(teacher, load(folder))})
            rows.append(row)
            continue
        if args.cached_only:
            continue
        start = time.perf_counter()
        model, settings = build_row(label, base["macs"], images)
        before = quality(samples_of(model, args.num), reference, original)
        finetune(model, images, FinetuneConfig(steps=args.steps, distill=0.5), teacher=teacher)
        save(model, folder, overwrite=True)
        produced = samples_of(model, args.num)
        save_file({"images": produced.contiguous()}, folder / SAMPLES)  # for the paired verdicts
        row = {
            "label": label,
            "settings": settings,
            "params": count_params(model),
            "macs": count_macs(model),
            "speedup": speedup(teacher, model),
            "before": before,
            "after": quality(produced, reference, original),
            "wall_s": round(time.perf_counter() - start, 1),
        }
        rows.append(cache.put(key, row))
        print(json.dumps(row), flush=True)
        write(rows, base, args)  # after every row: a run cut short still leaves its finished rows (and says so)
    write(rows, base, args, verdicts(rows, args, original))


def verdicts(rows: list[dict], args, original: torch.Tensor) -> list[str]:
    """The reading: each pair of PAIRS on FD / KD / SSIM (paired 95% bootstrap intervals, tie when one covers zero),
    and on speed (faster / slower only when the two speedup intervals do not overlap: they were timed separately)."""
    done = {r["label"]: r for r in rows}
    scored = {label: paired_quality(row_folder(args.work, label) / SAMPLES, original) for label in done}
    lines = ["## Reading (paired on identical noise; computed at the end of a full run)", ""]
    for mine, other in PAIRS:
        if mine not in done or other not in done:
            continue
        a, b = done[mine], done[other]
        versus = scored[mine].versus(scored[other], RESAMPLES)
        (lo_a, hi_a), (lo_b, hi_b) = a["speedup"][1:], b["speedup"][1:]
        speed = "faster" if lo_a > hi_b else "slower" if hi_a < lo_b else "tie"
        lines.append(
            f"- {mine} ({a['macs'] / b['macs']:.0%} of the MACs of {other}) vs {other}: speed {speed}"
            f" ({cell(*a['speedup'])} vs {cell(*b['speedup'])}); {said(versus)}."
        )
    return lines + [""]


def write(rows: list[dict], base: dict, args, reading: list[str] | None = None) -> None:
    lines = [
        "# Depth against width pruning on builtin:digits-ddpm",
        "",
        f"Command: `.venv/bin/python benchmarks/depth_vs_width_digits.py --steps {args.steps} --num {args.num}`",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
        f"Original: {base['params'] / 1e6:.3f} M params, {base['macs'] / 1e6:.1f} M MACs, FD {base['fd']:.3f};"
        f" noise floor (two independent {args.num}-sample sets) {base['floor']:.3f}.",
        "",
        "| model | how | params | MACs | speedup (b=64) [95%] | speedup / MACs ratio | FD before -> after recovery |"
        " FD / original | SSIM after | commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        macs_ratio = base["macs"] / r["macs"]
        lines.append(
            f"| {r['label']} | {'; '.join(r['settings'])} | {r['params'] / 1e6:.3f} M |"
            f" {r['macs'] / 1e6:.1f} M ({r['macs'] / base['macs']:.0%}) | {cell(*r['speedup'])} |"
            f" {r['speedup'][0] / macs_ratio:.0%} | {r['before']['fd']:.2f} -> {r['after']['fd']:.3f} |"
            f" {r['after']['fd'] / base['fd']:.2f} | {r['after']['ssim']:.3f} | {r['commit']} |"
        )
    plot(rows, base)
    lines += ["", "![speedup and FD against MACs](depth_vs_width_digits.png)", ""] + (reading or [])
    missing = [label for label in ROWS if label not in {r["label"] for r in rows}]
    if missing:
        lines += [f"Not measured yet (the run was cut short): {', '.join(missing)}.", ""]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


def plot(rows: list[dict], base: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for r in rows:
        share = r["macs"] / base["macs"]
        left.scatter(share, r["speedup"][0], s=30)
        left.annotate(r["label"], (share, r["speedup"][0]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        right.scatter(share, r["after"]["fd"], s=30)
        right.annotate(r["label"], (share, r["after"]["fd"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    shares = [i / 100 for i in range(20, 101)]
    left.plot(shares, [1 / s for s in shares], ls="--", c="grey", lw=1, label="MACs ratio")
    left.set_xlabel("kept MACs")
    left.set_ylabel("wall-clock speedup (batch 64)")
    left.legend(fontsize=8)
    right.axhline(base["fd"], ls="--", c="grey", lw=1, label="original")
    right.axhline(1.25 * base["fd"], ls=":", c="grey", lw=1, label="1.25 x original")
    right.set_xlabel("kept MACs")
    right.set_ylabel("FD after recovery (digits features)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULT.with_suffix(".png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
