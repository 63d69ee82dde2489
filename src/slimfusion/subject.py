"""What a step works on: a pipeline object when the source is a pipeline folder, else the model itself."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from slimfusion.models.io import load, save
from slimfusion.models.meta import get_meta
from slimfusion.pipelines import (
    denoiser_name,
    denoiser_of,
    is_pipeline,
    is_pipeline_object,
    load_pipeline,
    pipeline_folder,
    replace_components,
    save_pipeline,
)


class Subject:
    """A model or pipeline held in memory between steps, with the source it was first loaded from."""

    def __init__(self, obj, source: str | None = None):
        self.obj = obj
        self.source = source
        self.loaded = self._fingerprints()  # what the source folder holds, to save only what changed
        self.loaded_others = self._others()

    @classmethod
    def load(cls, source: str | Path) -> Subject:
        """Resolve a path, `builtin:NAME` or hub id once: a pipeline folder gives its pipeline, else the model.

        A partial pipeline folder (diffusers cannot build its class from the components present, e.g. no VAE) gives
        its denoiser; its other components are read from the folder when a step needs them.
        """
        text = str(source)
        if is_pipeline(text):
            try:
                return cls(load_pipeline(text), text)
            except ValueError as exc:  # diffusers' "expected [...] but only {...} were passed"
                if "were passed" not in str(exc):
                    raise
        return cls(load(text), text)

    @property
    def is_pipeline(self) -> bool:
        return is_pipeline_object(self.obj)

    @property
    def denoiser(self) -> nn.Module:
        """The unet / transformer of a pipeline, else the model."""
        return denoiser_of(self.obj)

    def set_denoiser(self, model: nn.Module) -> None:
        if self.is_pipeline:
            self.obj.register_modules(**{denoiser_name(self.obj): model})
        else:
            self.obj = model

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """The one save route of every verb and recipe step, atomically: held from a local pipeline folder, a copy of
        that folder with the changed model components re-saved (the others bit for bit, partial pipelines too);
        any other pipeline as a whole pipeline folder; a model as a model folder."""
        source = pipeline_folder(self.source) if self.source is not None else None
        others = self._others()
        if source is not None and others == self.loaded_others:  # a replaced scheduler: the whole pipeline below
            now = self._fingerprints()
            changed = [self._models()[name] for name in now if now[name] != self.loaded.get(name)]
            return replace_components(source, changed, folder, overwrite=overwrite)
        if self.is_pipeline:
            return save_pipeline(self.obj, folder, overwrite=overwrite)
        return save(self.obj, folder, overwrite=overwrite)

    def _others(self) -> dict[str, int]:
        """The pipeline's components that are not models (scheduler, tokenizer), by identity."""
        if not self.is_pipeline:
            return {}
        return {n: id(c) for n, c in self.obj.components.items() if not isinstance(c, nn.Module)}

    def _models(self) -> dict[str, nn.Module]:
        if self.is_pipeline:
            return {n: c for n, c in self.obj.components.items() if isinstance(c, nn.Module)}
        return {"": self.obj}

    def _fingerprints(self) -> dict[str, tuple]:
        """Per model component: the object, its metadata and each tensor's storage and in-place version counter
        (every in-place edit bumps it), so a component changed in any way is seen as changed."""
        prints = {}
        for name, model in self._models().items():
            tensors = [*model.parameters(), *model.buffers()]
            try:
                versions = tuple((t.data_ptr(), tuple(t.shape), t._version) for t in tensors)
            except RuntimeError:  # inference tensors have no version counter: count as changed
                versions = (object(),)
            prints[name] = (id(model), json.dumps(get_meta(model), sort_keys=True, default=str), versions)
        return prints
