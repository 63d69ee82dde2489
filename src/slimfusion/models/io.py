"""Pickle-free model I/O: diffusers-style folders (config.json + safetensors) plus `slimfusion.json`.

`slimfusion.json` records what the diffusers config cannot: the per-module attributes that compression changed
(channel and head counts), the history of steps, and the scheduler. `load` rebuilds the architecture from
config.json, re-applies those attributes, resizes exactly the tensors they explain, and loads the weights strictly.
Every save goes to a temporary sibling folder that is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from slimfusion import __version__
from slimfusion.errors import CorruptFileError, FormatVersionError, ModelNotFoundError, NotAModelError
from slimfusion.models.families import FAMILIES, build, family_name
from slimfusion.models.meta import get_meta, set_meta
from slimfusion.models.sparse_storage import SPARSE_FILE, decode, encode
from slimfusion.models.transforms import finish_all, rebuild_all, transforms_of
from slimfusion.models.zoo import BUILTINS, PREFIX, REFERENCE_SEED, builtin_folder

FORMAT_VERSION = 1
META_FILE = "slimfusion.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_SIMPLE = (bool, int, float, str, type(None))
STORAGES = ("dense", "compact")
RECORDED = ("history", "scheduler", "skip_plan", "storage")


# ----------------------------------------------------------------------------------------------------------- load
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


def _load_hub(repo_id: str, component: str | None) -> nn.Module:
    try:
        folder = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as exc:  # offline, unknown repo, gated repo: all mean "cannot get it"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(f"cannot fetch hub id {repo_id} ({reason}); offline? pass a local folder") from exc
    return _load_path(Path(folder), component)


def _load_path(path: Path, component: str | None) -> nn.Module:
    if path.is_file():
        raise NotAModelError(f"{path} is a file; pass the model folder that holds config.json")
    if (path / "model_index.json").exists():
        return _load_pipeline_component(path, component)
    if component is not None:
        raise NotAModelError(f"{path} is not a pipeline folder (no model_index.json); drop --component")
    if not (path / "config.json").exists():
        raise NotAModelError(f"{path} is not a model folder: no config.json or model_index.json")
    model = load_model_folder(path)
    get_meta(model)["source"] = str(path)
    return model


def _load_pipeline_component(path: Path, component: str | None) -> nn.Module:
    index = _read_json(path / "model_index.json")
    if component is None:
        component = next((c for c in ("unet", "transformer") if c in index), None)
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


def _weight_files(path: Path) -> list[Path]:
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        shards = sorted(set(_read_json(indexes[0]).get("weight_map", {}).values()))
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


# -------------------------------------------------------------------------------------------- shape overrides
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


# ----------------------------------------------------------------------------------------------------------- save
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
    family_name(model)  # refuse unsupported classes before anything is written
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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
