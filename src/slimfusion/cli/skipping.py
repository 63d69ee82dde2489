"""Verbs of timestep-wise block skipping: skip-plan, derived from its registered options (`SkipOptions`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimfusion.cli.derived import derived_command
from slimfusion.progress import console
from slimfusion.skip import save_plan, store_plan
from slimfusion.skip.picture import plan_picture
from slimfusion.subject import Subject
from slimfusion.verbs.skipping import SkipOptions, make_plan


def _skip_plan(model: str, options: SkipOptions, out: Path, into: Path | None, overwrite: bool) -> None:
    for path in (out, into):
        if path is not None and path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    subject = Subject.load(model)
    plan = make_plan(subject, options)
    save_plan(plan, out)
    picture = plan_picture(plan, out.with_suffix(".png"))
    console.print(f"{plan.method}: {plan.macs_ratio:.1%} of the sampling MACs kept; saved {out} and {picture}")
    if into is not None:
        store_plan(subject.denoiser, plan)
        subject.save(into, overwrite=True)
        console.print(f"saved {into}: a copy of {model} that samples with this plan (--no-plan switches it off)")


derived_command(
    "skip-plan",
    SkipOptions,
    _skip_plan,
    extra={
        "out": (
            Annotated[Path, typer.Option(help="plan file to write (its picture, a .png, is drawn next to it)")],
            ...,
        ),
        "into": (
            Annotated[
                Path | None,
                typer.Option(help="also save a copy of MODEL carrying the plan here; sample / evaluate apply it"),
            ],
            None,
        ),
        "overwrite": (Annotated[bool, typer.Option(help="replace --out (and --into) if they exist")], False),
    },
    doc="Make a timestep-wise skip plan (DiP-GO or DeepCache) for a denoiser or pipeline; use it with sample --plan.",
)
