"""Module-tree changes a diffusers config cannot describe (low-rank pairs, quantized layers), replayed on load.

Each technique appends one entry {"kind": ..., ...} to the model's meta "transforms"; `slimfusion.json` stores the
list, and loading builds the config's architecture, calls each kind's `rebuild` (the shapes the weights need) before
the strict weight load and its `finish` (e.g. re-attaching dtype casts, compiling) after it.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from slimfusion.errors import CorruptFileError
from slimfusion.models.meta import get_meta

KINDS = {"lowrank": "slimfusion.lowrank", "quantize": "slimfusion.quantize"}  # kind -> module with rebuild / finish


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule `name` is (an attribute, or an item of a ModuleList / Sequential)."""
    parent, _, last = name.rpartition(".")
    holder = model.get_submodule(parent) if parent else model
    if last.isdigit():
        holder[int(last)] = new
    else:
        setattr(holder, last, new)


def transforms_of(model: nn.Module) -> list[dict[str, Any]]:
    return get_meta(model).get("transforms", [])


def add_transform(model: nn.Module, entry: dict[str, Any]) -> None:
    get_meta(model).setdefault("transforms", []).append(entry)


def _module(entry: dict[str, Any]):
    kind = entry.get("kind")
    if kind not in KINDS:
        raise CorruptFileError(f"slimfusion.json: unknown transform {kind!r}; known: {', '.join(KINDS)}")
    return importlib.import_module(KINDS[kind])


def rebuild_all(model: nn.Module, transforms: list[dict[str, Any]]) -> None:
    """Before loading weights: give a fresh build the module tree the saved model had."""
    for entry in transforms:
        try:
            _module(entry).rebuild(model, entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"slimfusion.json: transform {entry.get('kind')!r} does not fit: {exc}") from exc


def finish_all(model: nn.Module, transforms: list[dict[str, Any]]) -> None:
    """After loading weights: what each transform does at run time (dtype casts, compilation)."""
    for entry in transforms:
        finish = getattr(_module(entry), "finish", None)
        if finish is not None:
            finish(model, entry)
