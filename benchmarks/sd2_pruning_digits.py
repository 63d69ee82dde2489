"""The study of *Efficient Pruning of Text-to-Image Models* (pruning SD2) in miniature, on builtin:digits-t2i.

Regenerates benchmarks/results/sd2_pruning_digits.md (+ the sweep's plots next to it):

    .venv/bin/python benchmarks/sd2_pruning_digits.py --num 200

Text encoder alone and UNet alone, each pruned after training by magnitude (per weight matrix, the paper's choice),
Wanda, SparseGPT and Wanda with OWL's layer sparsities, at sparsity 0.1 to 0.9, through `slimfusion.sweep`
(resumable: the points live in runs/sd2_sweep). Quality per point: prompt accuracy of `num` samples (DDIM 25,
guidance 2, the 30 prompts of docs/digits_t2i_recovery_prompts.txt, fixed seeds) by the digit classifier, FD
(digits features, not FID) vs all 1,797 digits, SSIM vs the dense model from identical noise and prompts.
Collapse: the first sparsity whose prompt accuracy is more than 10 points below the dense model's. The best
combination: of the per-component points within 2 points of the dense accuracy, the pair with the most zeroed
parameters that also stays within 2 points when sampled together (pairs tried in that order).
Then recovery, which the paper did not try: the magnitude-pruned UNet at the sparsities around its collapse,
fine-tuned data-free (output distillation from the dense pipeline on 1,024 latents it generated from the prompts,
`--recovery-steps` steps, lr 1e-3) with its zeros kept, measured again. (The text encoder is frozen in SD's recipe
and slimfusion's finetune trains denoisers, so recovery is the UNet's.)
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from runinfo import RowCache, stamp

from slimfusion.sweep import SweepConfig, keep_samples, load_dense, measure, point_key, sample_point, sweep
from slimfusion.sweep.summary import collapse_points

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "sd2_pruning_digits.md"
MODEL = "builtin:digits-t2i"
PROMPTS = ROOT / "docs" / "digits_t2i_recovery_prompts.txt"
METHODS = ["magnitude", "wanda", "sparsegpt", "wanda-owl"]
RECOVER = [0.3, 0.4, 0.5, 0.6]
METRICS = ["accuracy", "fd", "ssim"]


def recover(config: SweepConfig, sweep_dir: Path, out: Path, steps: int) -> list[dict]:
    """The magnitude-pruned UNet at each RECOVER sparsity, fine-tuned data-free with its zeros kept (cached)."""
    from slimfusion.pipelines import load_pipeline
    from slimfusion.sparsify import sparsify, sparsity_of
    from slimfusion.train import FinetuneConfig, finetune
    from slimfusion.train.conditional_data import distill_trainset

    cache = RowCache(out / "rows.json")  # keyed by the sparsity, the steps, the sweep's settings and the code version
    dense, data, rows = load_pipeline(MODEL), None, []
    for target in RECOVER:
        key = {"target": target, "steps": steps, "sweep": config.model_dump()}
        if cache.get(key) is None:
            data = data if data is not None else distill_trainset(dense, config.prompts, num=1024, progress=False)
            pipe = load_pipeline(MODEL)
            sparsify(pipe, config.sparsity_config("unet", "magnitude", target), progress=False)
            start = time.perf_counter()
            finetune(pipe.unet, data, FinetuneConfig(steps=steps, distill=1.0, lr=1e-3), teacher=dense.unet)
            record = {"target": target, "steps": steps, "wall_s": round(time.perf_counter() - start, 1)}
            record["sparsity_after"] = sparsity_of(pipe.unet)["sparsity"]
            images = sample_point(pipe, config, False)
            record["metrics"], record["intervals"] = measure(images, load_dense(sweep_dir), config)
            keep_samples(images, out / f"unet-magnitude-{target:.1f}-{steps}", config, MODEL)  # for the paired verdict
            cache.put(key, record)
        rows.append(cache.get(key) | {"folder": out / f"unet-magnitude-{target:.1f}-{steps}"})
    return rows


def verdicts(sweep_dir: Path, baseline: Path, subjects: list[Path]) -> list[dict[str, str]]:
    """`slimfusion compare` of samples folders from identical noise and prompts (the baseline scored once): per
    subject, metric -> "better" / "worse" / "tie" (the paired 95% bootstrap interval of the difference excludes zero,
    or not)."""
    from slimfusion.compare import compare
    from slimfusion.evaluate import EvaluateConfig

    dense = str(sweep_dir / "points" / "dense")
    result = compare([str(p) for p in [baseline, *subjects]], EvaluateConfig(metrics=METRICS), "digits:all", dense,
                     False)  # fmt: skip
    if not all(s["paired"] for s in result["subjects"][1:]):
        raise SystemExit(f"{subjects} and {baseline} are not from identical noise and prompts")
    return [{d["metric"]: d["verdict"] for d in result["differences"] if d["index"] == i}
            for i in range(1, len(subjects) + 1)]  # fmt: skip


def point_dir(sweep_dir: Path, component: str, method: str, sparsity: float) -> Path:
    return sweep_dir / "points" / point_key(component, method, sparsity)


def said(v: dict[str, str]) -> str:
    return " / ".join(v[m] for m in METRICS)


def _span(record: dict, metric: str, show) -> str:
    low, high = record.get("intervals", {}).get(metric, (None, None))
    return "" if low is None else f" [{show(low)}, {show(high)}]"


def _pct(v):
    return "-" if v is None else f"{v:.1%}"


def _num(v):
    return "-" if v is None else f"{v:.3f}"


def write(summary: dict, config: SweepConfig, recovered: list[dict], args, sweep_dir: Path, wall_s: float) -> None:
    dense = summary["dense"]["metrics"]
    points = summary["points"]
    lines = [
        "# Pruning a text-to-image model after training (the SD2 study in miniature, builtin:digits-t2i)",
        "",
        f"Command: `.venv/bin/python benchmarks/sd2_pruning_digits.py --num {args.num}"
        f" --recovery-steps {args.recovery_steps}` ({stamp()}; points cached under runs/; this invocation"
        f" {wall_s / 60:.0f} min; recovered rows name their commit)",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
        f"Dense model: prompt accuracy {_pct(dense['accuracy'])}{_span(summary['dense'], 'accuracy', _pct)},"
        f" FD {_num(dense['fd'])}{_span(summary['dense'], 'fd', _num)} (95% bootstrap intervals over the samples).",
        "",
    ]
    for component in config.components:
        lines += [f"## {component} alone", ""]
        head = "| sparsity | " + " | ".join(f"{m}: accuracy / FD / SSIM" for m in config.methods) + " |"
        lines += [head, "|---:|" + "---|" * len(config.methods)]
        for s in config.sparsities:
            cells = []
            for m in config.methods:
                p = next(p for p in points if (p["component"], p["method"], p["target"]) == (component, m, s))
                q = p["metrics"]
                cells.append(f"{_pct(q['accuracy'])} / {_num(q['fd'])} / {_num(q['ssim'])}")
            lines.append(f"| {s:.1f} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Against magnitude at the same sparsity (paired on identical noise and prompts; accuracy / FD / SSIM:"
            " better / worse only when the 95% interval of the difference excludes zero, else tie):",
            "",
            "| sparsity | " + " | ".join(f"{m} vs magnitude" for m in config.methods if m != "magnitude") + " |",
            "|---:|" + "---|" * (len(config.methods) - 1),
        ]
        for s in config.sparsities:
            others = [point_dir(sweep_dir, component, m, s) for m in config.methods if m != "magnitude"]
            cells = [said(v) for v in verdicts(sweep_dir, point_dir(sweep_dir, component, "magnitude", s), others)]
            lines.append(f"| {s:.1f} | " + " | ".join(cells) + " |")
        share = next(p for p in points if p["component"] == component)
        lines += [
            "",
            f"(sparsity: of the {component}'s Linear and Conv weights; its share of all the component's"
            f" parameters is {share['sparsity_of_params'] / share['sparsity']:.0%} of that)",
            "",
        ]
    lines += [
        "## Collapse points (accuracy more than 10 points below dense)",
        "",
        "| series | collapses at |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {'beyond 0.9' if v is None else f'{v:.1f}'} |" for k, v in summary["collapse"].items()]
    lines += [
        "",
        "## Best combination (within 2 points of the dense prompt accuracy)",
        "",
        "Each component alone, its most sparse point within the budget:",
        "",
    ]
    for component, p in summary["recommended"].items():
        lines.append(f"- {component}: {p['method']} at {p['target']:.1f} (accuracy {_pct(p['metrics']['accuracy'])})")
    combined = summary["combined"]
    if combined:
        m = combined["metrics"]
        picks = " + ".join(f"{c} {meth} {t:.1f}" for c, (meth, t) in combined["wanted"].items())
        verdict = "within" if combined["within_budget"] else "NOT within"
        tried = len(list((sweep_dir / "points").glob("combined-*.json")))
        lines += [
            "",
            f"Sampled together ({tried} combination(s) tried, most zeroed parameters first): **{picks}**:"
            f" {combined['sparsity_of_params']:.1%} of the two components' parameters zeroed, prompt accuracy"
            f" {_pct(m['accuracy'])}, FD {_num(m['fd'])}, SSIM {_num(m['ssim'])} ({verdict} the budget).",
        ]
    lines += [
        "",
        f"## Recovery of the magnitude-pruned UNet ({args.recovery_steps} data-free steps, zeros kept)",
        "",
        "| sparsity | before: accuracy / FD / SSIM | after: accuracy / FD / SSIM | after vs before (paired) |"
        " sparsity after | wall | commit |",
        "|---:|---|---|---|---:|---:|---|",
    ]
    for r in recovered:
        before = next(
            p for p in points if (p["component"], p["method"], p["target"]) == ("unet", "magnitude", r["target"])
        )["metrics"]
        after = r["metrics"]
        lines.append(
            f"| {r['target']:.1f} | {_pct(before['accuracy'])} / {_num(before['fd'])} / {_num(before['ssim'])} | "
            f"{_pct(after['accuracy'])} / {_num(after['fd'])} / {_num(after['ssim'])} |"
            f" {said(verdicts(sweep_dir, point_dir(sweep_dir, 'unet', 'magnitude', r['target']), [r['folder']])[0])} |"
            f" {r['sparsity_after']:.3f} |"
            f" {r['wall_s']:.0f} s | {r['commit']} |"
        )
    floor = dense["accuracy"] - config.collapse_drop
    moved = next((r["target"] for r in recovered if r["metrics"]["accuracy"] < floor), None)
    lines += [
        "",
        f"Collapse point after recovery: {'beyond ' + str(RECOVER[-1]) if moved is None else moved}"
        f" (before: {summary['collapse']['unet magnitude']}).",
        "",
    ]
    for name in summary["plots"]:
        shutil.copy(sweep_dir / name, RESULT.parent / f"sd2_pruning_digits_{name.removeprefix('sweep_')}")
        lines.append(f"![{name}](sd2_pruning_digits_{name.removeprefix('sweep_')})")
    RESULT.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=200, help="samples per point")
    parser.add_argument("--recovery-steps", type=int, default=800)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    args = parser.parse_args()
    from slimfusion.data.prompts import read_prompts

    start = time.perf_counter()
    config = SweepConfig(
        components=["text_encoder", "unet"],
        methods=METHODS,
        sparsities=[round(0.1 * i, 1) for i in range(1, 10)],
        prompts=read_prompts(PROMPTS),
        num=args.num,
        ref="digits:all",
    )
    sweep_dir = args.runs / "sd2_sweep"
    summary = sweep(MODEL, config, sweep_dir)
    recovered = recover(config, sweep_dir, args.runs / "sd2_recovery", args.recovery_steps)
    summary["collapse"] = collapse_points(summary["points"], summary["dense"], config)
    write(summary, config, recovered, args, sweep_dir, time.perf_counter() - start)
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
