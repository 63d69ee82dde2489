"""Writing a model folder: safetensors + config.json + slimfusion.json, atomically (a temporary sibling folder
renamed into place only when complete).
"""

from __future__ import annotations

import contextlib
import glob
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from slimfusion.errors import SlimfusionError, output_error
from slimfusion.models.families import family_name
from slimfusion.models.format import FORMAT_VERSION, META_FILE, SCHEDULER_FILE, STORAGES
from slimfusion.models.meta import get_meta
from slimfusion.models.openvino import write_denoiser
from slimfusion.models.shapes import shape_overrides
from slimfusion.models.sparse_storage import SPARSE_FILE, encode
from slimfusion.version import __version__


def save(
    model: nn.Module,
    path: str | Path,
    overwrite: bool = False,
    extras: Callable[[Path], None] | None = None,
    storage: str | None = None,
) -> Path:
    """Save `model` as a diffusers-style folder plus `slimfusion.json`, atomically.

    Args:
        model (`nn.Module`): any supported model, pruned or not.
        path (`str` or `Path`): the folder to create.
        overwrite (`bool`, defaults to False): replace an existing folder (only once the new one is complete).
        extras (`Callable`, optional): writes more files (e.g. a training state) into the folder before it is
            moved into place, so they appear atomically with the weights.
        storage (`str`, optional): "dense" (diffusers' own weights file, which plain diffusers loads) or "compact"
            (sparse tensors as bitmask + non-zero values: the file shrinks with sparsity; slimfusion loads it).
            Defaults to how the model was stored when loaded, else "dense".

    Returns:
        The folder path.
    """
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if family_name(model) == "OpenVINODenoiser":  # an exported denoiser stays an exported folder
        with atomic_folder(target) as tmp:
            tmp.mkdir(parents=True)
            write_denoiser(model, tmp)
        return target
    storage = storage or get_meta(model).get("storage") or "dense"
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    with atomic_folder(target) as tmp:
        model.save_pretrained(str(tmp))
        get_meta(model)["storage"] = storage
        if storage == "compact":
            write_compact(model, tmp)
        write_meta(model, tmp)
        if extras is not None:
            extras(tmp)
    return target


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder to fill; it replaces `target` when the block ends, or is deleted on any error."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target)
    except OSError as exc:
        raise output_error(target, exc) from exc
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        replace_folder(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, SlimfusionError):
            raise
        raise output_error(target, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale(target: Path) -> None:
    """Delete what a killed earlier write to `target` left beside it (`.NAME.tmp-*`, `.NAME.old-*`): a write to one
    destination at a time is the contract, so any such sibling is a leftover."""
    leftovers = [p for kind in ("tmp", "old") for p in target.parent.glob(f".{glob.escape(target.name)}.{kind}-*")]
    for leftover in leftovers:
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink()
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def write_compact(model: nn.Module, folder: Path) -> None:
    """Replace the weights file(s) save_pretrained wrote by one compact file (see `sparse_storage`)."""
    for file in list(folder.glob("*.safetensors")) + list(folder.glob("*.safetensors.index.json")):
        file.unlink()
    tensors, metadata = encode(model.state_dict())
    save_file(tensors, str(folder / SPARSE_FILE), metadata=metadata)


def write_meta(model: nn.Module, folder: Path) -> None:
    """Write `slimfusion.json` (class, shape overrides, history, scheduler, skip plan) for `model` into `folder`."""
    meta = get_meta(model)
    record = {
        "format_version": FORMAT_VERSION,
        "slimfusion_version": __version__,
        "class": family_name(model),
        "shape_overrides": shape_overrides(model),
        "history": meta.get("history", []),
        "scheduler": meta.get("scheduler"),
        "skip_plan": meta.get("skip_plan"),
        "storage": meta.get("storage", "dense"),
    }
    if meta.get("sampler"):  # a step-distilled student: its scheduler beside it, as diffusers' from_pretrained reads it
        record["sampler"] = meta["sampler"]
        (folder / SCHEDULER_FILE).write_text(json.dumps(meta["sampler"]["config"], indent=2))
    for key in ("removed_modules", "transforms"):
        if meta.get(key):
            record[key] = meta[key]
    (folder / META_FILE).write_text(json.dumps(record, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (Path, torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"cannot record {type(value).__name__} in {META_FILE}")


def replace_folder(tmp: Path, target: Path) -> None:
    """Move a complete folder into place; an existing target is moved aside first and deleted last."""
    if not target.exists():
        tmp.rename(target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
