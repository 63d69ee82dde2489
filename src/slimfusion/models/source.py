"""Finding a model: a folder, a pipeline folder's component, `builtin:NAME` or a Hugging Face hub id."""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from torch import nn

from slimfusion.errors import ModelNotFoundError, NotAModelError
from slimfusion.models.families import FAMILIES, build
from slimfusion.models.families.pipeline import denoiser_component
from slimfusion.models.meta import get_meta
from slimfusion.models.openvino import is_openvino_folder, load_openvino
from slimfusion.models.reading import _read_json, load_model_folder
from slimfusion.models.zoo import BUILTINS, PREFIX, REFERENCE_SEED, builtin_folder


def load(source: str | Path, component: str | None = None) -> nn.Module:
    """Load a model from a folder, a pipeline folder, `builtin:NAME` or a Hugging Face hub id.

    Args:
        source (`str` or `Path`): a diffusers / transformers model folder (config.json + safetensors), a pipeline
            folder (model_index.json), `builtin:NAME` (see `slimfusion.models.zoo.BUILTINS`) or a hub id.
        component (`str`, optional): for pipelines, the sub-folder to load; defaults to the denoiser
            ("unet" or "transformer").

    Returns:
        The model in eval mode, in float32 on the CPU, with its slimfusion metadata (history, scheduler) attached.
    """
    text = str(source)
    if text.startswith(PREFIX):
        return _load_builtin(text[len(PREFIX) :], component)
    path = Path(text).expanduser()
    if path.exists():
        return _load_path(path, component)
    if _looks_like_hub_id(text):
        return _load_hub(text, component)
    raise ModelNotFoundError(f"model not found: {text} (no such folder, builtin:NAME or hub id)")


def check_source(source: str | Path) -> None:
    """Refuse, without loading anything, a source that is no folder, no known builtin:NAME and no hub id."""
    text = str(source)
    if text.startswith(PREFIX):
        if text[len(PREFIX) :] not in BUILTINS:
            name = text[len(PREFIX) :]
            raise ModelNotFoundError(f"unknown builtin:{name}; available: {', '.join(PREFIX + n for n in BUILTINS)}")
        return
    if not Path(text).expanduser().exists() and not _looks_like_hub_id(text):
        raise ModelNotFoundError(f"model not found: {text} (no such folder, builtin:NAME or hub id)")


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def _load_builtin(name: str, component: str | None = None) -> nn.Module:
    spec = BUILTINS.get(name)
    if spec is None:
        raise ModelNotFoundError(f"unknown builtin:{name}; available: {', '.join(PREFIX + n for n in BUILTINS)}")
    if spec.shipped:
        folder = builtin_path(name)
        model = _load_path(folder, component)
    else:
        torch.manual_seed(REFERENCE_SEED)
        model = build(FAMILIES[spec.class_name], spec.config).eval()
    get_meta(model)["source"] = PREFIX + name
    return model


def builtin_path(name: str) -> Path:
    """The shipped folder of a trained built-in (a model or a pipeline folder); refuses a missing one."""
    folder = builtin_folder(name)
    if not ((folder / "config.json").exists() or (folder / "model_index.json").exists()):
        raise ModelNotFoundError(f"builtin:{name} weights are missing from this install ({folder})")
    return folder


def hub_folder(repo_id: str) -> Path:
    """The local copy of a hub repository's configs and safetensors (never pickles); one line when it cannot be got."""
    try:
        folder = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as exc:  # offline, unknown repo, gated repo: all mean "cannot get it"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(f"cannot fetch hub id {repo_id} ({reason}); offline? pass a local folder") from exc
    return Path(folder)


def _load_hub(repo_id: str, component: str | None) -> nn.Module:
    return _load_path(hub_folder(repo_id), component)


def _load_path(path: Path, component: str | None) -> nn.Module:
    if path.is_file():
        raise NotAModelError(f"{path} is a file; pass the model folder that holds config.json")
    if (path / "model_index.json").exists():
        return _load_pipeline_component(path, component)
    if component is not None:
        raise NotAModelError(f"{path} is not a pipeline folder (no model_index.json); drop --component")
    if is_openvino_folder(path):
        return load_openvino(path)
    if not (path / "config.json").exists():
        raise NotAModelError(f"{path} is not a model folder: no config.json or model_index.json")
    model = load_model_folder(path)
    get_meta(model)["source"] = str(path)
    return model


def _load_pipeline_component(path: Path, component: str | None) -> nn.Module:
    index = _read_json(path / "model_index.json")
    if component is None:
        component = denoiser_component(index)
        if component is None:
            raise NotAModelError(f"{path}: pipeline has no unet or transformer; choose a component")
    if component not in index or not (path / component / "config.json").exists():
        raise NotAModelError(f"{path}: pipeline has no component {component!r}")
    model = load_model_folder(path / component)
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    meta = get_meta(model)
    if scheduler_file.exists() and meta.get("scheduler") is None:
        meta["scheduler"] = _read_json(scheduler_file)
    meta["source"] = f"{path}#{component}"
    return model
