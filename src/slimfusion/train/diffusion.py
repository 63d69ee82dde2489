"""Train a denoiser from scratch with the DDPM noise-prediction loss (AdamW, warm-up, gradient clipping, EMA)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from slimfusion.diffusion import default_scheduler_config  # noqa: F401  (where older code imports it from)
from slimfusion.train.config import TrainConfig
from slimfusion.train.loop import fit


def train_diffusion(
    model: nn.Module,
    images,
    config: TrainConfig,
    out: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Train `model` in place on `images` ([N, C, H, W] in [-1, 1]) and load its EMA weights into it.

    Args:
        model (`nn.Module`): a UNet2DModel denoiser.
        images (`torch.Tensor`): the training set.
        config (`TrainConfig`): the run's settings.
        out (`str` or `Path`, optional): run folder for checkpoints (a loadable EMA model + `train_state/`).
        checkpoint_every (`int`, defaults to 0): write a checkpoint every N steps (0: none).
        resume (`bool`, defaults to False): continue from the checkpoint in `out`.
        progress (`bool`, defaults to True): show a progress bar with loss and steps/s.
    """
    return fit(
        model, images, config, "train", out=out, checkpoint_every=checkpoint_every, resume=resume, progress=progress
    )
