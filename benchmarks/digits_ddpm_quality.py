"""How good is builtin:digits-ddpm? FD (digits features) of its samples against the digits test split.

Regenerates benchmarks/results/digits_ddpm_quality.md and the sample grid docs/digits_ddpm_samples.png:

    .venv/bin/python benchmarks/digits_ddpm_quality.py --num 1000

Rows: FD of `num` DDIM-50 samples (seed 0) vs the test split; the same for a second, independent sample set
(seed 1); FD between the two sample sets (the noise floor: differences smaller than it are ties); and the
reference FD of the test split vs the train split (how far two sets of real digits are apart).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from runinfo import stamp

from slimfusion.data import load_digits_split
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.io import load
from slimfusion.models.meta import history
from slimfusion.sample import SampleConfig, make_grid, sample, save_image

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "digits_ddpm_quality.md"
GRID = ROOT / "docs" / "digits_ddpm_samples.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="samples per set")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    args = parser.parse_args()

    model = load("builtin:digits-ddpm")
    classifier = load("builtin:digits-features")
    stats = {}
    start = time.perf_counter()
    sets = {}
    for seed in (0, 1):
        images = sample(model, SampleConfig(num=args.num, steps=args.steps, seed=seed, batch_size=250))
        sets[seed] = images
        stats[f"samples (seed {seed})"] = feature_stats(digit_features(images, classifier))
    sample_s = time.perf_counter() - start
    for split in ("test", "train"):
        stats[split] = feature_stats(digit_features(load_digits_split(split)[0], classifier))

    def fd(a: str, b: str) -> float:
        return frechet_distance(*stats[a], *stats[b])

    with torch.no_grad():
        probs = torch.cat([classifier(c).softmax(1) for c in sets[0].split(500)])
    confident = (probs.max(1).values > 0.9).float().mean().item()
    counts = torch.bincount(probs.argmax(1), minlength=10).tolist()

    GRID.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(sets[0][:64], ncols=8), GRID, scale=4)
    train = history(model)[0]
    rows = [
        (f"{args.num} samples (seed 0) vs test split (360)", fd("samples (seed 0)", "test")),
        (f"{args.num} samples (seed 1) vs test split (360)", fd("samples (seed 1)", "test")),
        (
            f"{args.num} samples (seed 0) vs {args.num} samples (seed 1): noise floor",
            fd("samples (seed 0)", "samples (seed 1)"),
        ),
        ("test split (360) vs train split (1,437): real vs real", fd("test", "train")),
    ]
    lines = [
        "# builtin:digits-ddpm sample quality",
        "",
        f"Command: `.venv/bin/python benchmarks/digits_ddpm_quality.py --num {args.num}` ({stamp()})",
        "",
        f"Model trained by `slimfusion train` ({train['config']['steps']} steps, batch {train['config']['batch_size']},"
        f" {train['effect']['wall_s'] / 60:.0f} min on 2 CPU cores). Sampling: DDIM {args.steps} steps, eta 0;"
        f" {2 * args.num} images in {sample_s:.0f} s.",
        "Metric: FD (digits features), the Frechet distance in the feature space of builtin:digits-features"
        " (an offline stand-in for FID; not FID).",
        "",
        "| sets compared | FD (digits features) |",
        "|---|---:|",
        *[f"| {name} | {value:.3f} |" for name, value in rows],
        "",
        f"Samples the classifier labels with > 90% confidence: {confident:.1%}.",
        f"Predicted class counts of the seed-0 samples (digits 0-9): {counts}.",
        "",
        f"64 of the seed-0 samples: `{GRID.relative_to(ROOT)}`.",
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
