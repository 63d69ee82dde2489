"""Measure a compressed model: quality against reference data, consistency with the original, and cost.

Inputs are a model (sampled here with a seeded DDIM run) or a samples folder written by `slimfusion sample`.
The metric names say what they are: `fd` is the Frechet distance in builtin:digits-features space; `fid` is
InceptionV3 FID and exists only when its weights are on disk.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slimfusion.diffusion.schedulers import known_solver, stored_sampler
from slimfusion.errors import ConfigError
from slimfusion.metrics.cost import count_macs, count_params, latency_runs
from slimfusion.metrics.intervals import DEFAULT_RESAMPLES, bootstrap, method_text
from slimfusion.pipelines import denoiser_of, load_for_sampling
from slimfusion.quality import Quality, References, quality_of
from slimfusion.sample import (
    DEFAULT_GUIDANCE,
    SAMPLER_FIELDS,
    SampleConfig,
    load_samples,
    sample,
    source_of,
    steps_of_timesteps,
    with_own_sampler,
)
from slimfusion.skip.plan import measured_macs_ratio
from slimfusion.skip.use import sampling_plan

COUNTS = ("params", "macs", "plan_macs_ratio", "macs_per_step")  # exact: no interval
METRICS = ("fd", "kd", "fid", "kid", "accuracy", "clip", "ssim", "psnr", "cost")
Metric = Literal["fd", "kd", "fid", "kid", "accuracy", "clip", "ssim", "psnr", "cost"]


class EvaluateConfig(BaseModel):
    """What to measure and how to sample models.

    Args:
        metrics (`list[str]`, optional): any of fd, kd, fid, kid, accuracy, clip, ssim, psnr, cost; default: every
            metric the inputs allow (fd + kd with a reference, ssim + psnr with an original, accuracy / clip for
            conditional samples, cost for a model). kd / kid: the kernel (KID) distance in digits-features /
            InceptionV3 space.
        resamples (`int`, defaults to 200): bootstrap resamples behind every 95% interval.
        num (`int`, defaults to 1000): images sampled from a model.
        steps (`int`, defaults to 50): sampling steps.
        scheduler (`str`, defaults to "ddim"): the solver models are sampled with (`slimfusion.diffusion.SOLVERS`).
        spacing (`str`, optional): timestep spacing "leading" / "trailing" / "linspace" (default: the solver's own).
        karras (`bool`, defaults to False): Karras sigmas, for the solvers that have them.
        timesteps (`list[int]`, optional): explicit descending timesteps for the target; the original keeps `steps`
            (see `SampleConfig`).
        seed (`int`, defaults to 0): sampling seed; the original is sampled with the same one (identical noise).
        batch_size (`int`, defaults to 250): images per forward while sampling.
        inception_weights (`str`, optional): InceptionV3 weights (.safetensors) for FID.
        prompts (`list[str]`, optional): text-to-image pipelines are sampled with these (image i: prompt i mod P).
        class_labels (`list[int]`, optional): DiT pipelines are sampled with these.
        guidance (`float`, defaults to 2.0): classifier-free guidance scale for conditional pipelines.
        clip_model (`str`, optional): a local CLIP model folder (safetensors) for the CLIP score.
        plan (`str`, optional): a skip plan file the target (not the original) is sampled with; by default the plan
            stored in the target model, if any. Cost then adds `plan_macs_ratio` (measured on the model) and
            `macs_per_step` (the plan's mean MACs of one step).
        no_plan (`bool`, defaults to False): sample the target without any skip plan, a stored one included.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    metrics: list[Metric] | None = None
    num: int = Field(1000, ge=2)
    steps: int = Field(50, ge=1, le=1000)
    scheduler: str = "ddim"
    spacing: Literal["leading", "trailing", "linspace"] | None = None
    karras: bool = False
    timesteps: list[int] | None = Field(None, min_length=1)
    seed: int = Field(0, ge=0)
    batch_size: int = Field(250, ge=1)
    inception_weights: str | None = None
    prompts: list[str] | None = Field(None, min_length=1)
    class_labels: list[int] | None = Field(None, min_length=1)
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0)
    clip_model: str | None = None
    plan: str | None = None
    no_plan: bool = False
    resamples: int = Field(DEFAULT_RESAMPLES, ge=20, le=100_000)

    _known_solver = field_validator("scheduler")(classmethod(lambda cls, value: known_solver(value)))

    @model_validator(mode="after")
    def _steps_of_timesteps(self) -> EvaluateConfig:
        return steps_of_timesteps(self, set_steps=False)  # checked; they set the target's steps, not the original's

    def sample_config(self, target: bool = True):
        """The sampling settings; sampler fields left unset stay unset, so a step-distilled model uses its own.
        Explicit timesteps are the target's: the original is sampled at `steps` of its solver."""
        keys = ("num", "steps", "scheduler", "spacing", "karras", "seed", "batch_size", "prompts", "class_labels")
        values = self.model_dump(include={*keys, "guidance"} | ({"timesteps"} if target else set()))
        return SampleConfig(
            **{k: v for k, v in values.items() if k not in SAMPLER_FIELDS or k in self.model_fields_set}
        )


class Resolved(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    images: torch.Tensor
    record: dict[str, Any]
    model: Any = None
    images_per_s: float | None = None
    plan: Any = None  # the SkipPlan the images were sampled with


def resolve_subject(spec, config: EvaluateConfig, progress: bool, plan: str | None = None, target: bool = True):
    """A samples folder as is, or a model sampled with the config's seed and solver, with its skip plan: `plan`,
    else the one stored in the model (for the target unless `config.no_plan`; for the original always)."""
    held = not isinstance(spec, (str, Path))  # a model or pipeline object already in memory
    if not held and (Path(spec) / "samples.npz").exists():
        if plan is not None:
            raise ConfigError("--plan applies to a model, not to a samples folder")
        images, record = load_samples(spec)
        return Resolved(images=images, record=record)
    sampler = spec if held else load_for_sampling(spec)
    name = source_of(sampler) if held else spec
    sample_config = with_own_sampler(sampler, config.sample_config(target))
    no_plan = config.no_plan and target
    start = time.perf_counter()
    explicit = sample_config.timesteps is not None
    with sampling_plan(sampler, plan, no_plan, sample_config.scheduler, sample_config.steps, explicit) as chosen:
        images = sample(sampler, sample_config.model_copy(update={"no_plan": True}), progress=progress)
    rate = len(images) / (time.perf_counter() - start)
    used = None if chosen is None else (plan or "stored in the model")
    own = stored_sampler(denoiser_of(sampler)) is not None
    record = sample_config.model_dump() | {
        "model": name, "indices": list(range(config.num)), "plan": used, "own_sampler": own
    }  # fmt: skip
    return Resolved(images=images, record=record, model=denoiser_of(sampler), images_per_s=rate, plan=chosen)


def _same_noise(a: dict, b: dict) -> None:
    """Refuse SSIM / PSNR between sets from different noise or conditions. The solver must match too, unless one side
    is a step-distilled model on its own sampler (compared with the original's from the same starting noise)."""
    defaults = {"prompts": None, "class_labels": None, "spacing": None, "karras": False, "timesteps": None}  # older
    keys = ["seed", "indices", "prompts", "class_labels"]
    if not (a.get("own_sampler") or b.get("own_sampler")):
        keys += ["steps", "scheduler", "spacing", "karras", "timesteps"]
    for key in keys:
        if key not in defaults and (key not in a or key not in b):
            raise ConfigError("SSIM / PSNR need samples from identical noise; a samples folder lacks sampling.json")
        if a.get(key, defaults.get(key)) != b.get(key, defaults.get(key)):
            raise ConfigError(
                f"SSIM / PSNR need samples from identical noise and conditions; the two sets differ in {key}"
            )


def evaluate(
    target,
    config: EvaluateConfig | None = None,
    ref: str | None = None,
    original: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate `target` (model or samples folder).

    Args:
        target (`str` or a model / pipeline object): model (folder, builtin:NAME, hub id), samples folder, or a
            model or pipeline already loaded (e.g. one a recipe holds between steps).
        config (`EvaluateConfig`, optional): metrics and sampling settings.
        ref (`str`, optional): reference data (digits, digits:all, a folder) or cached statistics (.npz from
            `slimfusion stats`), for fd / kd / fid / kid.
        original (`str`, optional): the uncompressed model or its samples folder, for ssim / psnr.
        progress (`bool`, defaults to True): progress bars while sampling.

    Returns:
        {"target", "metrics": {name: value}, "intervals": {name: [low, high]}, "interval_method", "skipped":
        {name: reason}, "num", "sampling"}.
    """
    config = config or EvaluateConfig()
    subject = resolve_subject(target, config, progress, config.plan)
    wanted = list(config.metrics) if config.metrics else default_metrics(subject, ref, original)
    check_inputs(wanted, subject, ref, original)
    quality = measure_quality(subject, wanted, config, QualityInputs.of(wanted, config, ref, original, progress))
    values, intervals = quality.values(), quality.intervals(config.resamples)
    if "cost" in wanted:
        values |= _cost(subject, intervals, config.resamples)
    return {
        "target": target if isinstance(target, (str, Path)) else subject.record.get("model"),
        "metrics": values,
        "intervals": intervals,
        "interval_method": method_text(len(subject.images), config.resamples),
        "skipped": quality.skipped,
        "num": len(subject.images),
        "sampling": {k: v for k, v in subject.record.items() if k != "indices"},
    }


def measure_quality(subject: Resolved, wanted: list[str], config: EvaluateConfig, inputs: QualityInputs) -> Quality:
    """The quality metrics of a resolved subject against the shared inputs (reference, original's images)."""
    if inputs.base is not None:
        _same_noise(subject.record, inputs.base.record)
    return quality_of(
        subject.images,
        subject.record,
        wanted,
        inputs.references,
        base=None if inputs.base is None else inputs.base.images,
        clip_model=config.clip_model,
        inception_weights=config.inception_weights,
    )


class QualityInputs(BaseModel):
    """What subjects are measured against: reference statistics (loaded once) and the original's images."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    references: Any = None
    base: Resolved | None = None

    @classmethod
    def of(cls, wanted: list[str], config: EvaluateConfig, ref, original, progress: bool) -> QualityInputs:
        """The original is sampled here (same seed, noise and conditions) when ssim / psnr are wanted."""
        needs_base = "ssim" in wanted or "psnr" in wanted
        return cls(
            references=References(ref, config.inception_weights) if ref is not None else None,
            base=resolve_subject(original, config, progress, target=False) if needs_base else None,
        )


def _cost(subject: Resolved, intervals: dict, resamples: int) -> dict[str, Any]:
    """Parameters and MACs (exact counts: their interval is the value itself), latency (median of 10 forwards; its
    interval: bootstrap of the median over those 10), sampling throughput (one timing, no interval), and the skip
    plan's measured MACs share."""
    runs = latency_runs(subject.model, batch=1)
    intervals["latency_ms"] = [1000 * v for v in bootstrap(lambda idx: np.median(np.take(runs, idx)), len(runs))]
    values = {
        "params": count_params(subject.model),
        "macs": count_macs(subject.model),
        "latency_ms": 1000 * statistics.median(runs),
        "images_per_s": subject.images_per_s,
    }
    if subject.plan is not None:
        ratio = measured_macs_ratio(subject.plan, subject.model)
        values |= {"plan_macs_ratio": ratio, "macs_per_step": values["macs"] * ratio}
    intervals |= {key: [values[key], values[key]] for key in COUNTS if key in values}  # exact counts
    return values


def default_metrics(subject: Resolved, ref: str | None, original: str | None) -> list[str]:
    wanted = ["fd", "kd"] if ref else []
    if subject.record.get("prompts") or subject.record.get("class_labels"):
        wanted += ["accuracy"] + (["clip"] if subject.record.get("prompts") else [])
    wanted += ["ssim", "psnr"] if original else []
    wanted += ["cost"] if subject.model is not None else []
    if not wanted:
        raise ConfigError("nothing to measure: give --ref (fd), --original (ssim, psnr) or a model (cost)")
    return wanted


def check_inputs(wanted: list[str], subject: Resolved, ref: str | None, original: str | None) -> None:
    if {"fd", "kd", "fid", "kid"} & set(wanted) and ref is None:
        raise ConfigError("fd / kd / fid / kid need --ref (reference data or statistics .npz from `slimfusion stats`)")
    if ("ssim" in wanted or "psnr" in wanted) and original is None:
        raise ConfigError("ssim / psnr need --original (the uncompressed model or its samples folder)")
    if "cost" in wanted and subject.model is None:
        raise ConfigError("cost needs a model, not a samples folder")


LABELS = {
    "fd": "FD (digits features)",
    "kd": "KD (digits features, KID's estimator)",
    "fid": "FID (InceptionV3)",
    "kid": "KID (InceptionV3)",
    "accuracy": "prompt / class accuracy",
    "clip": "CLIP score",
    "ssim": "SSIM vs original",
    "psnr": "PSNR vs original (dB)",
    "params": "parameters",
    "macs": "MACs",
    "latency_ms": "latency b=1 (ms)",
    "images_per_s": "images/s",
    "plan_macs_ratio": "skip plan: kept MACs share",
    "macs_per_step": "MACs per step with the plan",
}
