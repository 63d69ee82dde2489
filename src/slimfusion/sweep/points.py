"""One point of a sparsity sweep: the sweep's config, sampling a point and measuring it (shared by the sweep and
its summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from slimfusion.errors import ConfigError
from slimfusion.images import to_uint8
from slimfusion.quality import References, quality_of
from slimfusion.sample import SampleConfig, sample, write_samples_file
from slimfusion.sparsify.config import SparsityConfig

SERIES = {  # name -> SparsityConfig fields: a method, or a method with OWL's layer sparsities
    "magnitude": {"method": "magnitude"},
    "wanda": {"method": "wanda"},
    "sparsegpt": {"method": "sparsegpt"},
    "magnitude-owl": {"method": "magnitude", "allocation": "owl"},
    "wanda-owl": {"method": "wanda", "allocation": "owl"},
}
SWEEP_FILE, DENSE_FILE = "sweep.json", "dense_samples.npz"


class SweepConfig(BaseModel):
    """What to sweep and how to judge it.

    Args:
        components (`list[str]`, defaults to ["unet"]): components pruned one at a time ("text_encoder", "unet",
            "transformer").
        methods (`list[str]`, defaults to ["magnitude", "wanda"]): series, keys of `SERIES` ("magnitude", "wanda",
            "sparsegpt", "wanda-owl", ...).
        sparsities (`list[float]`, defaults to 0.1, 0.2, ..., 0.8): sparsities of every series, each in (0, 1).
        prompts (`list[str]`): the fixed prompts of the evaluation samples (image i gets prompt i mod P); they are
            also the calibration prompts of Wanda / SparseGPT / OWL.
        num (`int`, defaults to 100): samples per point; `steps` (25) DDIM steps, `guidance` (2.0), `seed` (0).
        ref (`str`, optional): reference data for FD (e.g. "digits:all"); None skips FD.
        clip_model (`str`, optional): a local CLIPModel folder (safetensors) for CLIP score; None skips it.
        collapse_drop (`float`, defaults to 0.1): a series collapses at the first sparsity whose quality (prompt
            accuracy where it can be measured, else SSIM vs dense) falls more than this below the dense model's.
        budget (`float`, defaults to 0.02): the recommendation's allowed quality drop below the dense model.
        layers (`str`, defaults to "linear+conv"), calib_samples (`int`, 16), calib_steps (`int`, 25): as in
            `SparsityConfig`.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    components: list[Literal["text_encoder", "unet", "transformer"]] = Field(["unet"], min_length=1)
    methods: list[str] = Field(["magnitude", "wanda"], min_length=1)
    sparsities: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 9)], min_length=1)
    prompts: list[str] = Field(min_length=1)
    num: int = Field(100, ge=1)
    steps: int = Field(25, ge=1)
    guidance: float = Field(2.0, ge=0)
    seed: int = 0
    ref: str | None = None
    clip_model: str | None = None
    collapse_drop: float = Field(0.1, gt=0, lt=1)
    budget: float = Field(0.02, ge=0, lt=1)
    layers: Literal["linear", "linear+conv"] = "linear+conv"
    calib_samples: int = Field(16, ge=1)
    calib_steps: int = Field(25, ge=1)

    @field_validator("methods")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in SERIES]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(SERIES)}")
        return value

    @field_validator("sparsities")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        bad = [s for s in value if not 0 < s < 1]
        if bad:
            raise ValueError(f"sparsity {bad[0]} is outside (0, 1)")
        return sorted(set(round(s, 6) for s in value))

    def points(self) -> list[tuple[str, str, float]]:
        return [(c, m, s) for c in self.components for m in self.methods for s in self.sparsities]

    def sparsity_config(self, component: str, method: str, sparsity: float) -> SparsityConfig:
        return SparsityConfig(
            **SERIES[method],
            sparsity=sparsity,
            component=component,
            layers=self.layers,
            calib_prompts=self.prompts,
            calib_samples=self.calib_samples,
            calib_steps=self.calib_steps,
            guidance=self.guidance,
            seed=self.seed,
        )


def parse_sparsities(text: str) -> list[float]:
    """ "0.1:0.8:0.05" (start:stop:step, stop included) or "0.3,0.5" -> a list of floats."""
    try:
        if ":" in text:
            start, stop, step = (float(p) for p in text.split(":"))
            if step <= 0:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 6) for i in range(count) if start + i * step <= stop + 1e-9]
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise ConfigError(f"--sparsities {text!r}: expected start:stop:step or a comma list") from exc


def point_key(component: str, method: str, sparsity: float) -> str:
    return f"{component}__{method}__{sparsity:.3f}"


def point_sampling(config: SweepConfig) -> SampleConfig:
    """How every point (and the dense model) is sampled: one seed, the fixed prompts, so any two points pair up."""
    return SampleConfig(
        num=config.num, steps=config.steps, seed=config.seed, prompts=config.prompts, guidance=config.guidance
    )


def sample_point(pipe, config: SweepConfig, progress: bool) -> torch.Tensor:
    return sample(pipe, point_sampling(config), progress=progress)


def keep_samples(images: torch.Tensor, folder: Path, config: SweepConfig, source: str) -> None:
    """Write a point's samples into its folder as a samples folder, so `slimfusion compare` can pair two points
    (same noise and prompts) and give each difference an interval and a verdict."""
    record = point_sampling(config).model_dump() | {"model": source}
    folder.mkdir(parents=True, exist_ok=True)
    write_samples_file(to_uint8(images), range(len(images)), folder, record)


def measure(images: torch.Tensor, dense: torch.Tensor | None, config: SweepConfig) -> tuple[dict, dict]:
    """(metrics, their 95% intervals): prompt accuracy (when the digit classifier applies), CLIP score (with a CLIP
    model), FD vs `ref`, SSIM vs the dense samples."""
    record = {"prompts": config.prompts, "indices": list(range(len(images)))}
    wanted = ["accuracy", *(["clip"] if config.clip_model else []), *(["fd"] if config.ref else [])]
    wanted += ["ssim"] if dense is not None else []
    references = References(config.ref) if config.ref is not None else None
    quality = quality_of(images, record, wanted, references, base=dense, clip_model=config.clip_model)
    if "clip" in quality.skipped:
        raise ConfigError(quality.skipped["clip"])
    return {"accuracy": None, "fd": None, "ssim": None} | quality.values(), quality.intervals()


def load_dense(out: Path) -> torch.Tensor:
    with np.load(out / DENSE_FILE) as data:
        return torch.from_numpy(data["images"])


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".npz":
        tmp = path.with_name(f".{path.stem}.tmp.npz")
    write(tmp)
    tmp.rename(path)
