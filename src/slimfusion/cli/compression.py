"""Verbs that compress a model: prune."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from slimfusion.cli.common import refuse_existing
from slimfusion.cli.derived import SAVED, derived_command
from slimfusion.models.meta import history
from slimfusion.pipelines import denoiser_name_of, is_pipeline
from slimfusion.subject import Subject
from slimfusion.verbs.compress import PruneOptions, run_prune


def _prune(model: str, options: PruneOptions, out: Path, overwrite: bool) -> None:
    refuse_existing(out, overwrite)
    subject = run_prune(Subject.load(model), options)
    subject.save(out, overwrite=overwrite)
    meta_folder = out / denoiser_name_of(out) if is_pipeline(out) else out
    _print_prune_effect(history(subject.denoiser)[-1]["effect"], meta_folder)


derived_command(
    "prune",
    PruneOptions,
    _prune,
    SAVED,
    doc="Structural pruning: width (Diff-Pruning and baselines) or depth (whole layers / blocks); prints what changed"
    " and the params / MACs reduction.\n\nMODEL may be a pipeline folder: its unet / transformer is pruned and --out"
    " is a pipeline folder with the pruned component in place and the others copied unchanged.",
)


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
