"""`slimfusion report RUN_DIR`: a Markdown page and a self-contained HTML page of one compression run.

A run folder holds `results.json`: {"title", "quality_metric", "rows": [{"name", "metrics", "intervals", "samples",
"original", "plan"}]}, where `metrics` uses the keys of `slimfusion evaluate` (fd, kd, fid, kid, ssim, psnr, params,
macs, latency_ms, images_per_s, plan_macs_ratio) and `intervals` (optional) their 95% intervals [low, high], shown
in the tables and as error bars; `samples` is a samples folder and `plan` (optional) the skip plan the row sampled with
(paths relative to the run folder or absolute); its steps x blocks picture is shown; optional "figures" lists more
plots (file names in the run folder) to show. `slimfusion demo` and `slimfusion sweep` write one.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from slimfusion.errors import ConfigError, CorruptFileError
from slimfusion.plots import pyplot
from slimfusion.skip import load_plan
from slimfusion.skip.picture import plan_picture

RESULTS_FILE = "results.json"
PLOT_FILE = "quality_vs_macs.png"
COLUMNS = [  # (metric key, header, format)
    ("params", "params", lambda v: f"{v / 1e6:.3f} M"),
    ("macs", "MACs", lambda v: f"{v / 1e6:.1f} M"),
    ("latency_ms", "latency b=1", lambda v: f"{v:.1f} ms"),
    ("images_per_s", "images/s", lambda v: f"{v:.1f}"),
    ("fd", "FD (digits features)", lambda v: f"{v:.3f}"),
    ("kd", "KD (digits features)", lambda v: f"{v:.4f}"),
    ("fid", "FID", lambda v: f"{v:.2f}"),
    ("kid", "KID", lambda v: f"{v:.4f}"),
    ("accuracy", "prompt accuracy", lambda v: f"{v:.1%}"),
    ("ssim", "SSIM vs original", lambda v: f"{v:.3f}"),
    ("psnr", "PSNR vs original", lambda v: f"{v:.1f} dB"),
    ("plan_macs_ratio", "skip plan: kept MACs", lambda v: f"{v:.1%}"),
    ("clip", "CLIP score", lambda v: f"{v:.2f}"),
    ("sparsity", "sparsity", lambda v: f"{v:.1%}"),
]


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """The run's `results.json`, checked for the fields the report needs."""
    folder = Path(run_dir)
    file = folder / RESULTS_FILE
    if not file.exists():
        raise ConfigError(f"{folder} is not a run folder: no {RESULTS_FILE} (made by `slimfusion demo`)")
    try:
        results = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{file}: not valid JSON (line {exc.lineno})") from exc
    rows = results.get("rows") if isinstance(results, dict) else None
    if not rows or not all(isinstance(r, dict) and "name" in r and "metrics" in r for r in rows):
        raise CorruptFileError(f"{file}: needs a non-empty 'rows' list of {{name, metrics}}")
    return results


def _columns(rows: list[dict]) -> list[tuple]:
    return [c for c in COLUMNS if any(r["metrics"].get(c[0]) is not None for r in rows)]


def cell(row: dict, key: str, fmt, original: dict | None) -> str:
    """A metric as a table shows it: the value, its 95% interval when the row has one, MACs as a share too."""
    value = row["metrics"].get(key)
    if value is None:
        return "-"
    text = fmt(value)
    base = original["metrics"].get(key) if original else None
    if key == "macs" and base and row is not original:
        text += f" ({100 * value / base:.0f}%)"
    span = (row.get("intervals") or {}).get(key)
    if span is not None and key not in ("latency_ms",):
        text += f" [{fmt(span[0])}, {fmt(span[1])}]"
    return text


def _samples_dir(run_dir: Path, row: dict) -> Path | None:
    if not row.get("samples"):
        return None
    path = Path(row["samples"])
    path = path if path.is_absolute() else run_dir / path
    return path if (path / "grid.png").exists() else None


def _plan_picture(run_dir: Path, row: dict) -> Path | None:
    """The picture of the row's skip plan (drawn next to the plan file when it is not there yet)."""
    if not row.get("plan"):
        return None
    plan = Path(row["plan"])
    plan = plan if plan.is_absolute() else run_dir / plan
    picture = plan.with_suffix(".png")
    if not picture.exists():
        plan_picture(load_plan(plan), picture)
    return picture


