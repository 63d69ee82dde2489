"""Verbs that compress a model: prune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, OutOpt, first_error, refuse_existing, save_like_source
from slimfusion.data import load_images
from slimfusion.errors import ConfigError
from slimfusion.models.families import example_inputs, family_name
from slimfusion.models.io import load
from slimfusion.models.meta import history
from slimfusion.pipelines import denoiser_name_of, is_pipeline
from slimfusion.prune import DepthConfig, StructuralConfig, prune
from slimfusion.prune.conditioning import encode_prompts, parse_class_labels, read_prompts


@app.command("prune")
def prune_command(
    model: ModelArg,
    out: OutOpt,
    method: Annotated[
        str,
        typer.Option(help="width: random | magnitude | taylor | diff-pruning | reinit; depth: depth | depth-learned"),
    ] = "diff-pruning",
    ratio: Annotated[float, typer.Option(help="fraction of channels removed per layer group, in (0, 1)")] = 0.3,
    data: Annotated[
        str | None, typer.Option(help="calibration images: digits or a folder (taylor, diff-pruning)")
    ] = None,
    threshold: Annotated[float, typer.Option(help="diff-pruning T: stop when loss < T x max loss")] = 0.05,
    calib_batches: Annotated[int, typer.Option(help="calibration batches per timestep")] = 1,
    batch_size: Annotated[int, typer.Option(help="images per calibration batch")] = 64,
    round_to: Annotated[int | None, typer.Option(help="keep widths multiples of K")] = None,
    compat: Annotated[str, typer.Option(help="torch-pruning (TP 1.6 rounding) or paper (Diff-Pruning's TP 1.3)")] = (
        "torch-pruning"
    ),
    seed: Annotated[int, typer.Option(help="seed for random importance and calibration")] = 0,
    prompts: Annotated[
        Path | None, typer.Option(help="text-to-image: calibrate on the model's own samples of these prompts")
    ] = None,
    class_labels: Annotated[
        str | None, typer.Option(help="class-conditional (DiT): calibrate on the model's own samples, e.g. 1,207")
    ] = None,
    calib_sample_steps: Annotated[int, typer.Option(help="DDIM steps of those calibration samples")] = 25,
    min_group_channels: Annotated[
        int, typer.Option(help="merge GroupNorm groups left with fewer channels than this (1: keep group counts)")
    ] = 2,
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
    refuse_existing(out, overwrite)
    depth = method in ("depth", "depth-learned")
    if not depth and (target_macs is not None or remove is not None):
        raise ConfigError("--target-macs and --remove are for --method depth / depth-learned")
    try:
        config = (
            DepthConfig(
                method="learned" if method == "depth-learned" else "greedy",
                target_macs=target_macs,
                remove=[n.strip() for n in remove.split(",") if n.strip()] if remove else None,
                batch_size=min(batch_size, 32),
                calib_batches=calib_batches,
                calib_sample_steps=calib_sample_steps,
                seed=seed,
            )
            if depth
            else None
        ) or StructuralConfig(
            method=method,
            ratio=ratio,
            threshold=threshold,
            calib_batches=calib_batches,
            batch_size=batch_size,
            round_to=round_to,
            compat=compat,
            seed=seed,
            calib_sample_steps=calib_sample_steps,
            min_group_channels=min_group_channels,
        )
    except ValidationError as exc:
        raise ConfigError(first_error(exc)) from exc
    if prompts is not None and class_labels is not None:
        raise ConfigError("give --prompts (text-to-image) or --class-labels (class-conditional), not both")
    denoiser = load(model)
    conditions = _calibration_conditions(model, denoiser, prompts, class_labels)
    images = None
    if data is not None:
        images = load_images(data, size=denoiser.config.sample_size, channels=denoiser.config.in_channels)
        expected = tuple(example_inputs(denoiser, 1).values())[0].shape[1:]
        if tuple(images.shape[1:]) != tuple(expected):
            raise ConfigError(
                f"--data gives samples of shape {tuple(images.shape[1:])}; the model takes {tuple(expected)}"
            )
    if images is not None and conditions is not None:
        raise ConfigError("--data and --prompts / --class-labels exclude each other (conditions come with samples)")
    if depth and config.remove is None and images is None and conditions is None:
        raise ConfigError(
            "--target-macs scores layers on calibration data: give --data (or --prompts / --class-labels)"
        )
    prune(denoiser, config, data=images, conditions=conditions)
    save_like_source(model, denoiser, out, overwrite)
    meta_folder = out / denoiser_name_of(out) if is_pipeline(out) else out
    _print_prune_effect(history(denoiser)[-1]["effect"], meta_folder)


def _calibration_conditions(source: str, denoiser, prompts: Path | None, class_labels: str | None):
    """Per-image conditioning from --prompts (encoded by the pipeline's text encoder) or --class-labels."""
    kind = family_name(denoiser)
    if prompts is not None:
        if kind != "UNet2DConditionModel":
            raise ConfigError(f"--prompts is for text-to-image UNets, not {kind}")
        return encode_prompts(source, read_prompts(prompts))
    if class_labels is not None:
        if kind not in ("DiTTransformer2DModel", "Transformer2DModel"):
            raise ConfigError(f"--class-labels is for class-conditional DiTs, not {kind}")
        return parse_class_labels(class_labels, denoiser.config.num_embeds_ada_norm)
    return None


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
