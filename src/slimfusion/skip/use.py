"""Which skip plan a sampling run follows: the plan given, else the one stored in the model, unless "no plan".

The library owns this choice, so `sample()`, `evaluate()` and every command apply a stored plan alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.meta import get_meta
from slimfusion.pipelines import denoiser_of
from slimfusion.skip.hooks import apply_plan
from slimfusion.skip.plan import SkipPlan, check_plan, load_plan


def chosen_plan(
    denoiser: nn.Module, plan: SkipPlan | str | Path | None, no_plan: bool, scheduler: str, steps: int
) -> SkipPlan | None:
    """The plan a run applies, checked against the denoiser, the scheduler and the step count (one-line refusal)."""
    if no_plan:
        if plan is not None:
            raise ConfigError("--plan and --no-plan exclude each other")
        return None
    chosen = load_plan(plan) if isinstance(plan, (str, Path)) else plan
    stored = get_meta(denoiser).get("skip_plan")
    if chosen is None and stored:
        chosen = SkipPlan.model_validate(stored)
    if chosen is not None:
        try:
            check_plan(chosen, denoiser, scheduler, steps)
        except ConfigError as exc:
            if plan is None:  # the stored plan: say how to sample without it
                raise ConfigError(f"{exc} (the model folder's own plan; --no-plan samples without it)") from exc
            raise
    return chosen


@contextlib.contextmanager
def sampling_plan(
    sampler, plan: SkipPlan | str | Path | None, no_plan: bool, scheduler: str, steps: int, explicit: bool = False
) -> Iterator[SkipPlan | None]:
    """Apply the chosen plan to the sampler's denoiser for the block; yields the plan (None: every block runs).
    `explicit`: the run sets its own timesteps, which no plan was made for (refused)."""
    denoiser = denoiser_of(sampler)
    chosen = chosen_plan(denoiser, plan, no_plan, scheduler, steps)
    if chosen is not None and explicit:
        raise ConfigError("--timesteps: a skip plan is made for the scheduler's own timesteps; pass --no-plan")
    if chosen is None:
        yield None
        return
    with apply_plan(denoiser, chosen):
        yield chosen
