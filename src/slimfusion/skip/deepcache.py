"""DeepCache (CVPR 2024) as a skip plan: full steps at a fixed (or quadratic) schedule; in between, only the shallow
branch of the UNet runs and everything deeper returns its output from the last full step.

Faithful to the reference `DeepCacheSDHelper`: branch b means block b // 3, layer b % 3; down-path layers from that
layer on and up-path layers after it are reused, as are the mid block and every deeper block. The numbering of the
up path runs from the output end, as in the reference. UNets only (DiT has no U-shaped shallow branch).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from slimfusion.errors import ConfigError


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
    if not hasattr(model, "up_blocks"):
        raise ConfigError(f"DeepCache needs a UNet; {type(model).__name__} has no up blocks")
    cache_block, cache_layer = divmod(branch, 3)
    if cache_block >= len(model.down_blocks):
        raise ConfigError(f"branch {branch} is deeper than the UNet's {len(model.down_blocks)} blocks x 3 layers")

    def skip(block: int, layer: int, kind: str) -> bool:
        if block > cache_block or kind == "mid":
            return True
        if block < cache_block:
            return False
        return layer >= cache_layer if kind == "down" else layer > cache_layer

    reused = ["mid_block"]
    for i, block in enumerate(model.down_blocks):
        resnets = len(block.resnets)
        parts = [("attentions", j, j) for j in range(len(getattr(block, "attentions", None) or []))]
        parts += [("resnets", j, j) for j in range(resnets)]
        parts += [("downsamplers", j, resnets) for j in range(len(block.downsamplers or []))]
        reused += [f"down_blocks.{i}.{p}.{j}" for p, j, layer in parts if skip(i, layer, "down")]
        if skip(i, 0, "down"):
            reused.append(f"down_blocks.{i}")
    count = len(model.up_blocks)
    for k, block in enumerate(model.up_blocks):
        i, layers = count - k - 1, len(block.resnets)
        parts = [("attentions", j, layers - j - 1) for j in range(len(getattr(block, "attentions", None) or []))]
        parts += [("resnets", j, layers - j - 1) for j in range(layers)]
        parts += [("upsamplers", j, 0) for j in range(len(block.upsamplers or []))]
        reused += [f"up_blocks.{k}.{p}.{j}" for p, j, layer in parts if skip(i, layer, "up")]
        if skip(i, 0, "up"):
            reused.append(f"up_blocks.{k}")
    return sorted(reused)


def deepcache_reuse(
    model: nn.Module, steps: int, interval: int, branch: int, uniform: bool = True, center: int | None = None
) -> list[list[str]]:
    """Per step: nothing at full steps, the branch's reused blocks at cached steps."""
    full = set(full_steps(steps, interval, uniform, center))
    cached = branch_reuse(model, branch)
    return [[] if s in full else list(cached) for s in range(steps)]
