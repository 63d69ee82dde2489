"""Verbs that compress a model: prune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, OutOpt, make_config, refuse_existing, save_like_source
from slimfusion.models.meta import history
from slimfusion.pipelines import denoiser_name_of, is_pipeline
from slimfusion.steps import Subject, option_defaults
from slimfusion.steps.compress import PruneOptions, run_prune

PRUNE = option_defaults(PruneOptions)


@app.command("prune")
def prune_command(
    model: ModelArg,
    out: OutOpt,
    method: Annotated[
        str,
        typer.Option(help="width: random | magnitude | taylor | diff-pruning | reinit; depth: depth | depth-learned"),
    ] = PRUNE["method"],
    ratio: Annotated[float, typer.Option(help="fraction of channels removed per layer group, in (0, 1)")] = PRUNE[
        "ratio"
    ],
    data: Annotated[
        str | None, typer.Option(help="calibration images: digits or a folder (taylor, diff-pruning)")
    ] = None,
    threshold: Annotated[float, typer.Option(help="diff-pruning T: stop when loss < T x max loss")] = PRUNE[
        "threshold"
    ],
    calib_batches: Annotated[int, typer.Option(help="calibration batches per timestep")] = PRUNE["calib_batches"],
    batch_size: Annotated[int, typer.Option(help="images per calibration batch")] = PRUNE["batch_size"],
    round_to: Annotated[int | None, typer.Option(help="keep widths multiples of K")] = None,
    compat: Annotated[
        str, typer.Option(help="torch-pruning (TP 1.6 rounding) or paper (Diff-Pruning's TP 1.3)")
    ] = PRUNE["compat"],
    seed: Annotated[int, typer.Option(help="seed for random importance and calibration")] = 0,
    prompts: Annotated[
        Path | None, typer.Option(help="text-to-image: calibrate on the model's own samples of these prompts")
    ] = None,
    class_labels: Annotated[
        str | None, typer.Option(help="class-conditional (DiT): calibrate on the model's own samples, e.g. 1,207")
    ] = None,
    calib_sample_steps: Annotated[int, typer.Option(help="DDIM steps of those calibration samples")] = PRUNE[
        "calib_sample_steps"
    ],
    min_group_channels: Annotated[
        int, typer.Option(help="merge GroupNorm groups left with fewer channels than this (1: keep group counts)")
    ] = PRUNE["min_group_channels"],
    target_macs: Annotated[float | None, typer.Option(help="depth: keep this share of the MACs, in (0, 1)")] = None,
    remove: Annotated[
        str | None, typer.Option(help="depth: comma list of units, e.g. mid_block,down_blocks.1.1+up_blocks.1.0")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Structural pruning: width (Diff-Pruning and baselines) or depth (whole layers / blocks); prints what changed
    and the params / MACs reduction.

    MODEL may be a pipeline folder: its unet / transformer is pruned and --out is a pipeline folder with the pruned
    component in place and the others copied unchanged.
    """
    options = make_config(
        PruneOptions,
        method=method,
        ratio=ratio,
        data=data,
        threshold=threshold,
        calib_batches=calib_batches,
        batch_size=batch_size,
        round_to=round_to,
        compat=compat,
        seed=seed,
        prompts=prompts,
        class_labels=class_labels,
        calib_sample_steps=calib_sample_steps,
        min_group_channels=min_group_channels,
        target_macs=target_macs,
        remove=remove,
    )
    refuse_existing(out, overwrite)
    subject = run_prune(Subject.load(model), options)
    save_like_source(model, subject.denoiser, out, overwrite)
    meta_folder = out / denoiser_name_of(out) if is_pipeline(out) else out
    _print_prune_effect(history(subject.denoiser)[-1]["effect"], meta_folder)


MAX_WIDTH_ROWS = 40


def _print_prune_effect(effect: dict, out: Path) -> None:
    if "removed" in effect:
        changed = {name: ["present", "removed"] for name in effect["removed"]}
        title = f"removed layers ({len(changed)}); diffusers config "
        title += "says the new depth" if effect["diffusers_config"] else "cannot say it (slimfusion.json does)"
    else:
        changed = effect["widths"]
        title = f"pruned widths ({len(changed)} layers changed)"
    widths = Table(title=title)
    widths.add_column("layer")
    widths.add_column("before", justify="right")
    widths.add_column("after", justify="right")
    shown = list(changed.items()) if len(changed) <= MAX_WIDTH_ROWS else list(changed.items())[:MAX_WIDTH_ROWS]
    for name, (before, after) in shown:
        widths.add_row(name, str(before), str(after))
    if len(shown) < len(changed):
        widths.add_row(f"... {len(changed) - len(shown)} more in {out / 'slimfusion.json'}", "", "")
    summary = Table(title="effect")
    summary.add_column("")
    for column in ("before", "after", "ratio"):
        summary.add_column(column, justify="right")
    for label, key, scale, unit in (("params", "params", 1e6, "M"), ("MACs", "macs", 1e9, "G")):
        before, after = effect[f"{key}_before"], effect[f"{key}_after"]
        summary.add_row(label, f"{before / scale:.3f} {unit}", f"{after / scale:.3f} {unit}", f"{after / before:.3f}")
    out_console = Console()
    out_console.print(widths)
    out_console.print(summary)
    if effect.get("timesteps_used") is not None:
        out_console.print(f"gradients accumulated over {effect['timesteps_used']} timesteps")
    if effect.get("target_met") is False:
        kept = effect["macs_after"] / effect["macs_before"]
        out_console.print(f"note: whole layers reach {kept:.3f} of the MACs, not the target (no further layer fits)")
    out_console.print(f"saved {out} ({effect['wall_s']:.1f}s)")
