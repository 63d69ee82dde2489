"""Adaptive caching: at run time, how much the input of the UNet's deep part changed decides whether it runs.

FirstBlockCache / TeaCache style, on DeepCache's branch: the shallow part runs at every step; at each step the relative
L1 change of the first reused block's input since the previous step is accumulated, and while the sum stays under a
threshold the deep part returns its output from the last full step (then the sum restarts). The threshold is fitted
by bisection to a kept-MACs target on calibration noises; the MACs a run really kept are counted from its decisions.
Hand-written: diffusers' FirstBlockCache hooks transformer blocks and keys on the first block's output residual; a
UNet's deep part is a set of nested blocks with skip connections, which the plan format and hooks already handle.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from slimfusion.diffusion import run_chain
from slimfusion.skip.gate import kept_share
from slimfusion.skip.graph import kept_macs_ratio, unit_macs
from slimfusion.skip.hooks import adaptive_state, hooked

BISECTIONS = 16  # log-threshold steps: 16 / 2^16 apart at the end, finer than one step's share of the MACs


def fit_threshold(
    model: nn.Module,
    scheduler,
    noise: torch.Tensor,
    predict: Callable,
    hooked_blocks: list[str],
    saved: float,
    target: float,
    batch_size: int,
) -> tuple[float, float]:
    """The threshold whose calibration runs keep the share of the MACs closest to `target`: (threshold, share).

    The kept share falls in steps of one reused step's saving as the threshold rises; bisection finds the edge where
    it crosses `target`, and the nearer side of the edge wins. The noises run in batches of `batch_size`, each its
    own run of decisions: the share is their mean, finer than one run's steps."""

    def kept_at(threshold: float) -> float:
        state = adaptive_state(len(scheduler.timesteps), hooked_blocks, threshold)
        with torch.no_grad(), hooked(model, hooked_blocks, state):
            for chunk in noise.split(batch_size):
                run_chain(scheduler, chunk, predict)
        return kept_share(state.gate.decisions, saved)

    low, high = -12.0, 4.0  # log thresholds: e^-12 reuses nothing, e^4 reuses every step after the first
    above, below = (math.exp(low), kept_at(math.exp(low))), (math.exp(high), kept_at(math.exp(high)))
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        kept = kept_at(math.exp(middle))
        if kept >= target:
            low, above = middle, (math.exp(middle), kept)
        else:
            high, below = middle, (math.exp(middle), kept)
    return above if above[1] - target <= target - below[1] else below


def measured_kept(model: nn.Module, plan, decisions: list[bool]) -> float:
    """Kept share of the sampling MACs of the runs an adaptive plan's gate decided (`state.gate.decisions`)."""
    macs, total = unit_macs(model, plan.units)
    return kept_share(decisions, 1.0 - kept_macs_ratio([plan.reuse[-1]], macs, total))
