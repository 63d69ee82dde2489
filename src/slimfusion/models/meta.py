"""slimfusion's metadata carried on a model object: compression history, scheduler config, where it came from.

Kept in one plain dict attribute so that `copy.deepcopy` and `save` carry it along without touching the module tree.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

ATTR = "_slimfusion_meta"


def get_meta(model: nn.Module) -> dict[str, Any]:
    """The metadata dict of a model (created empty on first use)."""
    meta = model.__dict__.get(ATTR)
    if meta is None:
        meta = {"history": [], "scheduler": None, "source": None}
        model.__dict__[ATTR] = meta
    return meta


def set_meta(model: nn.Module, meta: dict[str, Any]) -> None:
    model.__dict__[ATTR] = copy.deepcopy(meta)


def history(model: nn.Module) -> list[dict[str, Any]]:
    """The list of compression / training steps applied to this model, oldest first."""
    return get_meta(model)["history"]


def record_step(model: nn.Module, step: str, config: dict[str, Any], effect: dict[str, Any]) -> None:
    """Append one step (its name, the config it ran with, its measured effect) to the model's history."""
    history(model).append({"step": step, "config": config, "effect": effect})


def original_source(model: nn.Module) -> str | None:
    """Where the uncompressed original of this model came from (the first step that recorded `pruned_from`)."""
    for step in history(model):
        source = step.get("effect", {}).get("pruned_from")
        if source:
            return source
    return None
