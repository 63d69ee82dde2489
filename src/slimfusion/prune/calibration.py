"""Accumulate noise-prediction-loss gradients over timesteps, as Taylor and Diff-Pruning importance need."""

from __future__ import annotations

import torch
from torch import nn

from slimfusion.diffusion import calibration_set, denoising_loss, noise_scheduler
from slimfusion.progress import progress_bar


def accumulate_gradients(
    model: nn.Module,
    images: torch.Tensor,
    threshold: float,
    batches: int,
    batch_size: int,
    seed: int,
    progress: bool = True,
    conditions: torch.Tensor | None = None,
) -> dict:
    """Sum gradients of the DDPM loss into `.grad` over t = 0, 1, 2, ..., stopping by the threshold rule.

    At each timestep the loss is averaged over `batches` batches of `batch_size` images and back-propagated
    (gradients add up across timesteps). With `threshold` > 0 the loop stops after the first timestep whose loss is
    below `threshold` x the largest loss seen so far (that timestep's gradient is included, as in the Diff-Pruning
    reference code); with 0 it runs over every training timestep. `conditions` (one per image: text-encoder states
    or class labels) condition the denoiser; None uses the family's null conditioning.

    Returns:
        {"timesteps_used": int, "losses": list of per-timestep losses, "calib_images": int}
    """
    scheduler = noise_scheduler(model)
    gen = torch.Generator().manual_seed(seed)
    count = min(len(images), batches * batch_size)
    order = torch.randperm(len(images), generator=gen)[:count]
    clean = images[order]
    conds = conditions[order] if conditions is not None else None
    total = scheduler.config.num_train_timesteps
    model.zero_grad(set_to_none=True)
    model.eval()  # no dropout; gradients flow regardless
    losses: list[float] = []
    max_loss = 0.0
    with progress_bar(progress) as bar:
        task = bar.add_task("gradients over timesteps", total=total, status="")
        for t in range(total):
            loss_t = 0.0
            chunks = clean.split(batch_size)
            cond_chunks = conds.split(batch_size) if conds is not None else [None] * len(chunks)
            for chunk, cond in zip(chunks, cond_chunks, strict=True):
                noise = torch.randn(chunk.shape, generator=gen)
                steps = torch.full((len(chunk),), t, dtype=torch.long)
                loss = denoising_loss(model, scheduler, chunk, noise, steps, cond) / len(chunks)
                loss.backward()
                loss_t += loss.item()
            losses.append(loss_t)
            max_loss = max(max_loss, loss_t)
            bar.update(task, advance=1, status=f"t={t} loss {loss_t:.4f} (max {max_loss:.4f})")
            if threshold > 0 and loss_t < threshold * max_loss:
                break
    return {"timesteps_used": len(losses), "losses": losses, "calib_images": count}


def calibration_inputs(model: nn.Module, config, data, conditions, progress: bool):
    """(inputs, conditions) for gradient / loss calibration of a pruning config (its counts, steps and seed)."""
    count = config.batch_size * config.calib_batches
    batch = min(16, config.batch_size)
    needed_by = f"method {config.method}"
    steps = config.calib_sample_steps
    return calibration_set(model, data, conditions, count, steps, config.seed, batch, progress, needed_by)
