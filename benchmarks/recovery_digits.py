"""Recovery settings study: which fine-tuning settings bring a ~56%-MACs Diff-Pruning model to FD <= 1.25x the original?

Regenerates benchmarks/results/recovery_digits.md:

    .venv/bin/python benchmarks/recovery_digits.py --num 2000 --seeds 0 1

builtin:digits-ddpm is pruned once per seed (diff-pruning, T = 0.05, ratio 0.25: the Diff-Pruning benchmark's row)
and every setting fine-tunes a copy of that same pruned model with 1,200 steps (15% of the original 8,000; a setting
may ask for fewer) at batch 64.
The settings vary one lever at a time from the old default (output distillation W = 0.5, lr 2e-4, 50 warm-up steps,
EMA max decay 0.999): the learning rate, the distillation weight, BK-SDM's feature distillation at block outputs,
the EMA (on / off: its max decay never binds within 1,200 steps), the warm-up, a cosine decay of the learning rate
to 0, and the best ones together.
Quality as in diffpruning_digits.py: FD (digits features) of
`--num` DDIM-50 samples against all 1,797 digits, the noise floor from two sample sets of the original, SSIM against
the original's samples from the same noise. Each setting against the old default of its seed, and each W = 1 variant
also against W = 1 alone (finetune's default), paired on identical noise (FD / KD / SSIM, 95% bootstrap interval of
the difference): better / worse only when it excludes zero.
Finished rows are cached under `--work` (each with its samples); `--settings` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffpruning_digits import RESAMPLES, SAMPLE_SEED, SAMPLES, paired_quality, quality, said, samples_of
from runinfo import RowCache
from safetensors.torch import load_file, save_file

from slimfusion.data import load_images
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.io import load, save
from slimfusion.prune import StructuralConfig, prune
from slimfusion.quality import Quality
from slimfusion.sample import SampleConfig, sample
from slimfusion.train import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "recovery_digits.md"
STEPS = 1200  # 15% of the original 8,000 steps: the issue's budget
BASELINE = "old default"  # every setting's paired verdict is against this one, seed by seed
DEFAULT = "W 1.0 (output KD only)"  # finetune's default: settings that change one lever from it are paired with it too
OLD = {"steps": STEPS, "distill": 0.5, "lr": 2e-4, "warmup_steps": 50, "ema_decay": 0.999, "feature_distill": 0.0}
SETTINGS = {  # name -> changes from OLD
    "old default": {},
    "lr 1e-4": {"lr": 1e-4},
    "lr 5e-4": {"lr": 5e-4},
    "W 1.0 (output KD only)": {"distill": 1.0},
    "W 1.0, lr 5e-4": {"distill": 1.0, "lr": 5e-4},
    "W 0.0 (no KD)": {"distill": 0.0},
    "feature KD 1.0": {"feature_distill": 1.0},
    "EMA off": {"ema_decay": 0.0},  # the max decay never binds in 1,200 steps (warm-up: 1 - (1 + step)^-0.75)
    "warm-up 200": {"warmup_steps": 200},
    "W 1.0, cosine lr": {"distill": 1.0, "lr_decay": "cosine"},
    "W 1.0, EMA off": {"distill": 1.0, "ema_decay": 0.0},
    "W 1.0, 1000 steps": {"distill": 1.0, "steps": 1000},  # fewer steps: the budget is a ceiling, not a target
}


def pruned_model(work: Path, seed: int, images):
    """The seed's pruned model, pruned once and cached: every setting starts from identical weights."""
    folder = work / f"pruned-s{seed}"
    if not folder.exists():
        model = load("builtin:digits-ddpm")
        prune(model, StructuralConfig(method="diff-pruning", threshold=0.05, ratio=0.25, seed=seed), data=images)
        save(model, folder)
    return load(folder)


def original_samples(work: Path, teacher, num: int, version: str) -> torch.Tensor:
    """The original's samples from the evaluation noise, sampled once per code version (as the rows are) and kept
    beside the rows."""
    file = work / f"original-n{num}-{version}-{SAMPLES}"
    if not file.exists():
        save_file({"images": samples_of(teacher, num).contiguous()}, file)
    return load_file(file)["images"]


def baseline(work: Path, num: int, teacher, reference_stats, first) -> dict:
    """The original's FD and the noise floor (`first`: its samples from the evaluation noise), cached."""
    file = work / f"original-n{num}.json"
    if file.exists():
        return json.loads(file.read_text())
    second = sample(teacher, SampleConfig(num=num, steps=50, seed=SAMPLE_SEED + 1, batch_size=250))
    base = {
        "fd": frechet_distance(*feature_stats(digit_features(first)), *reference_stats),
        "noise_floor": frechet_distance(*feature_stats(digit_features(first)), *feature_stats(digit_features(second))),
    }
    file.write_text(json.dumps(base, indent=2))
    return base


