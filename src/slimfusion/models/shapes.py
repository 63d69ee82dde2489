"""Shape overrides: the per-module attributes compression changed (channel and head counts), saved and re-applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimfusion.errors import CorruptFileError, NotAModelError
from slimfusion.models.families import FAMILIES, build, family_name
from slimfusion.models.format import META_FILE
from slimfusion.models.meta import get_meta
from slimfusion.models.transforms import rebuild_all, transforms_of

_SIMPLE = (bool, int, float, str, type(None))


def _simple_attrs(module: nn.Module) -> dict[str, Any]:
    """Public attributes of plain JSON-able values (channel counts, head counts, eps, ...) of one module."""
    out = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _SIMPLE) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, _SIMPLE) for v in value)
        ):
            out[key] = value
    return out


def shape_overrides(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-module attributes of `model` that differ from a fresh build of its config (what pruning changed)."""
    with torch.device("meta"):
        family = FAMILIES[family_name(model)]
        fresh = build(family, family.config_dict(model))
        replay_removals(fresh, get_meta(model).get("removed_modules", []))
        rebuild_all(fresh, transforms_of(model))
    fresh_modules = dict(fresh.named_modules())
    overrides: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        ref = fresh_modules.get(name)
        if ref is None or type(ref) is not type(module):
            raise NotAModelError(
                f"module {name or '<root>'} ({type(module).__name__}) is not part of the config's architecture; "
                "this slimfusion version saves only models whose module tree matches their config"
            )
        ref_attrs = _simple_attrs(ref)
        changed = {k: v for k, v in _simple_attrs(module).items() if k in ref_attrs and ref_attrs[k] != v}
        if changed:
            overrides[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}
    return overrides


def _apply_overrides(model: nn.Module, overrides: dict[str, dict[str, Any]]) -> None:
    modules = dict(model.named_modules())
    for name, attrs in overrides.items():
        module = modules.get(name)
        if module is None:
            raise CorruptFileError(f"{META_FILE}: shape override names unknown module {name!r}")
        for key, value in attrs.items():
            current = getattr(module, key, None)
            setattr(module, key, tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value)


def _resize_explained_tensors(
    model: nn.Module, state: dict[str, torch.Tensor], overrides: dict[str, Any], path: Path
) -> None:
    """Give parameters and buffers the saved shapes, but only in modules whose overrides explain the change."""
    modules = dict(model.named_modules())
    own = model.state_dict(keep_vars=True)
    for key, tensor in state.items():
        current = own.get(key)
        if current is None or current.shape == tensor.shape:
            continue  # unknown keys and true mismatches are reported by the strict load
        module_name, _, attr = key.rpartition(".")
        if module_name not in overrides:
            raise CorruptFileError(
                f"{path}: tensor {key} has shape {tuple(tensor.shape)} but the config gives {tuple(current.shape)}"
            )
        module = modules[module_name]
        empty = torch.empty(tensor.shape, dtype=current.dtype)
        if attr in module._parameters:
            module._parameters[attr] = nn.Parameter(empty, requires_grad=current.requires_grad)
        else:
            module._buffers[attr] = empty


def replay_removals(model: nn.Module, steps: list[list[str]]) -> None:
    """Delete the modules depth pruning removed where the config cannot say it: each step's list of module-list
    items (indices as that step saw them, highest first) or whole blocks (set to None), in order."""
    for removed in steps:
        for path in sorted(removed, key=_removal_order):
            parent, _, last = path.rpartition(".")
            try:
                holder = model.get_submodule(parent) if parent else model
                if last.isdigit():
                    del holder[int(last)]
                else:
                    setattr(holder, last, None)
            except (AttributeError, IndexError, TypeError) as exc:
                raise CorruptFileError(f"{META_FILE}: removed module {path!r} is not in the architecture") from exc


def _removal_order(path: str) -> tuple[str, int]:
    """Sort key that deletes the highest index of each module list first (lower indices stay valid)."""
    parent, _, last = path.rpartition(".")
    return (parent, -int(last)) if last.isdigit() else (path, 0)
