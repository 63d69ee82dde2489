"""The summary of a finished sweep: table, quality-vs-sparsity plots, collapse points, a checked recommendation."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from slimfusion.models.meta import history
from slimfusion.pipelines import load_pipeline
from slimfusion.plots import pyplot
from slimfusion.sparsify import sparsify
from slimfusion.sweep.points import SweepConfig, load_dense, measure, point_key, sample_point

METRICS = (
    ("accuracy", "prompt accuracy"),
    ("fd", "FD (digits features)"),
    ("ssim", "SSIM vs dense"),
    ("clip", "CLIP score"),
)


def quality_key(dense: dict) -> str:
    """The metric collapse and budget are judged on: prompt accuracy where it was measured, else SSIM vs dense."""
    return "accuracy" if dense["metrics"].get("accuracy") is not None else "ssim"


def _quality(point: dict, key: str) -> float:
    return point["metrics"][key]


def collapse_points(points: list[dict], dense: dict, config: SweepConfig) -> dict[str, float | None]:
    """ "component method" -> the first sparsity whose quality is more than `collapse_drop` below dense (or None)."""
    key = quality_key(dense)
    floor = _quality(dense, key) - config.collapse_drop
    out = {}
    for component in config.components:
        for method in config.methods:
            series = sorted(
                (p for p in points if (p["component"], p["method"]) == (component, method)), key=lambda p: p["target"]
            )
            out[f"{component} {method}"] = next((p["target"] for p in series if _quality(p, key) < floor), None)
    return out


def within_budget(points: list[dict], dense: dict, config: SweepConfig) -> dict[str, list[dict]]:
    """component -> its points (any method) whose quality stays within the budget, most sparse first."""
    key = quality_key(dense)
    floor = _quality(dense, key) - config.budget
    out = {}
    for component in config.components:
        ok = [p for p in points if p["component"] == component and _quality(p, key) >= floor]
        out[component] = sorted(ok, key=lambda p: (-p["target"], -_quality(p, key)))
    return out


def best_within(points: list[dict], dense: dict, config: SweepConfig) -> dict[str, dict]:
    """component -> its most sparse point (any method) whose quality stays within the budget."""
    return {c: ok[0] for c, ok in within_budget(points, dense, config).items() if ok}


def summarise(source: str, config: SweepConfig, out: Path, progress: bool = True) -> dict:
    """Read every point, check the recommended combination by sampling it, write sweep.md, plots, results.json."""
    folder = out / "points"
    dense = json.loads((folder / "dense.json").read_text())
    points = [json.loads((folder / f"{point_key(*p)}.json").read_text()) for p in config.points()]
    collapse = collapse_points(points, dense, config)
    best = best_within(points, dense, config)
    combined = _combination(source, config, out, within_budget(points, dense, config), dense, progress)
    plots = [
        plot_series(points, dense, config, key, label, out)
        for key, label in METRICS
        if dense["metrics"].get(key) is not None
    ]
    summary = {
        "dense": dense,
        "points": points,
        "collapse": collapse,
        "recommended": best,
        "combined": combined,
        "quality": quality_key(dense),
        "plots": [p.name for p in plots],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_results(out, config, dense, points, combined, plots)
    (out / "sweep.md").write_text(markdown(summary, config, source))
    return summary


MAX_CHECKS = 8  # combinations sampled at most while looking for one within the budget


def _combination(source: str, config: SweepConfig, out: Path, ok: dict[str, list[dict]], dense: dict, progress):
    """The most sparse combination of per-component points within budget that also stays within it together.

    Per-component results do not add up, so combinations are sampled, most zeroed parameters first, until one
    passes (at most MAX_CHECKS). Returns the passing one, or the last tried with `within_budget` False.
    """
    if sum(1 for v in ok.values() if v) < 2:
        return None
    sizes = _component_sizes(source, list(ok))
    combos = [dict(zip(ok, picks, strict=True)) for picks in itertools.product(*ok.values())]
    zeroed = lambda combo: sum(p["sparsity_of_params"] * sizes[c] for c, p in combo.items())  # noqa: E731
    combos.sort(key=zeroed, reverse=True)
    key, record = quality_key(dense), None
    for combo in combos[:MAX_CHECKS]:
        record = _combined(source, config, out, combo, progress)
        record["within_budget"] = record["metrics"][key] >= _quality(dense, key) - config.budget
        if record["within_budget"]:
            break
    return record


def _component_sizes(source: str, components: list[str]) -> dict[str, int]:
    pipe = load_pipeline(source)
    return {c: sum(p.numel() for p in getattr(pipe, c).parameters()) for c in components}


def _combined(source: str, config: SweepConfig, out: Path, combo: dict, progress: bool) -> dict:
    """Sample one combination of per-component points together (cached under points/combined-*.json)."""
    wanted = {c: [p["method"], p["target"]] for c, p in combo.items()}
    name = "-".join(f"{c}_{m}_{t:.3f}" for c, (m, t) in wanted.items())
    file = out / "points" / f"combined-{name}.json"
    if file.exists():
        return json.loads(file.read_text())
    pipe = load_pipeline(source)
    zeros = params = 0
    for component, (method, target) in wanted.items():
        sparsify(pipe, config.sparsity_config(component, method, target), progress=False)
        effect = history(getattr(pipe, component))[-1]["effect"]
        zeros += effect["zeroed"]
        params += sum(p.numel() for p in getattr(pipe, component).parameters())
    images = sample_point(pipe, config, progress)
    metrics, intervals = measure(images, load_dense(out), config)
    record = {"wanted": wanted, "sparsity_of_params": zeros / params, "metrics": metrics, "intervals": intervals}
    file.write_text(json.dumps(record, indent=2))
    return record


def plot_series(points: list[dict], dense: dict, config: SweepConfig, key: str, label: str, out: Path) -> Path:
    """One panel per component: `key` against sparsity, a line per method, the dense model as a dashed line."""
    plt = pyplot()

    fig, axes = plt.subplots(
        1, len(config.components), figsize=(4.6 * len(config.components), 3.6), dpi=120, squeeze=False
    )
    for ax, component in zip(axes[0], config.components, strict=True):
        for method in config.methods:
            series = sorted(
                (p for p in points if (p["component"], p["method"]) == (component, method)), key=lambda p: p["target"]
            )
            ax.plot([p["target"] for p in series], [p["metrics"][key] for p in series], marker="o", ms=3, label=method)
        if dense["metrics"].get(key) is not None:
            ax.axhline(dense["metrics"][key], ls="--", c="grey", lw=1, label="dense")
        ax.set_title(component)
        ax.set_xlabel("sparsity")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if key == "fd":
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out / f"sweep_{key}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _write_results(out: Path, config: SweepConfig, dense: dict, points: list[dict], combined, plots) -> None:
    """results.json in the form `slimfusion report` reads: a row per point, its sample grid, the plots."""

    def row(name, point, samples, original=False):
        metrics = {k: point["metrics"].get(k) for k, _ in METRICS} | {"sparsity": point.get("sparsity_of_params")}
        return {"name": name, "metrics": metrics, "samples": samples, "original": original}

    rows = [row("dense", dense, "points/dense", original=True)]
    rows += [
        row(
            f"{p['component']} {p['method']} {p['target']:.2f}",
            p,
            f"points/{point_key(p['component'], p['method'], p['target'])}",
        )
        for p in points
    ]
    if combined:
        name = " + ".join(f"{c} {m} {t:.2f}" for c, (m, t) in combined["wanted"].items())
        rows.append(row(f"recommended: {name}", combined, None))
    results = {
        "title": "Sparsity sweep",
        "quality_metric": f"{config.num} DDIM-{config.steps} samples per point (guidance {config.guidance:g}, "
        f"{len(config.prompts)} fixed prompts, fixed seeds); SSIM vs the dense model from identical noise and prompts; "
        "FD in digits-feature space (not FID); sparsity column: share of the component's parameters zeroed.",
        "rows": rows,
        "figures": [p.name for p in plots],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))


def _fmt(value, kind: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if kind == "accuracy" else f"{value:.3f}"


def markdown(summary: dict, config: SweepConfig, source: str) -> str:
    dense, key = summary["dense"], summary["quality"]
    clip = dense["metrics"].get("clip") is not None
    head = "| component | method | sparsity | of all params | prompt accuracy | FD | SSIM vs dense |"
    lines = [
        f"# Sparsity sweep of {source}",
        "",
        f"{config.num} samples per point, DDIM {config.steps}, guidance {config.guidance:g}, "
        f"{len(config.prompts)} prompts; collapse: {key} more than {config.collapse_drop:g} below dense; "
        f"budget: {config.budget:g}.",
        "",
        head + (" CLIP score |" if clip else ""),
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if clip else ""),
    ]
    for p in [dense, *summary["points"]]:
        m = p["metrics"]
        where = f"| {p['component']} | {p['method']} | {p['target']:.2f} |" if p["component"] else "| dense | - | 0 |"
        lines.append(
            f"{where} {p['sparsity_of_params']:.3f} | {_fmt(m['accuracy'], 'accuracy')} | {_fmt(m['fd'], 'fd')} |"
            f" {_fmt(m['ssim'], 'ssim')} |" + (f" {_fmt(m.get('clip'), 'clip')} |" if clip else "")
        )
    lines += ["", "## Collapse points", "", "| series | collapses at |", "|---|---:|"]
    lines += [
        f"| {s} | {'not within the sweep' if v is None else f'{v:.2f}'} |" for s, v in summary["collapse"].items()
    ]
    lines += ["", "## Recommendation", "", "Each component alone, its most sparse point within the budget:", ""]
    for component, p in summary["recommended"].items():
        lines.append(f"- {component}: {p['method']} at {p['target']:.2f} ({key} {_fmt(p['metrics'][key], key)})")
    if not summary["recommended"]:
        lines.append("- no point stays within the budget")
    combined = summary["combined"]
    if combined:
        m = combined["metrics"]
        picks = ", ".join(f"{c} {meth} {t:.2f}" for c, (meth, t) in combined["wanted"].items())
        verdict = "within" if combined["within_budget"] else "NOT within"
        lines += [
            "",
            f"Together, the most sparse combination that passed when sampled ({MAX_CHECKS} tried at most): {picks}:"
            f" {combined['sparsity_of_params']:.1%} of the components' parameters zeroed; prompt accuracy"
            f" {_fmt(m['accuracy'], 'accuracy')}, FD {_fmt(m['fd'], 'fd')}, SSIM {_fmt(m['ssim'], 'ssim')}"
            f" (measured, not assumed): {verdict} the budget.",
        ]
    lines += [""] + [f"![{name}]({name})" for name in summary["plots"]]
    return "\n".join(lines) + "\n"