def plot_quality_vs_macs(results: dict, out: Path) -> Path | None:
    """Scatter of the quality metric against MACs, one labelled point per row (None when a field is missing)."""
    plt = pyplot()

    key = "fid" if any("fid" in r["metrics"] for r in results["rows"]) else "fd"
    rows = [r for r in results["rows"] if r["metrics"].get("macs") is not None and r["metrics"].get(key) is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for i, row in enumerate(rows):  # staggered labels: pruned rows often share one size
        macs, quality = row["metrics"]["macs"] / 1e6, row["metrics"][key]
        span = (row.get("intervals") or {}).get(key)
        error = None if span is None else [[max(0.0, quality - span[0])], [max(0.0, span[1] - quality)]]
        ax.errorbar(macs, quality, yerr=error, fmt="o", capsize=3, markersize=6)
        ax.annotate(row["name"], (macs, quality), textcoords="offset points", xytext=(5, 4 - 11 * i), fontsize=8)
    ax.set_xlabel("MACs per forward (M)")
    ax.set_ylabel(("FID" if key == "fid" else "FD (digits features)") + ", lower is better; bars: 95% interval")
    ax.set_title("quality vs compute")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` (images embedded) into the run folder; returns both paths."""
    folder = Path(run_dir)
    results = load_results(folder)
    rows = results["rows"]
    original = next((r for r in rows if r.get("original")), None)
    columns = _columns(rows)
    plot = plot_quality_vs_macs(results, folder / PLOT_FILE)
    title = results.get("title", "slimfusion run")
    metric_note = results.get("quality_metric", "")

    md = [f"# {title}", ""]
    if metric_note:
        md += [metric_note, ""]
    md += ["| model | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in rows:
        md.append(f"| {r['name']} | " + " | ".join(cell(r, k, f, original) for k, _, f in columns) + " |")
    md.append("")
    for note in results.get("notes", []):
        md += [note, ""]
    if plot:
        md += [f"![quality vs MACs]({PLOT_FILE})", ""]
    figures = [folder / name for name in results.get("figures", []) if (folder / name).exists()]
    md += [f"![{f.stem}]({f.name})\n" for f in figures]
    md += ["## Samples (same noise for every model)", ""]
    for r in rows:
        grid = _samples_dir(folder, r)
        if grid:
            md += [f"**{r['name']}**", "", f"![{r['name']}]({os.path.relpath(grid / 'grid.png', folder)})", ""]
    plans = [(r["name"], p) for r in rows if (p := _plan_picture(folder, r))]
    if plans:
        md += ["## Skip plans (steps x blocks: computed or reused)", ""]
        md += [f"**{name}**\n\n![plan of {name}]({os.path.relpath(p, folder)})\n" for name, p in plans]
    md_path = folder / "report.md"
    md_path.write_text("\n".join(md))

    html_path = folder / "report.html"
    notes = results.get("notes", [])
    page = _html(title, metric_note, rows, columns, original, plot, folder, notes, plans, figures)
    html_path.write_text(page)
    return md_path, html_path


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html(title, metric_note, rows, columns, original, plot, folder, notes, plans, figures) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c[1])}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{esc(r['name'])}</td>"
        + "".join(f"<td>{esc(cell(r, k, f, original))}</td>" for k, _, f in columns)
        + "</tr>"
        for r in rows
    )
    grids = "".join(
        f"<figure>{_img(g / 'grid.png', r['name'])}<figcaption>{esc(r['name'])}</figcaption></figure>"
        for r in rows
        if (g := _samples_dir(folder, r))
    )
    note_html = "".join(f"<p>{esc(n)}</p>" for n in notes)
    plan_html = "".join(
        f"<figure class='plan'>{_img(p, f'plan of {n}')}<figcaption>{esc(n)}</figcaption></figure>" for n, p in plans
    )
    plan_html = f"<h2>Skip plans (steps x blocks: computed or reused)</h2><div>{plan_html}</div>" if plans else ""
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:8px;text-align:center}"
        "figure img{image-rendering:pixelated;width:260px}.plot img,.plan img{max-width:100%;width:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
        f"</head><body><h1>{esc(title)}</h1><p>{esc(metric_note)}</p><table><tr><th>model</th>{head}</tr>{body}"
        f"</table>{note_html}"
        + (f"<div class='plot'>{_img(plot, 'quality vs MACs')}</div>" if plot else "")
        + "".join(f"<div class='plot'>{_img(f, f.stem)}</div>" for f in figures)
        + f"<h2>Samples (same noise for every model)</h2><div>{grids}</div>{plan_html}</body></html>"
    )
