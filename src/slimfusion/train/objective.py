"""What one training step minimises: the denoising loss (plus distillation from the original), or a step
distillation objective. `fit` draws batches, noise and timesteps; an objective turns them into a loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from slimfusion.diffusion import target_of
from slimfusion.models.families import family_of
from slimfusion.train.distill import feature_loss, output_loss


class Objective(Protocol):
    def timesteps(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """The training timesteps of a batch of `n` (drawn with the run's generator, so resume is exact)."""

    def loss(
        self, student: nn.Module, clean: torch.Tensor, cond: torch.Tensor | None, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The batch's loss; `student(noisy, t, cond)` returns the prediction and any tapped features."""


class DenoisingObjective:
    """The DDPM loss at a uniformly drawn timestep, W-mixed with the teacher's prediction, plus feature terms."""

    def __init__(self, noising, teacher: nn.Module | None, distill: float, features: float, unwrap: Callable):
        self.noising, self.teacher, self.distill = noising, teacher, distill
        self.features, self.unwrap = features, unwrap
        self.denoise = None if teacher is None else family_of(teacher).denoise

    def timesteps(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.noising.config.num_train_timesteps, (n,), generator=gen)

    def loss(self, student, clean, cond, noise, t) -> torch.Tensor:
        noisy = self.noising.add_noise(clean, noise, t)
        target = None
        if self.teacher is not None:
            with torch.no_grad():
                target = self.denoise(self.teacher, noisy, t, cond)
        pred, features = student(noisy, t, cond)
        truth = target_of(self.noising, clean, noise, t)
        loss = output_loss(pred.float(), truth, None if target is None else target.float(), self.distill)
        if self.features:
            loss = loss + self.features * feature_loss(features, self.unwrap(student).teacher_features())
        return loss
