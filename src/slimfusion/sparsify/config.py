"""`SparsityConfig`: one validated, versioned description of an unstructured / N:M sparsification run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slimfusion.models.families.pipeline import COMPONENTS, TEXT_ENCODER

Method = Literal["magnitude", "wanda", "sparsegpt"]


class SparsityConfig(BaseModel):
    """How to zero weights inside the weight matrices of one or more pipeline components.

    Args:
        method (`str`, defaults to "magnitude"): "magnitude" (|W|), "wanda" (|W| x ||X||_2 of the layer's inputs,
            compared per output row, no weight update) or "sparsegpt" (per-layer Hessian of the inputs, column
            blocks, optimal-brain-surgeon update of the surviving weights).
        sparsity (`float`, optional): fraction of weights zeroed in every selected component, in [0, 1). With
            `nm` it may be left out (it is then N/M).
        sparsities (`dict[str, float]`, optional): per-component fractions in one call, e.g.
            `{"text_encoder": 0.475, "unet": 0.35}` (the paper's SD2 answer); overrides `sparsity` and `component`.
        component (`str`, defaults to "denoiser"): "text_encoder", "unet", "transformer", "denoiser" (the pipeline's
            unet or transformer) or "all" (text encoder and denoiser). A lone model is its own component.
        scope (`str`, defaults to "layer"): "layer" gives every weight matrix the same sparsity; "global" (magnitude
            only) zeroes the smallest weights under one threshold across the component.
        allocation (`str`, defaults to "uniform"): "owl" gives layers with more activation outliers (|W| x ||X||
            above `owl_m` x the layer's mean) lower sparsities, averaging (weighted by size) to the target.
        layers (`str`, defaults to "linear+conv"): "linear" prunes nn.Linear only; "linear+conv" also the
            ungrouped nn.Conv2d layers (as [out, in x kh x kw] matrices).
        nm (`str`, optional): "N:M" semi-structured sparsity: N zeros in every group of M consecutive inputs of a
            row (e.g. "2:4").
        calib_prompts (`list[str]`, optional): prompts for Wanda / SparseGPT / OWL statistics of text-to-image
            pipelines (the text encoder runs on them; the UNet over the timesteps of sampling runs on them).
        calib_class_labels (`list[int]`, optional): the same for class-conditional (DiT) pipelines.
        calib_samples (`int`, defaults to 16): sampling runs the denoiser's statistics are collected over.
        calib_steps (`int`, defaults to 25): DDIM steps of those runs.
        guidance (`float`, defaults to 2.0): classifier-free guidance of those runs.
        owl_lambda (`float`, defaults to 0.08): OWL's spread: layer sparsities lie within +-lambda of the target.
        owl_m (`float`, defaults to 5.0): OWL's outlier factor M.
        blocksize (`int`, defaults to 128): SparseGPT's column block.
        percdamp (`float`, defaults to 0.01): SparseGPT's dampening, a fraction of the Hessian's mean diagonal.
        seed (`int`, defaults to 0): seeds the calibration sampling runs.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    method: Method = "magnitude"
    sparsity: float | None = Field(None, ge=0, lt=1)
    sparsities: dict[str, float] | None = None
    component: Literal["text_encoder", "unet", "transformer", "denoiser", "all"] = "denoiser"
    scope: Literal["layer", "global"] = "layer"
    allocation: Literal["uniform", "owl"] = "uniform"
    layers: Literal["linear", "linear+conv"] = "linear+conv"
    nm: str | None = None
    calib_prompts: list[str] | None = Field(None, min_length=1)
    calib_class_labels: list[int] | None = Field(None, min_length=1)
    calib_samples: int = Field(16, ge=1)
    calib_steps: int = Field(25, ge=1)
    guidance: float = Field(2.0, ge=0)
    owl_lambda: float = Field(0.08, ge=0, lt=0.5)
    owl_m: float = Field(5.0, gt=0)
    blocksize: int = Field(128, ge=1)
    percdamp: float = Field(0.01, gt=0)
    seed: int = 0

    @field_validator("nm")
    @classmethod
    def _valid_nm(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            n, m = (int(part) for part in value.split(":"))
        except ValueError as exc:
            raise ValueError(f"expected N:M such as 2:4, got {value!r}") from exc
        if not 0 < n < m:
            raise ValueError(f"N:M needs 0 < N < M (N zeros in every M weights), got {value!r}")
        return f"{n}:{m}"

    @field_validator("sparsities")
    @classmethod
    def _valid_sparsities(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one component=sparsity")
        for name, fraction in value.items():
            if name not in COMPONENTS:
                raise ValueError(f"unknown component {name!r}; choose from {', '.join(COMPONENTS)}")
            if not 0 <= fraction < 1:
                raise ValueError(f"sparsity of {name} must lie in [0, 1), got {fraction}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SparsityConfig:
        if self.nm is not None:
            n, m = self.nm_pair
            if self.sparsity is not None and abs(self.sparsity - n / m) > 1e-9:
                raise ValueError(f"--nm {self.nm} fixes the sparsity at {n / m:g}; drop --sparsity")
            if self.sparsities is not None:
                raise ValueError("--nm fixes every component's sparsity at N/M; drop per-component sparsities")
            if self.scope != "layer" or self.allocation != "uniform":
                raise ValueError("--nm works per row group: use --scope layer --allocation uniform")
        elif self.sparsity is None and self.sparsities is None:
            raise ValueError("give --sparsity (or --nm N:M)")
        if self.scope == "global" and self.method != "magnitude":
            raise ValueError(f"--scope global is for magnitude pruning; {self.method} compares weights per layer")
        if self.scope == "global" and self.allocation == "owl":
            raise ValueError("--allocation owl sets per-layer sparsities: use --scope layer")
        return self

    @property
    def nm_pair(self) -> tuple[int, int] | None:
        if self.nm is None:
            return None
        n, m = self.nm.split(":")
        return int(n), int(m)

    @property
    def needs_calibration(self) -> bool:
        """Whether input statistics are needed (Wanda, SparseGPT, or OWL's outlier ratios)."""
        return self.method != "magnitude" or self.allocation == "owl"

    def targets(self, available: list[str], denoiser: str | None) -> dict[str, float]:
        """Component -> sparsity for a pipeline holding `available` components (refuses missing ones)."""
        if self.sparsities is not None:
            wanted = dict(self.sparsities)
        else:
            fraction = self.sparsity if self.nm is None else self.nm_pair[0] / self.nm_pair[1]
            names = {"denoiser": [denoiser], "all": [TEXT_ENCODER, denoiser]}.get(self.component, [self.component])
            wanted = {name: fraction for name in names}
        for name in wanted:
            if name is None or name not in available:
                have = ", ".join(a for a in available if a in COMPONENTS) or "none"
                raise ValueError(f"the model has no component {name or self.component!r} (it has: {have})")
        return wanted
