"""Adaptive caching's run-time decision: whether the UNet's deep part computes at this step (skip/adaptive.py).

FirstBlockCache's signal on a UNet: the first reused block of each step (the leader) always computes; how much its
output changed since the previous step, summed over the steps since the last full one, decides for the others.
"""

from __future__ import annotations

import math

import torch
from torch.utils._pytree import tree_flatten


class ChangeGate:
    """The run-time decision over one sampling run after another. `leads(step, name)`: whether `name` is the step's
    leader (the first reused block called; it runs); `observe(step, output)` with the leader's output sets `run`,
    whether the other reused blocks compute; `decisions` keeps every step's choice."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.step, self.run = -1, True
        self.leader: str | None = None
        self.previous: torch.Tensor | None = None
        self.accumulated = 0.0
        self.decisions: list[bool] = []

    @torch.compiler.disable  # Python state: kept out of compiled graphs
    def leads(self, step: int, name: str) -> bool:
        if step != self.step and (self.leader is None or name == self.leader):
            self.leader = name
            return True
        return False

    @torch.compiler.disable  # Python floats and a data-dependent branch: kept out of compiled graphs
    def observe(self, step: int, output) -> None:
        x = next(t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor))
        change = math.inf
        if step > 0 and self.previous is not None and self.previous.shape == x.shape:
            change = float((x - self.previous).abs().mean() / self.previous.abs().mean().clamp_min(1e-12))
        self.step, self.previous = step, x.detach()
        self.accumulated += change
        self.run = step == 0 or self.accumulated >= self.threshold
        if self.run:
            self.accumulated = 0.0
        self.decisions.append(self.run)


def kept_share(decisions: list[bool], saved: float) -> float:
    """Kept share of the sampling MACs when each reused step saves `saved` of one forward's MACs."""
    return 1.0 - saved * decisions.count(False) / max(1, len(decisions))
