"""Verbs of timestep-wise block skipping: skip-plan (and the --plan / --no-plan options of sample and evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, conditions_from_options, make_config
from slimfusion.errors import ConfigError
from slimfusion.models.io import load, save
from slimfusion.pipelines import is_pipeline, load_pipeline, save_pipeline
from slimfusion.progress import console
from slimfusion.sample import DEFAULT_GUIDANCE
from slimfusion.skip import SkipConfig, save_plan, skip_plan, store_plan
from slimfusion.skip.picture import plan_picture
from slimfusion.train.conditional_data import NULL_CLASS, embed, is_text_pipeline


@app.command("skip-plan")
def skip_plan_command(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="plan file to write (its picture, a .png, is drawn next to it)")],
    method: Annotated[str, typer.Option(help="dipgo (learned) or deepcache (static schedule)")] = "dipgo",
    steps: Annotated[int, typer.Option(help="sampling steps the plan is for")] = 50,
    scheduler: Annotated[str, typer.Option(help="solver the plan is for (dipgo: ddim)")] = "ddim",
    target: Annotated[float, typer.Option(help="dipgo: kept share of the sampling MACs, in (0, 1]")] = 0.25,
    iterations: Annotated[int, typer.Option(help="dipgo: SGD iterations")] = 100,
    lr: Annotated[float, typer.Option(help="dipgo: SGD learning rate")] = 0.02,
    loss: Annotated[str, typer.Option(help="dipgo: consistency loss ssim | l1 | l2")] = "ssim",
    calib: Annotated[int, typer.Option(help="dipgo: calibration noises")] = 32,
    batch_size: Annotated[int, typer.Option(help="dipgo: noises per iteration")] = 8,
    interval: Annotated[int, typer.Option(help="deepcache: a full step every N steps")] = 3,
    branch: Annotated[int, typer.Option(help="deepcache: skip branch (block b // 3, layer b % 3)")] = 0,
    uniform: Annotated[bool, typer.Option(help="deepcache: uniform schedule (--no-uniform: the paper's)")] = True,
    center: Annotated[int | None, typer.Option(help="deepcache: center step of the non-uniform schedule")] = None,
    prompts: Annotated[Path | None, typer.Option(help="dipgo, text-to-image: calibration prompts file")] = None,
    class_labels: Annotated[str | None, typer.Option(help="dipgo, DiT: calibration labels, e.g. 3,7")] = None,
    guidance: Annotated[float, typer.Option(help="dipgo: guidance scale during calibration")] = DEFAULT_GUIDANCE,
    seed: Annotated[int, typer.Option(help="seed of the calibration noise and the pruner")] = 0,
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
    config = make_config(
        SkipConfig,
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
    )
    denoiser = load(model)
    conditions, null = _calibration(model, prompts, class_labels) if method == "dipgo" else (None, None)
    plan = skip_plan(denoiser, config, conditions, null, guidance if conditions is not None else 1.0)
    save_plan(plan, out)
    picture = plan_picture(plan, out.with_suffix(".png"))
    console.print(f"{plan.method}: {plan.macs_ratio:.1%} of the sampling MACs kept; saved {out} and {picture}")
    if into is not None:
        _save_with_plan(model, denoiser, plan, into)
        console.print(f"saved {into}: a copy of {model} that samples with this plan (--no-plan switches it off)")


def _save_with_plan(source: str, denoiser, plan, into: Path) -> None:
    """Save the model (or the whole pipeline) with the plan in its denoiser's slimfusion.json."""
    store_plan(denoiser, plan)
    if not is_pipeline(source):
        save(denoiser, into, overwrite=True)
        return
    pipe = load_pipeline(source)
    pipe.register_modules(**{"unet" if getattr(pipe, "unet", None) is not None else "transformer": denoiser})
    save_pipeline(pipe, into, overwrite=True)


def _calibration(source: str, prompts: Path | None, class_labels: str | None):
    """(conditions, null condition) for DiP-GO's calibration of a conditional pipeline, or (None, None)."""
    given = conditions_from_options(prompts, class_labels)
    if not given:
        return None, None

    if not is_pipeline(source):
        raise ConfigError("--prompts / --class-labels need a pipeline folder (its text encoder or label table)")
    pipe = load_pipeline(source)
    if "prompts" in given:
        if not is_text_pipeline(pipe):
            raise ConfigError("--prompts needs a text-to-image pipeline; this one has no text encoder")
        return embed(pipe, given["prompts"]), embed(pipe, [""])

    return torch.tensor(given["class_labels"]), torch.tensor([NULL_CLASS])
