"""Reading a model folder: config.json + safetensors (+ slimfusion.json) rebuilt with its exact shapes, strictly.

Every file read here is checked before it is trusted; no pickle is ever read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from slimfusion.errors import CorruptFileError, FormatVersionError, NotAModelError
from slimfusion.models.families import FAMILIES, build
from slimfusion.models.format import FORMAT_VERSION, META_FILE, PICKLE_SUFFIXES, RECORDED
from slimfusion.models.meta import set_meta
from slimfusion.models.record import check_record
from slimfusion.models.shapes import _apply_overrides, _resize_explained_tensors, replay_removals
from slimfusion.models.sparse_storage import decode
from slimfusion.models.transforms import finish_all, rebuild_all
from slimfusion.version import __version__


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path}: expected a JSON object")
    return data


def read_slimfusion_json(folder: Path) -> dict[str, Any] | None:
    """The parsed `slimfusion.json` of a folder, or None; refuses files from a newer format version."""
    file = folder / META_FILE
    if not file.exists():
        return None
    data = _read_json(file)
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CorruptFileError(f"{file}: missing integer format_version")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{file} has format version {version}; this slimfusion {__version__} reads up to {FORMAT_VERSION}: upgrade"
        )
    check_record(data, file)
    return data


def load_model_folder(path: Path) -> nn.Module:
    """One model folder (config.json + safetensors [+ slimfusion.json]) rebuilt with its exact shapes."""
    config = _read_json(path / "config.json")
    meta = read_slimfusion_json(path)
    class_name = (meta or {}).get("class") or config.get("_class_name") or (config.get("architectures") or [None])[0]
    if class_name not in FAMILIES:
        raise NotAModelError(f"{path}: unsupported model class {class_name!r}; supported: {', '.join(FAMILIES)}")
    model = build(FAMILIES[class_name], config)
    state = _read_weights(path)
    if FAMILIES[class_name].library == "transformers":
        state = _strip_legacy_prefix(state, model)
    replay_removals(model, (meta or {}).get("removed_modules", []))
    rebuild_all(model, (meta or {}).get("transforms", []))
    overrides = (meta or {}).get("shape_overrides", {})
    _apply_overrides(model, overrides)
    _resize_explained_tensors(model, state, overrides, path)
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and v.is_floating_point() != own[k].is_floating_point()]
    if wrong:  # load_state_dict would cast integers into float weights without a word
        raise CorruptFileError(f"{path}: {wrong[0]} is stored as {state[wrong[0]].dtype}, the model needs floats")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CorruptFileError(f"{path}: weights do not match config.json: {detail}") from exc
    model.eval()
    finish_all(model, (meta or {}).get("transforms", []))
    set_meta(model, {"history": [], "scheduler": None, "source": str(path)} | _meta_fields(meta))
    return model


def _strip_legacy_prefix(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Checkpoints from transformers < 5 nest CLIP's text model as `text_model.`; newer classes do not."""
    own = model.state_dict()
    prefix = "text_model."
    if any(k in own for k in state) or not all(k.startswith(prefix) for k in state):
        return state
    return {k[len(prefix) :]: v for k, v in state.items()}


def _meta_fields(meta: dict[str, Any] | None) -> dict[str, Any]:
    if not meta:
        return {}
    return {k: meta[k] for k in (*RECORDED, "removed_modules", "transforms") if k in meta}


def _weight_files(path: Path) -> list[Path]:
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = _read_json(indexes[0]).get("weight_map", {})
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        outside = [s for s in shards if not isinstance(s, str) or (path / s).resolve().parent != path.resolve()]
        if outside or not shards:
            raise CorruptFileError(f"{indexes[0]}: shard names must be files inside the model folder (got {outside})")
        missing = [s for s in shards if not (path / s).exists()]
        if missing:
            raise CorruptFileError(f"{path}: shard(s) listed in {indexes[0].name} are missing: {', '.join(missing)}")
        return [path / s for s in shards]
    files = sorted(p for p in path.glob("*.safetensors") if ".fp16." not in p.name)
    if files:
        return files
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise NotAModelError(
            f"{path}: weights are pickle files ({', '.join(pickles)}); slimfusion loads safetensors only - "
            "convert them with diffusers' save_pretrained(safe_serialization=True)"
        )
    raise NotAModelError(f"{path}: no *.safetensors weights next to config.json")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(path):
        try:
            with safe_open(str(file), framework="pt") as handle:
                metadata = handle.metadata()
            state.update(decode(load_file(str(file), device="cpu"), metadata))
        except Exception as exc:  # safetensors raises several types for truncated / corrupt files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CorruptFileError(f"{file}: corrupt or truncated safetensors file ({reason})") from exc
    return state