def write_table(rows: list[dict], base: dict, args, done: bool, original: torch.Tensor | None) -> None:
    by_seed: dict[int, list[str]] = {}
    for r in rows:  # one command per seed regenerates that seed's rows (the cache under --work joins them)
        by_seed.setdefault(r["seed"], []).append(r["setting"])
    cmd = "`; `".join(
        f".venv/bin/python benchmarks/recovery_digits.py --num {args.num} --seeds {seed} --settings "
        + " ".join(f'"{name}"' for name in names)
        for seed, names in sorted(by_seed.items())
    )
    goal = 1.25 * base["fd"]
    lines = [
        "# Recovery settings on builtin:digits-ddpm pruned to ~56% MACs (diff-pruning, ratio 0.25)",
        "",
        f"Commands: `{cmd}`" + ("" if done else "  (PARTIAL: run still in progress or interrupted)"),
        "",
        f"Every row: the same pruned model per seed, {STEPS} fine-tuning steps (15% of the original 8,000) unless the"
        " setting says fewer, batch 64;"
        " the setting changes one lever from the old default (output distillation W = 0.5, lr 2e-4, 50 warm-up steps,"
        f" EMA max decay 0.999). FD of {args.num} DDIM-50 samples (digits features) against all 1,797 digits.",
        f"Original: FD **{base['fd']:.3f}**; goal FD <= 1.25x = **{goal:.3f}**; noise floor (two sample sets of the"
        f" original) {base['noise_floor']:.3f}.",
        "",
        "| setting | seed | FD | FD / original | SSIM vs original | fine-tune time | commit |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['fd']:.3f} | {r['fd'] / base['fd']:.2f} | {r['ssim']:.3f} |"
            f" {r['finetune_s'] / 60:.1f} min | {r['commit']} |"
        )
    means: dict[str, list[float]] = {}
    for r in rows:
        means.setdefault(r["setting"], []).append(r["fd"])
    if means:
        lines += ["", "## Reading", ""]
        order = sorted(means, key=lambda s: statistics.mean(means[s]))
        for name in order:
            fds = means[name]
            verdict = "meets" if statistics.mean(fds) <= goal else "misses"
            lines.append(
                f"- {name}: mean FD {statistics.mean(fds):.3f} over {len(fds)} seed(s) ="
                f" {statistics.mean(fds) / base['fd']:.2f}x; {verdict} the goal."
            )
        lines += paired_verdicts(rows, Path(args.work), original)
    RESULT.write_text("\n".join(lines) + "\n")


def setting_dir(work: Path, name: str, seed: int) -> Path:
    return work / f"{name.replace(' ', '_').replace('/', '')}-s{seed}"


def paired_verdicts(rows: list[dict], work: Path, original: torch.Tensor | None) -> list[str]:
    """Each setting against the old default of its seed (and a W = 1 variant against W = 1) on FD / KD / SSIM, paired
    (both sampled from the same noise): better / worse only when the 95% bootstrap interval of the difference excludes
    zero, else tie."""
    if original is None:
        return ["- Paired verdicts: written when the run finishes."]
    lines, scored = [], {}

    def scores(name: str, seed: int) -> Quality | None:  # each sample set scored once, shared by its comparisons
        path = setting_dir(work, name, seed) / SAMPLES
        if (name, seed) not in scored:
            scored[name, seed] = paired_quality(path, original) if path.exists() else None
        return scored[name, seed]

    for r in rows:
        against = [BASELINE] + ([DEFAULT] if r["fields"]["distill"] == 1.0 else [])
        for other in (name for name in against if name != r["setting"]):
            mine, theirs = scores(r["setting"], r["seed"]), scores(other, r["seed"])
            if mine is not None and theirs is not None:
                versus = mine.versus(theirs, RESAMPLES)
                lines.append(f"- seed {r['seed']}, {r['setting']} vs {other} (paired): {said(versus)}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000, help="samples per model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", nargs="*", default=None, help="run only these settings (names as in the table)")
    parser.add_argument("--extra", default=None, help='one more setting as JSON, e.g. \'{"lr": 5e-4, "distill": 1}\'')
    parser.add_argument("--work", default="runs/recovery_digits")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 lets two benchmarks share 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = dict(SETTINGS)
    if args.extra:
        extra = json.loads(args.extra)
        settings[", ".join(f"{k} {v}" for k, v in extra.items())] = extra
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = RowCache(work / "rows.json")  # keyed by the setting's fields, seed, --num and the code version
    teacher = load("builtin:digits-ddpm")
    images = load_images("digits:train", 16, 1)
    reference_stats = feature_stats(digit_features(load_images("digits:all", 16, 1)))
    wanted = args.settings if args.settings is not None else list(settings)
    if args.extra:
        wanted = [*wanted, list(settings)[-1]]

    def key(seed: int, name: str) -> dict:
        return {"setting": name, "fields": OLD | settings[name], "seed": seed, "num": args.num}

    todo = [(seed, name) for seed in args.seeds for name in wanted if cache.get(key(seed, name)) is None]
    original = original_samples(work, teacher, args.num, cache.version)  # what SSIM and the paired verdicts use
    base = baseline(work, args.num, teacher, reference_stats, original)
    for seed, name in todo:
        fields = key(seed, name)["fields"]
        model = pruned_model(work, seed, images)
        start = time.perf_counter()
        finetune(model, images, FinetuneConfig(seed=seed, **fields), teacher=teacher)
        row = {"setting": name, "seed": seed, "num": args.num, "fields": fields}
        row["finetune_s"] = time.perf_counter() - start
        folder = setting_dir(work, name, seed)
        save(model, folder, overwrite=True)
        produced = samples_of(model, args.num)
        save_file({"images": produced.contiguous()}, folder / SAMPLES)  # for the paired verdicts of the reading
        row |= quality(produced, reference_stats, original)
        row = cache.put(key(seed, name), row)
        write_table(cache.matching(num=args.num), base, args, False, None)  # verdicts: at the end only
        print(json.dumps(row), flush=True)
    write_table(cache.matching(num=args.num), base, args, True, original)


if __name__ == "__main__":
    main()
