"""The tables `evaluate` and `compare` print: the library returns data, the CLI draws it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from slimfusion.evaluate import COUNTS, LABELS
from slimfusion.progress import console


def number(value) -> str:
    """A metric value as the tables print it."""
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}" if value is not None else "-"


def print_result(result: dict[str, Any]) -> None:
    """A rich table of one evaluation with each metric's 95% interval; skipped metrics are said, not hidden."""
    sampling = result.get("sampling") or {}
    how = f", {sampling['scheduler']} {sampling['steps']} steps" if sampling.get("scheduler") else ""
    own = " (its own sampler)" if sampling.get("own_sampler") else ""
    table = Table(title=f"{result['target']} ({result['num']} images{how}{own})", caption=result.get("interval_method"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    intervals = result.get("intervals", {})
    for key, value in result["metrics"].items():
        low_high = intervals.get(key)
        span = "exact count" if key in COUNTS else f"{number(low_high[0])} .. {number(low_high[1])}" if low_high else ""
        table.add_row(LABELS.get(key, key), number(value), span)
    Console().print(table)
    for name, reason in result["skipped"].items():
        console.print(f"[yellow]{name} not computed:[/yellow] {reason}", highlight=False, soft_wrap=True)


def print_comparison(result: dict[str, Any]) -> None:
    """One table per compared subject: metric, baseline, subject, difference with its interval, verdict."""
    base = result["subjects"][0]
    for index, subject in enumerate(result["subjects"][1:], start=1):
        pairing = "paired, identical noise" if subject["paired"] else "independent samples"
        table = Table(title=f"{subject['name']} vs {base['name']} ({pairing})", caption=result["interval_method"])
        for column in ("metric", "baseline", "subject", "difference (95% interval)", "verdict"):
            table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
        mine = {d["metric"]: d for d in result["differences"] if d["index"] == index}
        for metric, value in subject["metrics"].items():
            row = mine.get(metric)
            span = f"{row['difference']:+.4g} ({row['interval'][0]:+.4g} .. {row['interval'][1]:+.4g})" if row else ""
            style = {"better": "green", "worse": "red"}.get(row["verdict"] if row else "", "")
            verdict_text = f"[{style}]{row['verdict']}[/{style}]" if style else (row["verdict"] if row else "")
            table.add_row(LABELS.get(metric, metric), number(base["metrics"].get(metric)), number(value), span,
                          verdict_text)  # fmt: skip
        Console().print(table)
    for name, reason in result["skipped"].items():
        Console(stderr=True).print(f"[yellow]{name} not computed:[/yellow] {reason}", highlight=False)
