"""Pipelines as users hold them: diffusers pipeline objects whose model components go through slimfusion's format.

`load_pipeline` returns the diffusers pipeline class named in `model_index.json` (`StableDiffusionPipeline`,
`DiTPipeline`, `DDPMPipeline`, ...) with every supported model component rebuilt by `slimfusion.load`'s code, so a
pruned UNet or text encoder comes back with its exact shapes; tokenizers and schedulers load as diffusers loads them.
`save_pipeline` writes a pipeline folder that plain diffusers loads, plus `slimfusion.json` in every model component.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import diffusers
from torch import nn

from slimfusion.errors import CorruptFileError, ModelNotFoundError, NotAModelError
from slimfusion.models.families import FAMILIES
from slimfusion.models.families.pipeline import DENOISERS, denoiser_component, is_conditional
from slimfusion.models.io import (
    _looks_like_hub_id,
    _read_json,
    atomic_folder,
    builtin_path,
    load,
    load_model_folder,
    save,
    write_compact,
    write_meta,
)
from slimfusion.models.meta import get_meta
from slimfusion.models.source import hub_folder
from slimfusion.models.zoo import BUILTINS, PREFIX

INDEX = "model_index.json"


def pipeline_folder(source: str | Path) -> Path | None:
    """The local pipeline folder behind `source` (a path or `builtin:NAME`), or None when it is not a pipeline."""
    text = str(source)
    if text.startswith(PREFIX):
        name = text[len(PREFIX) :]
        if name not in BUILTINS or not BUILTINS[name].shipped:
            return None
        path = builtin_path(name)
    else:
        path = Path(text).expanduser()
    return path if (path / INDEX).is_file() else None


def is_pipeline(source: str | Path) -> bool:
    return pipeline_folder(source) is not None


def load_pipeline(source: str | Path, **replace: Any):
    """Load a diffusers pipeline with slimfusion's loader for each model component.

    Args:
        source (`str` or `Path`): a pipeline folder (model_index.json), `builtin:NAME` of a shipped pipeline, or a
            hub id (downloaded when online).
        replace: components to use instead of the stored ones (e.g. `unet=pruned_unet`).

    Returns:
        The pipeline object (float32, CPU, progress bars off) with `pipe.slimfusion_source` set.
    """
    path = pipeline_folder(source)
    if path is None:
        path = _hub_pipeline(str(source))
    index = _read_json(path / INDEX)
    cls = _pipeline_class(index, path)
    absent = [
        name
        for name, spec in index.items()
        if not name.startswith("_") and name not in replace and _is_component(spec) and spec[1] not in FAMILIES
        and not (path / name).is_dir()
    ]  # fmt: skip
    if absent:  # diffusers would build a default tokenizer / scheduler in its place, or fail deep inside
        raise CorruptFileError(f"{path}: {INDEX} lists {', '.join(absent)} but the folder has no such sub-folder")
    components: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or name in replace or not _is_component(spec):
            continue
        if spec[1] in FAMILIES:
            model = load_model_folder(path / name)
            get_meta(model)["source"] = f"{source}#{name}"
            components[name] = model
    pipe = cls.from_pretrained(str(path), **components, **replace)
    pipe.set_progress_bar_config(disable=True)
    pipe.slimfusion_source = str(source)
    scheduler = getattr(pipe, "scheduler", None)
    for name in DENOISERS:
        model = getattr(pipe, name, None)
        if model is not None and scheduler is not None and get_meta(model).get("scheduler") is None:
            get_meta(model)["scheduler"] = dict(scheduler.config)
    return pipe


def _is_component(spec: Any) -> bool:
    return isinstance(spec, list) and len(spec) == 2 and spec[0] is not None and spec[1] is not None


def _pipeline_class(index: dict[str, Any], path: Path):
    name = index.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if cls is None:
        raise NotAModelError(f"{path}: unknown pipeline class {name!r} in {INDEX}")
    return cls


def _hub_pipeline(source: str) -> Path:
    if Path(source).expanduser().exists():
        raise NotAModelError(f"{source} is not a pipeline folder (no {INDEX})")
    if not _looks_like_hub_id(source):
        raise ModelNotFoundError(f"pipeline not found: {source} (no such folder, builtin pipeline or hub id)")

    folder = hub_folder(source)
    if not (folder / INDEX).exists():
        raise NotAModelError(f"hub id {source} is not a pipeline (no {INDEX})")
    return folder


def save_pipeline(pipe, path: str | Path, overwrite: bool = False) -> Path:
    """Save a pipeline folder that plain diffusers loads, with `slimfusion.json` next to each model component.

    Written to a temporary sibling folder and moved into place only when complete.
    """
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    with atomic_folder(target) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        _keep_class_names(pipe, tmp)
        for name, component in pipe.components.items():
            if isinstance(component, nn.Module) and type(component).__name__ in FAMILIES:
                if get_meta(component).get("storage") == "compact":
                    write_compact(component, tmp / name)
                write_meta(component, tmp / name)
    return target


def replace_component(source: str | Path, model: nn.Module, path: str | Path, overwrite: bool = False) -> Path:
    """A copy of the pipeline folder `source` with one model component replaced by `model`, atomically.

    The component is the one `model` was loaded from (`#name` in its source), else the pipeline's denoiser; every
    other file is copied unchanged, so partial or custom pipelines survive as they are.
    """
    return replace_components(source, [model], path, overwrite)


def replace_components(source: str | Path, models: list[nn.Module], path: str | Path, overwrite: bool = False) -> Path:
    """`replace_component` for several changed components at once (e.g. a sparsified text encoder and UNet)."""
    folder = pipeline_folder(source)
    if folder is None:
        raise NotAModelError(f"{source} is not a pipeline folder")
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    named = {}
    for model in models:
        name = (get_meta(model).get("source") or "").rpartition("#")[2]
        if name not in pipeline_index(folder):
            name = denoiser_name_of(folder)
        if not (folder / name).is_dir():
            raise NotAModelError(f"{folder}: no {name} component to replace")
        named[name] = model
    with atomic_folder(target) as tmp:
        shutil.copytree(folder, tmp)
        for name, model in named.items():
            shutil.rmtree(tmp / name)
            save(model, tmp / name)
    return target


def _keep_class_names(pipe, folder: Path) -> None:
    """DiTPipeline takes `id2label` but does not save it; write it into model_index.json as the hub's DiT folders
    hold it, so the class names (and the class count) come back on load."""
    labels = getattr(pipe, "labels", None)
    if not labels:
        return
    index = pipeline_index(folder)
    index["id2label"] = {str(i): name for name, i in sorted(labels.items(), key=lambda kv: kv[1])}
    (folder / INDEX).write_text(json.dumps(index, indent=2))


def denoiser_name_of(folder: str | Path) -> str:
    """ "unet" or "transformer": the denoising component of a pipeline folder."""
    index = pipeline_index(pipeline_folder(folder))
    return denoiser_component(index) or DENOISERS[0]


def denoiser_name(pipe) -> str:
    """ "unet" or "transformer": the pipeline's denoising component."""
    for name in DENOISERS:
        if getattr(pipe, name, None) is not None:
            return name
    raise NotAModelError(f"{type(pipe).__name__} has no unet or transformer")


