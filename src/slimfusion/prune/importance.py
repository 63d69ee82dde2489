"""The importance criteria: one registry entry per method, each a Torch-Pruning importance plus how to calibrate.

A new method is one new `Method` entry in `METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch_pruning as tp

Gradients = Literal["none", "all-timesteps", "threshold"]


@dataclass(frozen=True)
class Method:
    """One pruning method.

    Args:
        importance (`Callable`): builds the Torch-Pruning importance (called once per run).
        gradients (`str`): "none"; "all-timesteps" (sum gradients over every timestep); "threshold" (Diff-Pruning:
            t = 0, 1, ... until the loss drops below threshold x max loss).
        reinit (`bool`): re-initialise all weights after pruning (the train-from-scratch baseline).
        description (`str`): one line for docs and `--help`.
    """

    importance: Callable[[], tp.importance.Importance]
    gradients: Gradients
    reinit: bool
    description: str


METHODS: dict[str, Method] = {
    "random": Method(tp.importance.RandomImportance, "none", False, "random channels"),
    "magnitude": Method(lambda: tp.importance.GroupMagnitudeImportance(p=2), "none", False, "group L2 norm"),
    "taylor": Method(
        lambda: tp.importance.GroupTaylorImportance(multivariable=True),
        "all-timesteps",
        False,
        "|sum w*g|, gradients of the noise-prediction loss summed over all timesteps",
    ),
    "diff-pruning": Method(
        lambda: tp.importance.GroupTaylorImportance(multivariable=False),
        "threshold",
        False,
        "sum |w*g| over the informative low-noise timesteps only (Fang et al., NeurIPS 2023)",
    ),
    "reinit": Method(tp.importance.RandomImportance, "none", True, "random channels, then re-initialised weights"),
}
