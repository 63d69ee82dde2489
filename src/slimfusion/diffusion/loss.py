"""The denoising training loss, once: noise the clean input at t, and the target for the model's prediction type."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.families import family_of


def target_of(scheduler, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the model should predict: the noise (epsilon), the velocity (v) or the clean sample."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(clean, noise, t)
    if kind == "sample":
        return clean
    raise _unknown(kind)


def split_prediction(
    kind: str, noisy: torch.Tensor, out: torch.Tensor, scale: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of `target_of`: the clean sample and the noise that a prediction `out` of type `kind` at
    `noisy` = scale x clean + sigma x noise stands for (scale, sigma: the timestep's sqrt(alpha-bar), sqrt(1 - it))."""
    if kind == "epsilon":
        return (noisy - sigma * out) / scale, out
    if kind == "v_prediction":
        return scale * noisy - sigma * out, sigma * noisy + scale * out
    if kind == "sample":
        return out, (noisy - scale * out) / sigma
    raise _unknown(kind)


def _unknown(kind: str) -> ConfigError:
    return ConfigError(f"unknown prediction type {kind!r} in the model's scheduler config")


def denoising_loss(
    model: nn.Module,
    scheduler,
    clean: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between the model's prediction at noise level t and its target (the DDPM loss for epsilon models)."""
    pred = family_of(model).denoise(model, scheduler.add_noise(clean, noise, t), t, cond)
    return F.mse_loss(pred, target_of(scheduler, clean, noise, t))