def denoiser_of(sampler) -> nn.Module:
    """The denoiser of a pipeline object (its unet / transformer), or the model itself."""
    return getattr(sampler, denoiser_name(sampler)) if is_pipeline_object(sampler) else sampler


def pipeline_index(path: Path) -> dict[str, Any]:
    """The parsed model_index.json of a pipeline folder (one-line error when unreadable)."""
    return _read_json(path / INDEX)


def load_for_sampling(source: str, component: str | None = None):
    """What to sample: the diffusers pipeline of a conditional pipeline folder, else the (unconditional) model."""
    path = pipeline_folder(source) if component is None else None
    if path is not None:
        index = pipeline_index(path)
        if is_conditional(index):
            return load_pipeline(source)
    return load(source, component)


def is_pipeline_object(obj) -> bool:
    """Whether `obj` is a diffusers pipeline object (not a path, not a model)."""
    # by class name: importing DiffusionPipeline costs ~2.4 s (loaders, quantizers, transformers) for every command
    return any(cls.__name__ == "DiffusionPipeline" for cls in type(obj).__mro__)


def with_denoiser(pipe, model: nn.Module):
    """A new pipeline object of the same class sharing every component of `pipe` but its denoiser, `model`."""
    return type(pipe)(**{**pipe.components, denoiser_name(pipe): model})
