"""Verb that chains the others: run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimfusion.cli.app import app
from slimfusion.cli.common import OutOpt
from slimfusion.errors import ConfigError
from slimfusion.progress import console
from slimfusion.recipe import run_recipe


@app.command("run")
def run_command(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML: model: and an ordered steps: list")],
    out: OutOpt,
    launcher: Annotated[str, typer.Option(help="none | accelerate (training and sampling steps multi-process)")] = (
        "none"
    ),
) -> None:
    """Run a recipe: every step is the verb of that name with its own options; rerun with the same --out to resume
    at the first step that did not finish. The final model is --out/model, its history lists every step."""
    if launcher not in ("none", "accelerate"):
        raise ConfigError(f"--launcher must be none or accelerate, got {launcher!r}")
    final = run_recipe(recipe, out, launcher=launcher, echo=console.print)
    console.print(f"recipe done: {final}")
