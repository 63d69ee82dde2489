"""Verbs of unstructured / N:M sparsity: sparsify (and sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, OutOpt, make_config, refuse_existing
from slimfusion.cli.derived import SAVED, derived_command
from slimfusion.data.prompts import read_prompts
from slimfusion.models.meta import history
from slimfusion.progress import console
from slimfusion.registry import option_defaults
from slimfusion.subject import Subject
from slimfusion.sweep import SweepConfig, parse_sparsities, sweep
from slimfusion.verbs.compress import SparsifyOptions, run_sparsify, sparsified_now

SWEEP = option_defaults(SweepConfig)


def _sparsify(model: str, options: SparsifyOptions, out: Path, overwrite: bool) -> None:
    refuse_existing(out, overwrite)
    subject = run_sparsify(Subject.load(model), options)
    changed = sparsified_now(subject)
    subject.save(out, overwrite=overwrite)
    print_sparsity(changed)
    console.print(f"saved {out}")


derived_command(
    "sparsify",
    SparsifyOptions,
    _sparsify,
    SAVED,
    doc="Unstructured / N:M sparsity (magnitude, Wanda, SparseGPT; uniform or OWL layer sparsities).\n\n"
    "MODEL may be a pipeline folder: the chosen components are sparsified and --out is a pipeline folder with them"
    " replaced and the others copied unchanged. Prints the achieved sparsity per component.",
)


def print_sparsity(models: list) -> None:
    table = Table(title="achieved sparsity")
    for column in ("component", "target", "sparsified layers", "all parameters", "layers (min - max)"):
        table.add_column(column, justify="right" if column != "component" else "left")
    for model in models:
        effect = history(model)[-1]["effect"]
        per_layer = list(effect["layers"].values())
        table.add_row(
            effect["component"],
            f"{effect['target']:.3f}",
            f"{effect['sparsity']:.3f}",
            f"{effect['sparsity_of_params']:.3f}",
            f"{len(per_layer)} ({min(per_layer):.3f} - {max(per_layer):.3f})",
        )
    Console().print(table)  # the result goes to stdout, progress and messages to stderr


@app.command("sweep")
def sweep_command(
    model: ModelArg,
    out: OutOpt,
    prompts: Annotated[Path, typer.Option(help="fixed evaluation (and calibration) prompts, one per line")],
    component: Annotated[str, typer.Option(help="comma list: text_encoder, unet, transformer")] = ",".join(
        SWEEP["components"]
    ),
    methods: Annotated[str, typer.Option(help="comma list of magnitude, wanda, sparsegpt, wanda-owl, ...")] = ",".join(
        SWEEP["methods"]
    ),
    sparsities: Annotated[str, typer.Option(help="start:stop:step (stop included) or a comma list")] = ",".join(
        f"{x:g}" for x in SWEEP["sparsities"]
    ),
    num: Annotated[int, typer.Option(help="samples per point")] = SWEEP["num"],
    steps: Annotated[int, typer.Option(help="DDIM steps of the samples")] = SWEEP["steps"],
    guidance: Annotated[float, typer.Option(help="classifier-free guidance of the samples")] = SWEEP["guidance"],
    ref: Annotated[str | None, typer.Option(help="reference data for FD, e.g. digits:all")] = SWEEP["ref"],
    clip_model: Annotated[str | None, typer.Option(help="local CLIPModel folder (safetensors) for CLIP score")] = None,
    collapse_drop: Annotated[float, typer.Option(help="collapse: quality this far below dense")] = SWEEP[
        "collapse_drop"
    ],
    budget: Annotated[float, typer.Option(help="recommendation: allowed quality drop below dense")] = SWEEP["budget"],
    layers: Annotated[str, typer.Option(help="linear | linear+conv")] = SWEEP["layers"],
    seed: Annotated[int, typer.Option(help="seed of the samples")] = SWEEP["seed"],
) -> None:
    """Sparsity sweep per component and method: quality at each point, collapse points, a checked recommendation.

    Resumable: run the same command again and finished points are not recomputed. Shardable:
    `accelerate launch -m slimfusion sweep ...` gives each process a share of the points. Writes sweep.md, plots,
    summary.json and results.json (`slimfusion report DIR` makes the report with every point's sample grid).
    """
    config = make_config(
        SweepConfig,
        components=[c.strip() for c in component.split(",") if c.strip()],
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        sparsities=parse_sparsities(sparsities),
        prompts=read_prompts(prompts),
        num=num,
        steps=steps,
        guidance=guidance,
        ref=ref,
        clip_model=clip_model,
        collapse_drop=collapse_drop,
        budget=budget,
        layers=layers,
        seed=seed,
    )
    summary = sweep(model, config, out)
    if summary:
        for series, at in summary["collapse"].items():
            console.print(f"{series}: collapses at {'-' if at is None else f'{at:.2f}'}")
        console.print(f"wrote {out / 'sweep.md'}")
