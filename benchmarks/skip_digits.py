"""Timestep-wise block skipping on builtin:digits-ddpm: DiP-GO vs DeepCache vs fewer DDIM steps at equal MACs.

Regenerates benchmarks/results/skip_digits.md and benchmarks/results/skip_digits.png from the committed DiP-GO plans
(benchmarks/plans/skip_digits/, trained on this CPU by the first command; a missing plan fails, never retrains):

    .venv/bin/python benchmarks/skip_digits.py --train-plans benchmarks/plans/skip_digits --no-checkpoint
    .venv/bin/python benchmarks/skip_digits.py --plans benchmarks/plans/skip_digits --no-checkpoint --num 500

DDIM, 50 steps. For each kept-MACs target: a DiP-GO plan (SSIM loss, `iterations` SGD steps on `calib` calibration
noises, `batch` per step, seed 0); the DeepCache plan (interval 2-12 x every skip branch, uniform and the paper's
non-uniform schedule) whose kept MACs lie within 2.5 points of the MACs the DiP-GO plan reached, with the best SSIM on
32 selection images (seeds apart from the evaluation's); plain DDIM with as many steps as fit in those MACs
(round(50 x reached)). Kept MACs are measured on the model for every row (the plan's own share is checked against
it). Quality: FD and KD (KID's unbiased estimator; digits features, not FID / KID) of `num` samples vs all 1,797
digits, and SSIM vs the full model's samples from the same noise, each with its 95% interval; each row's verdict
against DiP-GO's row is paired on identical noise. Speed: wall-clock of sampling one batch of 64, all rows of a target
and the full model interleaved in one run (median of 5 rounds), as a ratio to the full model. Then the composition:
the Diff-Pruning model of benchmarks/diffpruning_digits.py (ratio 0.25, 1,000 fine-tuning steps; built if missing,
named by its weights and history hashes) with a DiP-GO plan of its own. Finished targets are cached in
runs/skip_digits_rows.json under their settings, plan and the code's version.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from runinfo import RowCache, commit, model_id

from slimfusion.errors import ConfigError
from slimfusion.metrics.consistency import ssim
from slimfusion.metrics.cost import count_macs
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.metrics.intervals import DEFAULT_RESAMPLES
from slimfusion.models.io import load
from slimfusion.quality import Quality, References, quality_of
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, SkipPlan, apply_plan, check_plan, load_plan, save_plan, skip_plan
from slimfusion.skip.plan import measured_macs_ratio

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "skip_digits.md"
PICTURE = ROOT / "benchmarks" / "results" / "skip_digits.png"
STEPS = 50
TARGETS = (0.5, 0.35, 0.25, 0.2)
COMPOSE_TARGET = 0.5
EVAL_SEED, SELECT_SEED = 1000, 2000
REFERENCES = References("digits:all")


def images_of(model, plan, num: int, seed: int, steps: int = STEPS) -> torch.Tensor:
    config = SampleConfig(num=num, steps=steps, seed=seed, batch_size=250)
    if plan is None:
        return sample(model, config, progress=False)
    with apply_plan(model, plan):
        return sample(model, config, progress=False)


def best_deepcache(model, target: float, reference: torch.Tensor) -> tuple[object, dict]:
    """The DeepCache plan within 2.5 points of `target` (the MACs DiP-GO's plan reached) with the best SSIM on the
    selection images."""
    from slimfusion.skip.deepcache import deepcache_reuse
    from slimfusion.skip.graph import kept_macs_ratio, skip_units, unit_macs

    macs, total = unit_macs(model, skip_units(model, fine=True))  # once: the candidates only differ in their lists
    candidates = []
    for interval in range(2, 13):
        for branch in range(3 * len(model.down_blocks)):
            for uniform in (True, False):
                try:
                    reuse = deepcache_reuse(model, STEPS, interval, branch, uniform)
                except ConfigError:  # no non-uniform schedule with that many full steps
                    continue
                candidates.append((abs(kept_macs_ratio(reuse, macs, total) - target), interval, branch, uniform))
    near = [c for c in candidates if c[0] <= 0.025] or [min(candidates)]
    scored = []
    for _, interval, branch, uniform in near:
        config = SkipConfig(method="deepcache", steps=STEPS, interval=interval, branch=branch, uniform=uniform)
        plan = skip_plan(model, config)
        scored.append((ssim(images_of(model, plan, len(reference), SELECT_SEED), reference), plan, config))
    _, plan, config = max(scored, key=lambda s: s[0])
    return plan, {
        "interval": config.interval,
        "branch": config.branch,
        "uniform": config.uniform,
        "candidates": len(near),
    }


def timings(model, rows: dict[str, tuple[object, int]], rounds: int = 5) -> dict[str, float]:
    """Median seconds to sample 64 images, every row measured in alternation (same run, same noise)."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, (plan, steps) in rows.items():
            start = time.perf_counter()
            images_of(model, plan, 64, EVAL_SEED, steps)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def dipgo_plan(model, target: float, args, name: str) -> tuple[SkipPlan, float]:
    """DiP-GO's plan for `target`: read from `--plans` when it holds one (made by `--train-plans`), else trained here.
    Returns (plan, seconds it took to train, as recorded)."""
    if args.plans:  # a missing plan fails: retraining it here (on another device) would silently change the table
        if not (Path(args.plans) / f"{name}.json").exists():
            raise SystemExit(f"{args.plans}/{name}.json is missing: make it with --train-plans {args.plans}")
        plan = load_plan(Path(args.plans) / f"{name}.json")
        check_plan(plan, model, "DDIMScheduler", STEPS)
        wanted = {"iterations": args.iterations, "target": target, "lr": args.lr, "batch_size": args.batch}
        wanted["calib"] = args.calib
        if any(plan.settings[k] != v for k, v in wanted.items()):
            raise SystemExit(f"{args.plans}/{name}.json was trained with other settings than this command's")
        return plan, plan.settings["plan_s"]
    config = SkipConfig(
        steps=STEPS,
        target=target,
        iterations=args.iterations,
        calib=args.calib,
        batch_size=args.batch,
        lr=args.lr,
        checkpoint=args.checkpoint,
    )
    start = time.perf_counter()
    plan = skip_plan(model.to(args.device), config, progress=args.progress)
    model.to("cpu")
    plan.settings |= {
        "plan_s": round(time.perf_counter() - start, 1),
        "device": str(args.device),
        "torch": torch.__version__,
        "commit": commit(),
    }
    return plan, plan.settings["plan_s"]


def train_plans(args) -> None:
    """Only the DiP-GO plans (the slow part), saved into `--train-plans` for a later `--plans` run."""
    folder = Path(args.train_plans)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [("builtin:digits-ddpm", t, f"dipgo-{t}") for t in TARGETS]
    if args.compose:
        jobs.append((args.pruned, COMPOSE_TARGET, f"pruned-dipgo-{COMPOSE_TARGET}"))
    for source, target, name in jobs:
        if args.only and name not in args.only:
            continue
        if source == args.pruned and not Path(source).exists():
            build_pruned(Path(source))
        plan, seconds = dipgo_plan(load(source), target, args, name)
        save_plan(plan, folder / f"{name}.json")
        print(f"{name}: kept {plan.macs_ratio:.3f} in {seconds:.0f}s", flush=True)


def quality(images: torch.Tensor, full: torch.Tensor | None) -> Quality:
    """FD and KD vs all 1,797 digits, SSIM vs the full model's samples from the same noise, as index statistics."""
    wanted = ["fd", "kd"] + (["ssim"] if full is not None else [])
    return quality_of(images, {"indices": list(range(len(images)))}, wanted, REFERENCES, base=full)


def with_intervals(row: dict, measured: Quality, resamples: int) -> dict:
    return row | {"metrics": measured.values(), "intervals": measured.intervals(resamples)}


def versus(mine: Quality, dipgo: Quality, resamples: int) -> dict[str, str]:
    """This row against DiP-GO's, paired (same noise): better / worse / tie per metric."""
    return {name: v["verdict"] for name, v in mine.versus(dipgo, resamples).items()}


def measure(model, args, full, cache: RowCache) -> list[dict]:
    select_ref = images_of(model, None, 32, SELECT_SEED)
    rows = []
    for target in TARGETS:
        dipgo, dipgo_s = dipgo_plan(model, target, args, f"dipgo-{target}")
        reached = measured_macs_ratio(dipgo, model)
        settings = {"target": target, "num": args.num, "plan": dipgo.model_dump_json(exclude={"settings"})}
        cached = cache.get(settings)
        if cached is not None:
            rows += [r | {"commit": cached["commit"]} for r in cached["rows"]]
            continue
        deepcache, chosen = best_deepcache(model, reached, select_ref)
        fewer = max(1, round(STEPS * reached))  # as many DDIM steps as fit in the MACs DiP-GO reached
        entries = {"DiP-GO": (dipgo, STEPS), "DeepCache": (deepcache, STEPS), f"DDIM {fewer} steps": (None, fewer)}
        speed = timings(model, {"full": (None, STEPS), **entries})
        measured = {name: quality(images_of(model, plan, args.num, EVAL_SEED, steps), full)
                    for name, (plan, steps) in entries.items()}  # fmt: skip
        mine = []
        for name, (plan, steps) in entries.items():
            detail = {}
            if name == "DiP-GO":
                detail = {"plan_s": dipgo_s, "device": dipgo.settings["device"], "last": dipgo.settings["log"][-1]}
            elif name == "DeepCache":
                detail = chosen
            row = {
                "target": target,
                "method": name,
                "macs_ratio": measured_macs_ratio(plan, model) if plan is not None else steps / STEPS,
                "speedup": speed["full"] / speed[name],
                "vs_dipgo": None if name == "DiP-GO" else versus(measured[name], measured["DiP-GO"], args.resamples),
                "detail": detail,
            }
            mine.append(with_intervals(row, measured[name], args.resamples))
            print(json.dumps(mine[-1]), flush=True)
        entry = cache.put(settings, {"rows": mine})
        rows += [r | {"commit": entry["commit"]} for r in mine]
    return rows


def picture(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method in ("DiP-GO", "DeepCache", "DDIM"):
        mine = [r for r in rows if r["method"].startswith(method)]
        for ax, key in zip(axes, ("fd", "ssim"), strict=True):
            values = [r["metrics"][key] for r in mine]
            spans = [[v - r["intervals"][key][0] for v, r in zip(values, mine, strict=True)],
                     [r["intervals"][key][1] - v for v, r in zip(values, mine, strict=True)]]  # fmt: skip
            ax.errorbar([r["macs_ratio"] for r in mine], values, yerr=spans, fmt="o-", capsize=3, label=method)
    for ax, key in zip(axes, ("FD vs digits (lower is better)", "SSIM vs full model (higher is better)"), strict=True):
        ax.set_xlabel("kept share of the sampling MACs (measured)")
        ax.set_title(f"{key}; bars: 95% interval", fontsize=9)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(PICTURE, dpi=110)
    plt.close(fig)


def span(row: dict, key: str, scale: float = 1.0, digits: int = 3) -> str:
    low, high = (scale * v for v in row["intervals"][key])
    return f"{scale * row['metrics'][key]:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def write(rows: list[dict], composition: list[dict], args, floor: dict) -> None:
    settings = f"--iterations {args.iterations} --batch {args.batch} --calib {args.calib} --lr {args.lr}"
    settings += "" if args.checkpoint else " --no-checkpoint"
    script = ".venv/bin/python benchmarks/skip_digits.py"
    cmd = f"{script} --num {args.num} {settings}{'' if args.compose else ' --no-compose'}"
    if args.plans:
        device = rows[0]["detail"]["device"]
        cmd = f"{script} --train-plans {args.plans} --device {device} {settings}` then `{cmd} --plans {args.plans}"
    cmd += f" --resamples {args.resamples}"
    lines = [
        "# Timestep-wise block skipping on builtin:digits-ddpm (DDIM, 50 steps)",
        "",
        f"Command: `{cmd}`",
        "",
        next(p for p in __doc__.split("\n\n") if p.startswith("DDIM")).strip().replace("\n", " "),
        "",
        f"Full model: FD {span(floor['full'], 'fd')}, KD x1000 {span(floor['full'], 'kd', 1000)}. Noise floor: FD"
        f" between two independent {args.num}-sample sets of the full model **{floor['fd']:.3f}**; a second"
        f" {args.num}-sample set of the full model against the first: FD {floor['verdicts']['fd']}, KD"
        f" {floor['verdicts']['kd']} (the verdict rule below, unpaired).",
        "",
        "Brackets: 95% intervals (bootstrap over the samples, reference held fixed). `vs DiP-GO`: the row's"
        " difference to the DiP-GO row of its target, paired on identical noise; better / worse only when its 95%"
        " interval excludes zero, else tie.",
        "",
        "| target | method | kept MACs (measured) | wall-clock speedup | FD | KD x1000 | SSIM vs full |"
        " vs DiP-GO (FD / KD / SSIM) | commit | settings |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows + composition:
        detail = ", ".join(f"{k} {v}" for k, v in r["detail"].items()) if r["detail"] else ""
        versus = " / ".join(r["vs_dipgo"][k] for k in ("fd", "kd", "ssim")) if r.get("vs_dipgo") else "-"
        lines.append(
            f"| {r['target']} | {r['method']} | {r['macs_ratio']:.3f} | {r['speedup']:.2f}x | {span(r, 'fd')} |"
            f" {span(r, 'kd', 1000, 2)} | {span(r, 'ssim')} | {versus} | {r['commit']} | {detail} |"
        )
    lines += ["", "![FD and SSIM against kept MACs](skip_digits.png)", ""]
    RESULT.write_text("\n".join(lines) + "\n")


def build_pruned(folder: Path) -> None:
    """diffpruning_digits.py's best row: diff-pruning T=0.05 at ratio 0.25, 1,000 steps with distillation W=0.5."""
    from slimfusion.data import load_images
    from slimfusion.models.io import save
    from slimfusion.prune import StructuralConfig, prune
    from slimfusion.train import FinetuneConfig, finetune

    images = load_images("digits", size=16, channels=1)
    teacher, model = load("builtin:digits-ddpm"), load("builtin:digits-ddpm")
    prune(model, StructuralConfig(method="diff-pruning", ratio=0.25, threshold=0.05, seed=0), data=images)
    finetune(model, images, FinetuneConfig(steps=1000, distill=0.5, seed=0), teacher=teacher)
    save(model, folder, overwrite=True)


def compose(args, full) -> list[dict]:
    """Diff-Pruning's model (if built) alone and with a DiP-GO plan: speedups against the full original."""
    folder = Path(args.pruned)
    if not folder.exists():
        build_pruned(folder)
    original, pruned = load("builtin:digits-ddpm"), load(folder)
    plan, _ = dipgo_plan(pruned, COMPOSE_TARGET, args, f"pruned-dipgo-{COMPOSE_TARGET}")
    times: dict[str, list[float]] = {"full": [], "pruned": [], "pruned+dipgo": []}
    for _ in range(5):
        for name, model, p in (("full", original, None), ("pruned", pruned, None), ("pruned+dipgo", pruned, plan)):
            start = time.perf_counter()
            images_of(model, p, 64, EVAL_SEED)
            times[name].append(time.perf_counter() - start)
    speed = {k: statistics.median(v) for k, v in times.items()}
    measured = {name: quality(images_of(pruned, p, args.num, EVAL_SEED), full) for name, p in
                (("pruned", None), ("pruned+dipgo", plan))}  # fmt: skip
    rows = []
    for name, p in (("pruned", None), ("pruned+dipgo", plan)):
        kept = measured_macs_ratio(p, pruned) if p is not None else 1.0
        row = {
            "target": "-",
            "method": f"Diff-Pruning 0.25{f' + DiP-GO {COMPOSE_TARGET}' if p is not None else ''}",
            "macs_ratio": kept * count_macs(pruned) / count_macs(original),
            "speedup": speed["full"] / speed[name],
            "vs_dipgo": None,
            "detail": {"model": model_id(pruned)},
            "commit": commit(),
        }
        rows.append(with_intervals(row, measured[name], args.resamples))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="evaluation samples per row")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples per interval")
    defaults = SkipConfig()
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="DiP-GO SGD iterations")
    parser.add_argument("--batch", type=int, default=defaults.batch_size, help="DiP-GO noises per iteration")
    parser.add_argument("--calib", type=int, default=defaults.calib, help="DiP-GO calibration noises")
    parser.add_argument("--device", default="cpu", help="where DiP-GO trains (cuda: minutes instead of hours)")
    parser.add_argument("--train-plans", help="only train the DiP-GO plans and save them into this folder")
    parser.add_argument("--only", nargs="*", help="with --train-plans: only these plans (e.g. dipgo-0.25)")
    parser.add_argument("--plans", help="read the DiP-GO plans from this folder (made by --train-plans)")
    parser.add_argument(
        "--checkpoint", action=argparse.BooleanOptionalAction, default=True, help="DiP-GO gradient checkpointing"
    )
    parser.add_argument("--progress", action="store_true", help="DiP-GO progress bars")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="DiP-GO learning rate")
    parser.add_argument("--compose", action=argparse.BooleanOptionalAction, default=True, help="the composition rows")
    parser.add_argument(
        "--pruned", default="runs/bench/diff-0.05-s0", help="diffpruning_digits.py's model folder (built if missing)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.train_plans:
        return train_plans(args)
    model = load("builtin:digits-ddpm")
    full = images_of(model, None, args.num, EVAL_SEED)
    second = images_of(model, None, args.num, EVAL_SEED + 1)
    first_q, second_q = quality(full, None), quality(second, None)
    floor = {
        "full": with_intervals({}, first_q, args.resamples),
        "fd": frechet_distance(*feature_stats(digit_features(full)), *feature_stats(digit_features(second))),
        "verdicts": {name: v["verdict"] for name, v in second_q.versus(first_q, args.resamples, paired=False).items()},
    }
    rows = measure(model, args, full, RowCache(ROOT / "runs" / "skip_digits_rows.json"))
    composition = compose(args, full) if args.compose else []
    picture(rows)
    write(rows, composition, args, floor)


if __name__ == "__main__":
    main()
