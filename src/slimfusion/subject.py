"""What a step works on: a pipeline object when the source is a pipeline folder, else the model itself."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from slimfusion.models.io import load, save
from slimfusion.pipelines import (
    denoiser_name,
    denoiser_of,
    is_pipeline,
    is_pipeline_object,
    load_pipeline,
    save_pipeline,
)


class Subject:
    """A model or pipeline held in memory between steps, with the source it was first loaded from."""

    def __init__(self, obj, source: str | None = None):
        self.obj = obj
        self.source = source

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
        """A pipeline folder for a pipeline (every component re-saved), else a model folder; atomically."""
        if self.is_pipeline:
            return save_pipeline(self.obj, folder, overwrite=overwrite)
        return save(self.obj, folder, overwrite=overwrite)
