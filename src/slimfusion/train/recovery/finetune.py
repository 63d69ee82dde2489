"""Recovery after compression: fine-tune with the DDPM loss, optionally distilling from the original model."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from slimfusion.train.config import TrainConfig
from slimfusion.train.loop import fit


class FinetuneConfig(TrainConfig):
    """Settings of a recovery run (the training settings, with shorter defaults, plus distillation weights).

    Args:
        steps (`int`, defaults to 1000): optimizer steps (Diff-Pruning recovers with a small fraction of the
            original training; the built-in digits model was trained for 8000).
        lr (`float`, defaults to 2e-4): AdamW learning rate after warm-up.
        warmup_steps (`int`, defaults to 50): linear warm-up length.
        distill (`float`, optional): output distillation weight W in
            W x |eps_teacher - eps_student|^2 + (1 - W) x |eps - eps_student|^2; needs a teacher. Default: 1.0 when
            a teacher is given (output distillation alone recovered best: benchmarks/results/recovery_digits.md),
            else 0.
        feature_distill (`float`, defaults to 0.0): weight of the block-output (feature) distillation term, added to
            the loss above; needs a teacher.
        (other fields as in `TrainConfig`)
    """

    steps: int = Field(1000, ge=1)
    lr: float = Field(2e-4, gt=0)
    warmup_steps: int = Field(50, ge=0)
    distill: float | None = Field(None, ge=0, le=1)
    feature_distill: float = Field(0.0, ge=0)


def finetune(
    model: nn.Module,
    images: torch.Tensor,
    config: FinetuneConfig,
    teacher: nn.Module | None = None,
    out: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Fine-tune `model` in place on `images` ([N, C, H, W] in [-1, 1]); its EMA weights are loaded at the end.

    Args:
        model (`nn.Module`): the compressed denoiser (a UNet2DModel, pruned or not).
        images (`torch.Tensor`): training images.
        config (`FinetuneConfig`): the run's settings.
        teacher (`nn.Module`, optional): the original model, needed when `distill` or `feature_distill` > 0.
        out (`str` or `Path`, optional): run folder for checkpoints (a loadable EMA model + `train_state/`).
        checkpoint_every (`int`, defaults to 0): write a checkpoint every N steps (0: none).
        resume (`bool`, defaults to False): continue exactly from the checkpoint in `out`.
        progress (`bool`, defaults to True): progress bar with loss and steps/s.
    """
    return fit(
        model,
        images,
        config,
        "finetune",
        teacher=teacher,
        out=out,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress=progress,
    )
