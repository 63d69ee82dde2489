"""`DigitClassifier`: the small CNN behind `builtin:digits-features` (offline Frechet distance and class accuracy)."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class DigitClassifier(ModelMixin, ConfigMixin):
    """Three conv stages and a linear head; `features()` gives the pooled penultimate activations.

    A diffusers `ModelMixin` so that it saves and loads like any other model in a diffusers folder.

    Args:
        in_channels (`int`, defaults to 1): image channels.
        num_classes (`int`, defaults to 10): output classes.
        widths (`tuple[int, ...]`, defaults to (32, 64, 128)): channels of the three conv stages; the last is the
            feature dimension.
    """

    @register_to_config
    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(prev, width, 3, stride=stride, padding=1), nn.GroupNorm(8, width), nn.SiLU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU()]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features [N, widths[-1]] of images in [-1, 1]."""
        return self.body(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
