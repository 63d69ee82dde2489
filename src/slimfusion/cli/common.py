"""Shared pieces of the `slimfusion` command: argument types, one-line errors, run-folder checks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import torch
import typer
from accelerate import PartialState
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from slimfusion.data.prompts import read_prompts
from slimfusion.errors import ConfigError, SlimfusionError
from slimfusion.models.io import save
from slimfusion.progress import console
from slimfusion.prune.conditioning import parse_class_labels
from slimfusion.report import COLUMNS, cell

ModelArg = Annotated[str, typer.Argument(help="model folder, pipeline folder, builtin:NAME or hub id")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder (created atomically)")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace --out if it exists")]


def quiet_libraries() -> None:

    # lazy: only the CLI entry point quiets the libraries (transformers alone costs ~0.5 s to import)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    logging.getLogger("nncf").setLevel(logging.WARNING)  # an int8 export's INFO lines list every op it keeps float


def is_main_process() -> bool:
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def print_rows(results: dict) -> None:
    rows = results["rows"]
    original = next((r for r in rows if r.get("original")), None)
    columns = [c for c in COLUMNS if any(r["metrics"].get(c[0]) is not None for r in rows)]
    table = Table(title=results.get("title", "run"))
    table.add_column("model")
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(r["name"], *(cell(r, key, fmt, original) for key, _, fmt in columns))
    wide = Console()
    Console(width=None if wide.is_terminal else 240).print(table)  # logs: no wrapped headers
    if results.get("quality_metric"):
        console.print(results["quality_metric"], highlight=False, soft_wrap=True)


def refuse_existing(out: Path, overwrite: bool) -> None:
    """Fail before any work when --out exists (saves are atomic, but an hour of pruning should not be lost)."""
    if out.exists() and not overwrite:
        raise SlimfusionError(f"{out} already exists; pass --overwrite to replace it")


def first_error(exc) -> str:
    """One line from a pydantic ValidationError: the field and what is wrong with it."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    if not field:  # a check across fields: its message says it all
        return err["msg"].removeprefix("Value error, ")
    message = err["msg"].removeprefix("Value error, ")
    return f"--{field.replace('_', '-')}: {message} (got {err.get('input')!r})"


def make_config(cls, **values):
    """Build a pydantic config, turning a validation error into one CLI line."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(first_error(exc)) from exc


def given(**values):
    """The options the user gave (typer default None = not given), so a config's own defaults fill the rest."""
    return {k: v for k, v in values.items() if v is not None}


def timesteps_from_option(text: str | None) -> dict:
    """The `timesteps` config value from --timesteps 999,599,299 (nothing when not given)."""
    if text is None:
        return {}
    try:
        return {"timesteps": [int(v) for v in text.split(",")]}
    except ValueError:
        raise SlimfusionError(f"--timesteps {text!r}: whole numbers with commas, e.g. 999,599,299") from None


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not out.exists():
            raise SlimfusionError(f"--resume: {out} does not exist (no checkpoint to continue from)")
        return
    refuse_existing(out, overwrite)


def save_final(model, out: Path) -> None:
    """Save the finished EMA model over the run folder (the training state of checkpoints is dropped)."""
    if is_main_process():
        save(model, out, overwrite=True)
        console.print(f"saved {out}")


def conditions_from_options(prompts: Path | None, class_labels: str | None) -> dict:
    """`prompts` / `class_labels` config values from --prompts FILE / --class-labels 3,7 (one given at most)."""
    if prompts is not None and class_labels is not None:
        raise SlimfusionError("give --prompts (text-to-image) or --class-labels (class-conditional), not both")
    if prompts is not None:
        return {"prompts": read_prompts(prompts)}
    if class_labels is not None:
        return {"class_labels": parse_class_labels(class_labels, None).tolist()}
    return {}
