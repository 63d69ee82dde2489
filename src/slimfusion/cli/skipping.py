"""Verbs of timestep-wise block skipping: skip-plan (and the --plan / --no-plan options of sample and evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, make_config
from slimfusion.progress import console
from slimfusion.skip import save_plan, store_plan
from slimfusion.skip.picture import plan_picture
from slimfusion.steps import Subject, option_defaults
from slimfusion.steps.skipping import SkipOptions, make_plan

SKIP = option_defaults(SkipOptions)


@app.command("skip-plan")
def skip_plan_command(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="plan file to write (its picture, a .png, is drawn next to it)")],
    method: Annotated[str, typer.Option(help="dipgo (learned) or deepcache (static schedule)")] = SKIP["method"],
    steps: Annotated[int, typer.Option(help="sampling steps the plan is for")] = SKIP["steps"],
    scheduler: Annotated[str, typer.Option(help="solver the plan is for (dipgo: ddim)")] = SKIP["scheduler"],
    target: Annotated[float, typer.Option(help="dipgo: kept share of the sampling MACs, in (0, 1]")] = SKIP["target"],
    iterations: Annotated[int, typer.Option(help="dipgo: SGD iterations")] = SKIP["iterations"],
    lr: Annotated[float, typer.Option(help="dipgo: SGD learning rate")] = SKIP["lr"],
    loss: Annotated[str, typer.Option(help="dipgo: consistency loss ssim | l1 | l2")] = SKIP["loss"],
    calib: Annotated[int, typer.Option(help="dipgo: calibration noises")] = SKIP["calib"],
    batch_size: Annotated[int, typer.Option(help="dipgo: noises per iteration")] = SKIP["batch_size"],
    interval: Annotated[int, typer.Option(help="deepcache: a full step every N steps")] = SKIP["interval"],
    branch: Annotated[int, typer.Option(help="deepcache: skip branch (block b // 3, layer b % 3)")] = SKIP["branch"],
    uniform: Annotated[bool, typer.Option(help="deepcache: uniform schedule (--no-uniform: the paper's)")] = SKIP[
        "uniform"
    ],
    center: Annotated[int | None, typer.Option(help="deepcache: center step of the non-uniform schedule")] = None,
    prompts: Annotated[Path | None, typer.Option(help="dipgo, text-to-image: calibration prompts file")] = None,
    class_labels: Annotated[str | None, typer.Option(help="dipgo, DiT: calibration labels, e.g. 3,7")] = None,
    guidance: Annotated[float, typer.Option(help="dipgo: guidance scale during calibration")] = SKIP["guidance"],
    seed: Annotated[int, typer.Option(help="seed of the calibration noise and the pruner")] = SKIP["seed"],
    into: Annotated[
        Path | None,
        typer.Option(help="also save a copy of MODEL carrying the plan here; sample / evaluate apply it by default"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace --out (and --into) if they exist")] = False,
) -> None:
    """Make a timestep-wise skip plan (DiP-GO or DeepCache) for a denoiser or pipeline; use it with sample --plan."""
    for path in (out, into):
        if path is not None and path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    options = make_config(
        SkipOptions,
        method=method,
        steps=steps,
        scheduler=scheduler,
        target=target,
        iterations=iterations,
        lr=lr,
        loss=loss,
        calib=calib,
        batch_size=batch_size,
        interval=interval,
        branch=branch,
        uniform=uniform,
        center=center,
        seed=seed,
        prompts=prompts,
        class_labels=class_labels,
        guidance=guidance,
    )
    subject = Subject.load(model)
    plan = make_plan(subject, options)
    save_plan(plan, out)
    picture = plan_picture(plan, out.with_suffix(".png"))
    console.print(f"{plan.method}: {plan.macs_ratio:.1%} of the sampling MACs kept; saved {out} and {picture}")
    if into is not None:
        store_plan(subject.denoiser, plan)
        subject.save(into, overwrite=True)
        console.print(f"saved {into}: a copy of {model} that samples with this plan (--no-plan switches it off)")
