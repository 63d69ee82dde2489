"""Knowledge distillation from the original model: output (noise prediction) and feature (block output) terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.hooks import tap
from slimfusion.models.families import distill_blocks, example_inputs, family_of


def output_loss(
    student: torch.Tensor, noise: torch.Tensor, teacher: torch.Tensor | None, weight: float
) -> torch.Tensor:
    """W x |eps_teacher - eps_student|^2 + (1 - W) x |eps - eps_student|^2 (plain DDPM loss when W = 0)."""
    plain = F.mse_loss(student, noise)
    if teacher is None or weight == 0:
        return plain
    return weight * F.mse_loss(student, teacher) + (1 - weight) * plain


def feature_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over blocks of the MSE between (adapted) student and teacher block outputs."""
    return torch.stack([F.mse_loss(s, t) for s, t in zip(student, teacher, strict=True)]).mean()


class _Tap:
    """Hooks that keep the latest output of each named block (first element when a block returns a tuple)."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        self.outputs: dict[str, torch.Tensor] = {}
        self.removers = [tap(modules[n], f"slimfusion_feature_tap:{id(self)}", after=self._keep(n)) for n in names]
        self.names = names

    def _keep(self, name: str):
        def hook(_module, output):
            self.outputs[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def take(self) -> list[torch.Tensor]:
        out = [self.outputs.pop(n) for n in self.names]
        return out

    def remove(self) -> None:
        for remove in self.removers:
            remove()


class Student(nn.Module):
    """The model being trained plus adapters (1x1 convs, or linears on token features) that map its (pruned) block
    widths to the teacher's.

    One module so that Accelerate / DDP synchronises the adapters' gradients with the model's; the adapters are
    thrown away after training (FitNets-style hints: a thinner student cannot be compared channel by channel).
    """

    def __init__(self, model: nn.Module, teacher: nn.Module | None = None, features: bool = False):
        super().__init__()
        self.model = model
        self._denoise = family_of(model).denoise
        self.adapters = nn.ModuleDict()
        self._student_tap = self._teacher_tap = None
        if not features:
            return
        if teacher is None:
            raise ConfigError("feature distillation needs a teacher (--teacher)")
        names = distill_blocks(model)
        self._student_tap, self._teacher_tap = _Tap(model, names), _Tap(teacher, names)
        probe = example_inputs(model, 1)
        with torch.no_grad():
            model(**probe)
            teacher(**probe)
        for name, s, t in zip(names, self._student_tap.take(), self._teacher_tap.take(), strict=True):
            self.adapters[name.replace(".", "_")] = _adapter(s, t)

    def forward(
        self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pred = self._denoise(self.model, noisy, t, cond)
        if self._student_tap is None:
            return pred, []
        return pred, [adapter(f) for adapter, f in zip(self.adapters.values(), self._student_tap.take(), strict=True)]

    def teacher_features(self) -> list[torch.Tensor]:
        """The teacher's block outputs from its latest forward (call the teacher first)."""
        return self._teacher_tap.take() if self._teacher_tap is not None else []

    def close(self) -> None:
        for taps in (self._student_tap, self._teacher_tap):
            if taps is not None:
                taps.remove()


def _adapter(student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
    """Identity when widths agree; else a 1x1 conv for feature maps [N, C, H, W], a linear for tokens [N, L, D]."""
    if student.shape == teacher.shape:
        return nn.Identity()
    if student.ndim == 4:
        return nn.Conv2d(student.shape[1], teacher.shape[1], 1, bias=False)
    return nn.Linear(student.shape[-1], teacher.shape[-1], bias=False)
