"""The optimize verb, derived from the registered step's options (`OptimizeOptions`): nothing declared twice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimfusion.cli.derived import derived_command
from slimfusion.optimize import optimize
from slimfusion.optimize.output import answer
from slimfusion.progress import console
from slimfusion.verbs.optimizing import OptimizeOptions


def _run(model: str, config, out: Path, resume: bool) -> None:
    result = optimize(model, config, out=out, resume=resume)
    console.print(f"[bold]{answer(result)}[/bold]", highlight=False, soft_wrap=True)
    where = f"; model: {result['model']}" if result.get("model") else ""
    console.print(f"wrote {out}: report.html, frontier.md / .json / .png{where}", highlight=False, soft_wrap=True)


derived_command(
    "optimize",
    OptimizeOptions,
    _run,
    extra={
        "out": (Annotated[Path, typer.Option(help="run folder: the chosen model/, frontier, report.html")], ...),
        "resume": (Annotated[bool, typer.Option(help="continue the search journaled in --out")], False),
    },
    doc="Find the fastest composition of the registered levers that keeps the original's quality, and prove it.",
)
