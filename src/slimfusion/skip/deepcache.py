"""DeepCache (CVPR 2024) as a skip plan: full steps at a fixed (or quadratic) schedule; in between, only the shallow
branch of the UNet runs and everything deeper returns its output from the last full step.

Faithful to the reference `DeepCacheSDHelper` (the branch layout is the UNet family's `cache_branch`, in
models/families/unet.py). UNets only (DiT has no U-shaped shallow branch).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.families import family_of


def full_steps(steps: int, interval: int, uniform: bool = True, center: int | None = None, power: float = 1.4):
    """Indices of the steps that run the whole UNet.

    Uniform: every `interval`-th step from 0. Non-uniform (the paper's schedule): as many full steps as the uniform
    one, spaced by a power law around `center` (denser there), the power lowered until they are distinct.
    """
    if interval < 1:
        raise ConfigError(f"cache interval must be >= 1, got {interval}")
    if uniform or interval == 1:
        return list(range(0, steps, interval))
    count = -(-steps // interval)
    center = steps // 2 if center is None else center
    if not 0 < center < steps:
        raise ConfigError(f"center must lie inside (0, {steps}), got {center}")
    while power > 1:
        # sign-preserving power, so the spacing is symmetric about the center (the reference's negative base
        # raised to a fractional power is complex-valued in Python)
        x = np.linspace(-(center ** (1 / power)), (steps - center) ** (1 / power), count + 1)
        picks = [0] + [int(v) + center for v in np.unique(np.trunc(np.sign(x) * np.abs(x) ** power))[1:-1]]
        picks = sorted(set(p for p in picks if 0 <= p < steps))
        if len(picks) == count:
            return picks
        power -= 0.02
    raise ConfigError(f"no non-uniform schedule of {count} full steps in {steps} steps; use --uniform")


def branch_reuse(model: nn.Module, branch: int) -> list[str]:
    """The blocks DeepCache reuses at a cached step for skip branch `branch` (its `cache_branch_id`)."""
    layout = family_of(model).cache_branch
    if layout is None:
        raise ConfigError(f"DeepCache needs a UNet; {type(model).__name__} has no up blocks")
    return layout(model, branch)


def deepcache_reuse(
    model: nn.Module, steps: int, interval: int, branch: int, uniform: bool = True, center: int | None = None
) -> list[list[str]]:
    """Per step: nothing at full steps, the branch's reused blocks at cached steps."""
    full = set(full_steps(steps, interval, uniform, center))
    cached = branch_reuse(model, branch)
    return [[] if s in full else list(cached) for s in range(steps)]
