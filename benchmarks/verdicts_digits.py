"""The claims that were ties, rerun so that intervals decide them: paired verdicts on builtin:digits-ddpm.

Regenerates benchmarks/results/verdicts_digits.md:

    .venv/bin/python benchmarks/verdicts_digits.py --steps 1000 --num 2000 --seeds 0 1

Each claim sets two ways of making a model against each other, A against B, at equal MACs where the claim is about
a method (B's width pruning takes the ratio whose MACs come closest to A's). Per seed both models are made with that
seed (pruning and fine-tuning: `--steps` steps, batch 64, lr 2e-4, output distillation from the original at the
claim's W) and sampled on identical noise (`--num` DDIM-50 samples). Each metric's difference A - B gets a 95% paired
bootstrap interval over the samples (one index draw for both sets; `slimfusion compare`'s rule) and a verdict: better,
worse, or tie when the interval covers zero. The bootstrap covers the sampling noise of two trained models; the seeds
cover the training's, so a claim's verdict is better / worse only when every seed says so, and tie otherwise.
Metrics: FD and KD (digits features, not FID / KID) against all 1,797 digits, SSIM against the original's samples from
the same noise. Built models, their samples and finished rows are cached under `--work`, keyed by the settings and
the code version; every row names its commit.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
from pathlib import Path

import torch
from depth_vs_width_digits import width_ratio
from runinfo import RowCache
from safetensors.torch import load_file, save_file

from slimfusion.data import load_images
from slimfusion.metrics.cost import count_macs
from slimfusion.models.io import load, save
from slimfusion.prune import DepthConfig, StructuralConfig, prune
from slimfusion.quality import Quality, References, quality_of
from slimfusion.sample import SampleConfig, sample
from slimfusion.train import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "verdicts_digits.md"
METRICS = ("fd", "kd", "ssim")
SAMPLE_SEED = 1000
DIFF_PRUNING = {"width": {"method": "diff-pruning", "threshold": 0.05, "ratio": 0.25}}
DEPTH_LIMIT = {"depth": {"method": "greedy", "target_macs": 0.6}}  # below what whole layers reach: all they can
# A recipe: optional "depth" (DepthConfig fields), optional "width" (StructuralConfig fields; "at": an overall MACs
# share, or "partner": the MACs the claim's model A reached), then fine-tuning with output distillation weight "W".
CLAIMS = {
    "Diff-Pruning (T = 0.05) vs magnitude, ~56% MACs": (
        DIFF_PRUNING | {"W": 1.0},
        {"width": {"method": "magnitude", "ratio": 0.25}, "W": 1.0},
    ),
    "fine-tuning W = 1 vs W = 0.5 (Diff-Pruning, ~56% MACs)": (DIFF_PRUNING | {"W": 1.0}, DIFF_PRUNING | {"W": 0.5}),
    "depth at its limit vs width at its MACs (~65%)": (
        DEPTH_LIMIT | {"W": 1.0},
        {"width": {"method": "diff-pruning", "threshold": 0.05, "at": "partner"}, "W": 1.0},
    ),
    "depth limit + width vs width alone, ~35% MACs": (
        DEPTH_LIMIT | {"width": {"method": "diff-pruning", "threshold": 0.05, "at": 0.3}, "W": 1.0},
        {"width": {"method": "diff-pruning", "threshold": 0.05, "at": "partner"}, "W": 1.0},
    ),
}


def closest_ratio(model, target_macs: float) -> float:
    """depth_vs_width's search on a 0.02 grid, refined on a 0.005 grid around its pick (MACs move in ~3% jumps at
    0.02, too coarse for an equal-MACs comparison)."""
    coarse = width_ratio(model, target_macs)
    fine = [round(coarse + 0.005 * i, 3) for i in range(-4, 5)]
    return width_ratio(model, target_macs, [r for r in fine if r > 0])


class Maker:
    """Makes (or loads from `work`) the model of a recipe at a seed, with its DDIM-50 samples on the fixed noise."""

    def __init__(self, work: Path, steps: int, num: int, version: str):
        self.work, self.steps, self.num, self.version = work, steps, num, version
        self.teacher = load("builtin:digits-ddpm")
        self.images = load_images("digits:train", 16, 1)
        self.base_macs = count_macs(self.teacher)

    def samples(self, model) -> torch.Tensor:
        return sample(model, SampleConfig(num=self.num, steps=50, seed=SAMPLE_SEED, batch_size=250), progress=False)

    def original(self) -> torch.Tensor:
        return self._cached({"original": True}, lambda: copy.deepcopy(self.teacher), train=False)[1]

    def make(self, recipe: dict, seed: int, partner_macs: int | None) -> tuple[int, torch.Tensor]:
        return self._cached(
            {"recipe": recipe, "seed": seed, "partner_macs": partner_macs},
            lambda: self._pruned(recipe, seed, partner_macs),
            train=True,
            recipe=recipe,
            seed=seed,
        )

    def _pruned(self, recipe: dict, seed: int, partner_macs: int | None):
        model = load("builtin:digits-ddpm")
        if "depth" in recipe:
            prune(model, DepthConfig(seed=seed, **recipe["depth"]), data=self.images, progress=False)
        if "width" in recipe:
            fields = dict(recipe["width"])
            at = fields.pop("at", None)
            if at is not None:  # the ratio whose MACs come closest to the target, from the model as pruned so far
                target = partner_macs if at == "partner" else at * self.base_macs
                fields["ratio"] = closest_ratio(model, target)
            prune(model, StructuralConfig(seed=seed, **fields), data=self.images, progress=False)
        return model

    def _cached(self, key: dict, build, train: bool, recipe: dict | None = None, seed: int = 0):
        key = key | {"steps": self.steps, "num": self.num, "code": self.version}
        folder = self.work / "models" / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        if (folder / "samples.safetensors").exists():
            return json.loads((folder / "macs.json").read_text()), load_file(folder / "samples.safetensors")["images"]
        model = build()
        if train:
            config = FinetuneConfig(steps=self.steps, distill=recipe["W"], seed=seed)
            finetune(model, self.images, config, teacher=self.teacher, progress=False)
        images = self.samples(model)
        save(model, folder / "model", overwrite=True)
        (folder / "macs.json").write_text(json.dumps(count_macs(model)))
        (folder / "key.json").write_text(json.dumps(key, indent=1))
        save_file({"images": images.contiguous()}, folder / "samples.safetensors")
        return count_macs(model), images


def measured(images: torch.Tensor, original: torch.Tensor) -> Quality:
    return quality_of(images, {"indices": list(range(len(images)))}, list(METRICS), REFERENCES, base=original)


REFERENCES = References("digits:all")


def run_claim(maker: Maker, name: str, seed: int, original: torch.Tensor, resamples: int) -> dict:
    recipe_a, recipe_b = CLAIMS[name]
    macs_a, images_a = maker.make(recipe_a, seed, None)
    macs_b, images_b = maker.make(recipe_b, seed, macs_a)
    quality_a, quality_b = measured(images_a, original), measured(images_b, original)
    return {
        "claim": name,
        "seed": seed,
        "macs": [macs_a / maker.base_macs, macs_b / maker.base_macs],
        "a": quality_a.values(),
        "b": quality_b.values(),
        "versus": quality_a.versus(quality_b, resamples),
    }


def claim_verdict(rows: list[dict], metric: str) -> str:
    verdicts = {r["versus"][metric]["verdict"] for r in rows}
    return verdicts.pop() if len(verdicts) == 1 and "tie" not in verdicts else "tie"


def commands(rows: list[dict], args) -> str:
    """The invocations that made `rows`: one per set of claims run at a set of seeds."""
    names = list(CLAIMS)
    by_claims: dict[tuple[int, ...], list[int]] = {}
    for seed in sorted({r["seed"] for r in rows}):
        chosen = tuple(sorted(names.index(r["claim"]) + 1 for r in rows if r["seed"] == seed))
        by_claims.setdefault(chosen, []).append(seed)
    base = f".venv/bin/python benchmarks/verdicts_digits.py --steps {args.steps} --num {args.num}"
    return "`; `".join(
        f"{base} --seeds {' '.join(map(str, seeds))}"
        + ("" if len(chosen) == len(names) else f" --claims {' '.join(map(str, chosen))}")
        for chosen, seeds in by_claims.items()
    )


def write_table(rows: list[dict], args, done: bool) -> None:
    cmd = commands(rows, args)
    lines = [
        "# The tie claims, rerun with paired intervals (builtin:digits-ddpm)",
        "",
        f"Commands: `{cmd}`" + ("" if done else "  (PARTIAL: run still in progress or interrupted)"),
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
        "| claim: A vs B | seed | MACs A / B | FD A / B | FD A - B [95%] | KD x1000 A / B | KD A - B [95%] |"
        " SSIM A / B | SSIM A - B [95%] | commit |",
        "|---|---:|---:|---:|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        cells = []
        for metric, scale, digits in (("fd", 1, 3), ("kd", 1000, 2), ("ssim", 1, 3)):
            v = r["versus"][metric]
            low, high = (x * scale for x in v["interval"])
            cells.append(f"{r['a'][metric] * scale:.{digits}f} / {r['b'][metric] * scale:.{digits}f}")
            span = f"[{low:+.{digits}f}, {high:+.{digits}f}]"
            cells.append(f"{v['difference'] * scale:+.{digits}f} {span} {v['verdict']}")
        lines.append(
            f"| {r['claim']} | {r['seed']} | {r['macs'][0]:.1%} / {r['macs'][1]:.1%} | "
            + " | ".join(cells)
            + f" | {r['commit']} |"
        )
    lines += ["", "## Verdicts (A against B; better / worse only when every seed says so)", ""]
    for name in CLAIMS:
        mine = [r for r in rows if r["claim"] == name]
        if mine:
            said = ", ".join(f"{m.upper()} {claim_verdict(mine, m)}" for m in METRICS)
            lines.append(f"- {name}: {said} ({len(mine)} seed{'s' if len(mine) > 1 else ''}).")
    RESULT.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="fine-tuning steps per model")
    parser.add_argument("--num", type=int, default=2000, help="samples per model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per interval")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "verdicts_digits")
    parser.add_argument("--claims", type=int, nargs="+", default=None, help="run only these claims (1-based)")
    args = parser.parse_args()
    cache = RowCache(args.work / "rows.json")
    maker = Maker(args.work, args.steps, args.num, cache.version)
    original = maker.original()
    names = [name for i, name in enumerate(CLAIMS, 1) if args.claims is None or i in args.claims]
    for seed in args.seeds:  # seed-major: a run cut short still has every claim at the first seed
        for name in names:
            settings = settings_of(name, seed, args)
            row = cache.get(settings) or cache.put(settings, run_claim(maker, name, seed, original, args.resamples))
            write_table(finished(cache, args), args, done=False)
            print(json.dumps(row), flush=True)
    write_table(finished(cache, args), args, done=True)
    print(RESULT.read_text())


def settings_of(name: str, seed: int, args) -> dict:
    return {"claim": name, "recipes": CLAIMS[name], "seed": seed, "steps": args.steps, "num": args.num} | {
        "resamples": args.resamples
    }


def finished(cache: RowCache, args) -> list[dict]:
    """Every cached row of this code and these settings (earlier invocations' seeds and claims too), seed-major."""
    seeds = sorted({json.loads(key)["seed"] for key in cache.rows})
    found = [cache.get(settings_of(name, seed, args)) for seed in seeds for name in CLAIMS]
    return [row for row in found if row is not None]


if __name__ == "__main__":
    main()
