"""The one denoising chain: every sampler, calibration run and DiP-GO's trained chain step through it.

Image i starts from (and draws any step noise from) its own generator seeded by (seed, i), so a result does not
depend on the batch size or on how indices are split across processes.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from slimfusion.diffusion.schedulers import restart
from slimfusion.models.families import family_of
from slimfusion.progress import progress_bar

# (x already scaled for the model, timestep, step index) -> the model's prediction
Predict = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# (run one step: x -> x', x, step index) -> x'; lets a caller wrap each step (e.g. in activation checkpointing)
Around = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, int], torch.Tensor]


def image_generator(seed: int, index: int) -> torch.Generator:
    """The generator of image `index` under base `seed` (distinct streams for every pair)."""
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One generator per image index (they draw its starting noise, then any step noise)."""
    return [image_generator(seed, i) for i in indices]


def start_noise(shape: Sequence[int], gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Starting noise [len(gens), *shape]: item k drawn from generator k."""
    return torch.cat([torch.randn((1, *shape), generator=g) for g in gens])


def run_chain(
    scheduler, x: torch.Tensor, predict: Predict, generators: list | None = None, around: Around | None = None
) -> torch.Tensor:
    """Denoise `x` (unit-variance noise) through every step of `scheduler`; the final sample.

    Works for any diffusers scheduler: the noise is scaled by `init_noise_sigma`, the model input by
    `scale_model_input`, and multistep solvers start from a clean state.
    """
    restart(scheduler)  # multistep solvers keep history: start afresh (explicit timesteps kept)
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": generators} if takes_generator and generators is not None else {}
    x = x * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):

        def one(x: torch.Tensor, i: int = i, t: torch.Tensor = t) -> torch.Tensor:
            return scheduler.step(predict(scheduler.scale_model_input(x, t), t, i), t, x, **extra).prev_sample

        x = one(x) if around is None else around(one, x, i)
    return x


def predictor(
    model: nn.Module,
    conditions: torch.Tensor | None = None,
    null: torch.Tensor | None = None,
    guidance: float = 1.0,
    indices: torch.Tensor | None = None,
) -> Predict:
    """The model's noise prediction for a batch, conditioned and guided (classifier-free guidance, written once).

    `t` is one timestep for the batch (sampling) or one per item (step distillation's teacher).

    Item k of the batch gets condition `indices[k] mod len(conditions)` (default: k); with `guidance` != 1 and a
    `null` condition, the prediction is uncond + guidance * (cond - uncond).
    """
    denoise = family_of(model).denoise
    if conditions is None:
        return lambda x, t, i: denoise(model, x, t.to(x.device).expand(len(x)))

    def predict(x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        idx = torch.arange(len(x)) if indices is None else indices
        t, cond = t.to(x.device).expand(len(x)), conditions[idx.to(conditions.device) % len(conditions)]
        if guidance == 1.0 or null is None:
            return denoise(model, x, t, cond)
        both = torch.cat([null.expand(len(x), *null.shape[1:]), cond])
        uncond, text = denoise(model, torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        return uncond + guidance * (text - uncond)

    return predict


def in_batches(indices: list[int], seed: int, batch_size: int, make, progress: bool) -> torch.Tensor:
    """Run `make(chunk, generators)` over batches of image indices (one seeded generator per image), with a progress
    bar; the concatenated images."""
    out = []
    with progress_bar(progress) as bar:
        task = bar.add_task("sample", total=len(indices), status="")
        start = time.perf_counter()
        for first in range(0, len(indices), batch_size):
            chunk = indices[first : first + batch_size]
            out.append(make(chunk, generators(seed, chunk)))
            done = first + len(chunk)
            bar.update(task, completed=done, status=f"{done / (time.perf_counter() - start):.1f} img/s")
    return torch.cat(out) if out else torch.empty(0)
