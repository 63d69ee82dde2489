"""The one calibration-set builder: what gradient pruning, depth pruning, sparsity and skip plans calibrate on.

Clean inputs come from the user's data or, for conditional models without data, from the model's own samples for
the given conditions (so gradients see the inputs the model meets in use); starting noises are drawn exactly as
sampling draws them.
"""

from __future__ import annotations

import torch
from torch import nn

from slimfusion.diffusion.chain import generators, predictor, run_chain, start_noise
from slimfusion.diffusion.schedulers import make_scheduler
from slimfusion.errors import ConfigError
from slimfusion.models.families import example_inputs, family_of
from slimfusion.progress import progress_bar


def input_shape(model: nn.Module) -> tuple[int, ...]:
    """The shape of one denoiser input without the batch dimension (its family's example input)."""
    return tuple(next(iter(example_inputs(model, 1).values())).shape[1:])


def calibration_noise(model: nn.Module, count: int, seed: int) -> torch.Tensor:
    """Starting noises [count, C, H, W]: noise i from generator (seed, i), as `sample` draws image i."""
    return start_noise(input_shape(model), generators(seed, range(count)))


def repeat_to(conditions: torch.Tensor, count: int) -> torch.Tensor:
    """Cycle the conditions until there are `count` of them (prompts or labels are usually fewer than images)."""
    reps = -(-count // len(conditions))
    return conditions.repeat(reps, *([1] * (conditions.ndim - 1)))[:count]


@torch.no_grad()
def self_samples(
    model: nn.Module,
    conditions: torch.Tensor,
    steps: int = 25,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """x0 samples [N, C, H, W] of `model`, one per condition (DDIM, eta 0, seeded per image)."""
    if family_of(model).denoise is None:
        raise ConfigError(f"{type(model).__name__} is not a denoiser")
    scheduler = make_scheduler(model, "ddim", steps)
    out = []
    with progress_bar(progress) as bar:
        task = bar.add_task("calibration samples", total=len(conditions), status="")
        for first in range(0, len(conditions), batch_size):
            cond = conditions[first : first + batch_size]
            x = start_noise(input_shape(model), generators(seed, range(first, first + len(cond))))
            out.append(run_chain(scheduler, x, predictor(model, cond)))
            bar.update(task, advance=len(cond))
    return torch.cat(out)


def calibration_set(
    model: nn.Module,
    data: torch.Tensor | None,
    conditions: torch.Tensor | None,
    count: int,
    sample_steps: int,
    seed: int,
    batch_size: int = 16,
    progress: bool = True,
    needed_by: str = "this method",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(clean inputs, conditions): the user's data (with one condition each), or the model's own samples for the
    conditions, cycled to `count`."""
    if data is None and conditions is None:
        raise ConfigError(f"{needed_by} needs calibration data (--data) or conditioning (--prompts)")
    if data is not None:
        if conditions is not None and len(conditions) != len(data):
            raise ConfigError(f"{len(conditions)} conditions for {len(data)} calibration images; need one each")
        return data, conditions
    conditions = repeat_to(conditions, count)
    return self_samples(model, conditions, sample_steps, seed, batch_size, progress), conditions
