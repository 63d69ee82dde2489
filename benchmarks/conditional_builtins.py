"""How good are the conditional built-ins? Prompt / class accuracy and FD per guidance scale, and the VAE's
reconstruction FD.

Regenerates benchmarks/results/conditional_builtins.md and the grids docs/digits_t2i_samples.png,
docs/digits_dit_samples.png:

    .venv/bin/python benchmarks/conditional_builtins.py --num 1000

For each of builtin:digits-t2i (30 prompts: three wordings per digit) and builtin:digits-dit (labels 0-9): `num`
DDIM-25 samples per guidance scale (seed 0), sampled through the diffusers pipeline; accuracy = share that
builtin:digits-features labels as the asked digit; FD (digits features, not FID) vs all 1,797 digits. Noise floor: FD
between two independent sample sets (seeds 0 and 1) at the default guidance. VAE: FD of the test split's
reconstructions vs the test split, next to test vs train (two sets of real digits).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from runinfo import stamp

from slimfusion.data import load_digits_split
from slimfusion.data.prompts import WORDS
from slimfusion.metrics.accuracy import digit_accuracy
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.io import load
from slimfusion.pipelines import load_pipeline
from slimfusion.sample import SampleConfig, sample

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "conditional_builtins.md"
GUIDANCES = (1.0, 2.0, 4.0, 7.0)
DEFAULT_GUIDANCE = SampleConfig().guidance
PROMPTS = [
    p for d in range(10) for p in (f"a handwritten {WORDS[d]}", f"the digit {d}", f"number {WORDS[d]}, written by hand")
]


def conditions(name: str) -> dict:
    return {"prompts": PROMPTS} if name == "digits-t2i" else {"class_labels": list(range(10))}


def asked(name: str, num: int) -> list[int]:
    return [(i % len(PROMPTS)) // 3 if name == "digits-t2i" else i % 10 for i in range(num)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="samples per row")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    args = parser.parse_args()

    real = feature_stats(digit_features(load_digits_split("all")[0]))
    lines = []
    for name in ("digits-t2i", "digits-dit"):
        pipe = load_pipeline(f"builtin:{name}")
        rows, floor_sets = [], {}
        for guidance in GUIDANCES:
            for seed in (0, 1) if guidance == DEFAULT_GUIDANCE else (0,):
                config = SampleConfig(
                    num=args.num, steps=args.steps, seed=seed, guidance=guidance, batch_size=250, **conditions(name)
                )
                start = time.perf_counter()
                images = sample(pipe, config)
                rate = args.num / (time.perf_counter() - start)
                stats = feature_stats(digit_features(images))
                if guidance == DEFAULT_GUIDANCE:
                    floor_sets[seed] = stats
                if seed == 0:
                    acc = digit_accuracy(images, asked(name, args.num))
                    rows.append((guidance, acc, frechet_distance(*stats, *real), rate))
        floor = frechet_distance(*floor_sets[0], *floor_sets[1])
        lines += [
            f"### builtin:{name}",
            "",
            "| guidance | accuracy | FD vs all digits | images/s |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {g:g}{' (default)' if g == DEFAULT_GUIDANCE else ''} | {a:.1%} | {f:.3f} | {r:.1f} |"
            for g, a, f, r in rows
        ]
        lines += [
            "",
            f"Noise floor (two independent {args.num}-sample sets at guidance {DEFAULT_GUIDANCE:g}): **{floor:.3f}**.",
            "",
        ]
    vae = load("builtin:digits-vae")
    test, train = load_digits_split("test")[0], load_digits_split("train")[0]
    from slimfusion.train.builtins.vae import decode, encode

    recon = decode(vae, encode(vae, test))
    test_stats = feature_stats(digit_features(test))
    recon_fd = frechet_distance(*feature_stats(digit_features(recon)), *test_stats)
    real_fd = frechet_distance(*feature_stats(digit_features(train)), *test_stats)
    mse = (recon - test).pow(2).mean().item()
    header = [
        "# Conditional built-ins: quality",
        "",
        f"Command: `.venv/bin/python benchmarks/conditional_builtins.py --num {args.num}` ({stamp()})",
        "",
        f"DDIM {args.steps} steps, seed 0, sampled through diffusers' StableDiffusionPipeline / DiTPipeline. Accuracy:",
        "share of samples that builtin:digits-features labels as the asked digit (text-to-image: 30 prompts, three",
        "wordings per digit). FD: Frechet distance in digits-features space (not FID) vs all 1,797 digits.",
        "",
    ]
    vae_lines = [
        "### builtin:digits-vae",
        "",
        "| sets compared | FD (digits features) |",
        "|---|---:|",
        f"| reconstructions of the 360 test digits vs the test digits | {recon_fd:.3f} |",
        f"| test digits vs train digits (noise floor of real data) | {real_fd:.3f} |",
        "",
        f"Reconstruction MSE on the test split (pixels in [-1, 1]): {mse:.5f}.",
        "",
    ]
    RESULT.write_text("\n".join(header + lines + vae_lines))
    print("\n".join(lines + vae_lines))


if __name__ == "__main__":
    main()
