"""`slimfusion info`: what a model is and what it costs, as a JSON-able dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimfusion.metrics.cost import cost_summary, folder_bytes
from slimfusion.models.families import example_inputs, family_name
from slimfusion.models.io import load
from slimfusion.models.meta import get_meta
from slimfusion.models.zoo import PREFIX, builtin_folder
from slimfusion.sparsify import sparsity_of


def _saved_folder(source: str) -> Path | None:
    if source.startswith(PREFIX):
        folder = builtin_folder(source[len(PREFIX) :])
        return folder if folder.exists() else None
    path = Path(source.split("#")[0])
    return path if path.is_dir() else None


def model_info(source: str, component: str | None = None) -> dict[str, Any]:
    """Class, source, params, macs, macs_all (batch 1), input shapes, file bytes and history of a model."""
    model = load(source, component)
    meta = get_meta(model)
    folder = _saved_folder(str(meta.get("source") or source))
    shapes = {k: list(v.shape) for k, v in example_inputs(model, 1).items()}
    return {
        "class": family_name(model),
        "source": meta.get("source") or source,
        **cost_summary(model, batch=1),
        "input": ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items()),
        "input_shapes": shapes,
        "file_bytes": folder_bytes(folder) if folder else None,
        "history": meta.get("history", []),
        "transforms": meta.get("transforms", []),
        "skip_plan": _plan_summary(meta.get("skip_plan")),
        "sampler": {k: v for k, v in (meta.get("sampler") or {}).items() if k != "config"} or None,
        "sparsity": sparsity_of(model),
        "storage": meta.get("storage", "dense"),
    }


def _plan_summary(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """What `info` says of a stored skip plan: method, scheduler, steps, kept MACs share."""
    if not plan:
        return None
    return {k: plan[k] for k in ("method", "scheduler", "steps", "macs_ratio")}
