"""Adaptive caching: at run time, how much the deep part's first block output changed decides whether the rest runs.

FirstBlockCache style, on DeepCache's branch: the shallow part runs at every step, and so does the first reused block
(the leader); the relative L1 change of the leader's output since the previous step is accumulated, and while the sum
stays under a threshold the rest of the deep part returns its output from the last full step (then the sum
restarts). (The change of the leader's *input* was tried first: it reuses at the early high-noise steps, where x_t
barely moves but the image's layout forms, and at 0.35 of the MACs on DDIM 50 cost FD +23.) The threshold is fitted
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
from slimfusion.skip.graph import unit_macs
from slimfusion.skip.hooks import adaptive_state, hooked, hooked_units

BISECTIONS = 16  # log-threshold steps: 16 / 2^16 apart at the end, finer than one step's share of the MACs


def fit_threshold(
    model: nn.Module,
    scheduler,
    noise: torch.Tensor,
    predict: Callable,
    hooked_blocks: list[str],
    macs: dict[str, float],
    total: float,
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
        return kept_share(state.gate.decisions, saved_share(hooked_blocks, state.gate.leader, macs, total))

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


def saved_share(blocks: list[str], leader: str | None, macs: dict[str, float], total: float) -> float:
    """What one reused step saves of a forward's MACs: the hooked blocks but the leader, which always runs."""
    return sum(macs[b] for b in blocks if b != leader) / total


def measured_kept(model: nn.Module, plan, gate) -> float:
    """Kept share of the sampling MACs of the runs an adaptive plan's gate decided (`state.gate`)."""
    macs, total = unit_macs(model, plan.units)
    return kept_share(gate.decisions, saved_share(hooked_units(plan), gate.leader, macs, total))
