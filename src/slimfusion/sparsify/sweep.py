"""`sweep(source, SweepConfig(...), out)`: sparsity sweeps per component and method, to the collapse point.

Every point (component, method, sparsity) sparsifies a fresh copy of the dense pipeline, samples fixed prompts from
fixed seeds and measures prompt accuracy (digits built-ins), FD against reference data and SSIM against the dense
model's samples from the same noise. Points are files: an interrupted sweep continues from the finished ones, and
`accelerate launch` processes take disjoint shares. The summary finds each series' collapse point and recommends the
most sparse per-component combination within a quality budget, and checks that combination by sampling it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from slimfusion.errors import ConfigError
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
        components (`list[str]`): components pruned one at a time ("text_encoder", "unet", "transformer").
        methods (`list[str]`): series, keys of `SERIES` ("magnitude", "wanda", "sparsegpt", "wanda-owl", ...).
        sparsities (`list[float]`): sparsities of every series, each in (0, 1).
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
    components: list[Literal["text_encoder", "unet", "transformer"]] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    sparsities: list[float] = Field(min_length=1)
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


def sweep(source: str, config: SweepConfig, out: str | Path, progress: bool = True) -> dict:
    """Run (or continue) a sweep into `out`; returns the summary (also written as sweep.md / results.json)."""
    from accelerate import PartialState

    from slimfusion.pipelines import load_pipeline

    out = Path(out)
    state = PartialState(cpu=not torch.cuda.is_available())
    if config.clip_model is not None and not list(Path(config.clip_model).glob("*.safetensors")):
        raise ConfigError(f"--clip-model {config.clip_model}: not a folder with safetensors CLIP weights")
    if state.is_main_process:  # the others check once the main process has set the folder up
        _check_folder(out, config, source, main=True)
    load_pipeline(source)  # refuse a bad source, a missing component or bad prompts before any point runs
    _check_components(source, config)
    state.wait_for_everyone()
    if not state.is_main_process:
        _check_folder(out, config, source, main=False)
    if state.is_main_process and not (out / "points" / "dense.json").exists():
        _run_point(source, config, out, None, progress)
    state.wait_for_everyone()
    todo = [p for p in config.points() if not (out / "points" / f"{point_key(*p)}.json").exists()]
    for point in todo[state.process_index :: state.num_processes]:
        _run_point(source, config, out, point, progress)
    state.wait_for_everyone()
    from slimfusion.sparsify.sweep_summary import summarise

    summary = summarise(source, config, out, progress) if state.is_main_process else {}
    state.wait_for_everyone()
    return summary


def _check_folder(out: Path, config: SweepConfig, source: str, main: bool) -> None:
    record = {"source": source, "config": config.model_dump()}
    file = out / SWEEP_FILE
    if file.exists():
        try:
            saved = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: not valid JSON; remove the folder to start again") from exc
        try:  # a folder from before a new setting existed holds that setting's default
            same = saved.get("source") == source and SweepConfig(**saved["config"]).model_dump() == record["config"]
        except (ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise ConfigError(f"{out} holds a sweep with other settings ({file}); use another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a sweep folder; use another --out")
    if main:
        (out / "points").mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(record, indent=2))


def _check_components(source: str, config: SweepConfig) -> None:
    from slimfusion.pipelines import load_pipeline
    from slimfusion.sparsify import _components

    pipe = load_pipeline(source)
    for component in config.components:
        _components(pipe, config.sparsity_config(component, config.methods[0], config.sparsities[0]))


def sample_point(pipe, config: SweepConfig, progress: bool) -> torch.Tensor:
    from slimfusion.sample import SampleConfig, sample

    settings = SampleConfig(
        num=config.num, steps=config.steps, seed=config.seed, prompts=config.prompts, guidance=config.guidance
    )
    return sample(pipe, settings, progress=progress)


def measure(images: torch.Tensor, dense: torch.Tensor | None, config: SweepConfig) -> dict:
    """Prompt accuracy (when the digit classifier applies), FD vs `ref`, SSIM vs the dense samples."""
    from slimfusion.metrics.accuracy import accuracy_unavailable, asked_digits, digit_accuracy
    from slimfusion.metrics.consistency import ssim

    record = {"prompts": config.prompts, "indices": list(range(len(images)))}
    from slimfusion.metrics.clip import clip_score_or_reason

    metrics: dict = {"accuracy": None, "fd": None, "ssim": None}
    if config.clip_model is not None:
        metrics["clip"], reason = clip_score_or_reason(images, record, config.clip_model)
        if reason:
            raise ConfigError(reason)
    if accuracy_unavailable(images, record) is None:
        metrics["accuracy"] = digit_accuracy(images, asked_digits(record))
    if config.ref is not None:
        metrics["fd"] = _fd(images, config.ref)
    if dense is not None:
        metrics["ssim"] = ssim(images, dense)
    return metrics


def _fd(images: torch.Tensor, ref: str) -> float:
    from slimfusion.data import load_images
    from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance

    reference = load_images(ref, size=images.shape[-1], channels=images.shape[1])
    return frechet_distance(*feature_stats(digit_features(images)), *feature_stats(digit_features(reference)))


def _run_point(source: str, config: SweepConfig, out: Path, point: tuple | None, progress: bool) -> None:
    """Sparsify a fresh copy (None: the dense model), sample, measure, write the point's grid and JSON last."""
    from slimfusion.grids import labelled_grid
    from slimfusion.models.meta import history
    from slimfusion.pipelines import load_pipeline
    from slimfusion.sparsify import sparsify

    pipe = load_pipeline(source)
    record: dict = {"component": None, "method": None, "target": 0.0, "sparsity": 0.0, "sparsity_of_params": 0.0}
    if point is not None:
        component, method, target = point
        sparsify(pipe, config.sparsity_config(component, method, target), progress=False)
        effect = history(getattr(pipe, component))[-1]["effect"]
        record = {"component": component, "method": method, "target": target} | {
            k: effect[k] for k in ("sparsity", "sparsity_of_params", "zeroed", "wall_s")
        }
    images = sample_point(pipe, config, progress)
    dense = None if point is None else load_dense(out)
    record["metrics"] = measure(images, dense, config)
    if point is None:
        record["metrics"]["ssim"] = 1.0  # the dense model against itself
    folder = out / "points" / (point_key(*point) if point else "dense")
    folder.mkdir(parents=True, exist_ok=True)
    labels = [config.prompts[i % len(config.prompts)] for i in range(len(images))]
    labelled_grid(images, labels).save(folder / "grid.png")
    if point is None:
        _atomic_write(out / DENSE_FILE, lambda f: np.savez(f, images=images.numpy()))
    name = f"{point_key(*point)}.json" if point else "dense.json"
    _atomic_write(out / "points" / name, lambda f: f.write_text(json.dumps(record, indent=2)))


def load_dense(out: Path) -> torch.Tensor:
    with np.load(out / DENSE_FILE) as data:
        return torch.from_numpy(data["images"])


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".npz":
        tmp = path.with_name(f".{path.stem}.tmp.npz")
    write(tmp)
    tmp.rename(path)
