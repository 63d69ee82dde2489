"""Adaptive caching's run-time decision: whether the UNet's deep part computes at this step (skip/adaptive.py)."""

from __future__ import annotations

import math

import torch


class ChangeGate:
    """The run-time decision of one sampling run after another: `observe(step, x)` with the first reused block's
    input; `run` says whether the deep part computes at this step; `decisions` keeps every step's choice."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.step, self.run = -1, True
        self.previous: torch.Tensor | None = None
        self.accumulated = 0.0
        self.decisions: list[bool] = []

    @torch.compiler.disable  # Python floats and a data-dependent branch: kept out of compiled graphs
    def observe(self, step: int, x: torch.Tensor) -> None:
        if step == self.step:  # decided at this step's first reused block
            return
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
