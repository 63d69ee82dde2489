"""Measure a compressed model: quality against reference data, consistency with the original, and cost.

Inputs are a model (sampled here with a seeded DDIM run) or a samples folder written by `slimfusion sample`.
The metric names say what they are: `fd` is the Frechet distance in builtin:digits-features space; `fid` is
InceptionV3 FID and exists only when its weights are on disk.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.console import Console
from rich.table import Table

from slimfusion.data import load_images
from slimfusion.diffusion.schedulers import known_solver, stored_sampler
from slimfusion.errors import ConfigError
from slimfusion.metrics.accuracy import accuracy_unavailable, asked_digits, digit_accuracy
from slimfusion.metrics.clip import clip_score_or_reason
from slimfusion.metrics.consistency import psnr, ssim
from slimfusion.metrics.cost import count_macs, count_params, measure_latency
from slimfusion.metrics.fd import frechet_distance
from slimfusion.metrics.fid import MISSING_WEIGHTS
from slimfusion.metrics.stats import compute_stats, load_stats
from slimfusion.pipelines import denoiser_of, load_for_sampling
from slimfusion.progress import console
from slimfusion.sample import (
    DEFAULT_GUIDANCE,
    SAMPLER_FIELDS,
    SampleConfig,
    load_samples,
    sample,
    source_of,
    with_own_sampler,
)
from slimfusion.skip.plan import measured_macs_ratio
from slimfusion.skip.use import sampling_plan

METRICS = ("fd", "fid", "accuracy", "clip", "ssim", "psnr", "cost")
Metric = Literal["fd", "fid", "accuracy", "clip", "ssim", "psnr", "cost"]


class EvaluateConfig(BaseModel):
    """What to measure and how to sample models.

    Args:
        metrics (`list[str]`, optional): any of fd, fid, ssim, psnr, cost; default: every metric the inputs allow
            (fd with a reference, ssim + psnr with an original, cost for a model).
        num (`int`, defaults to 1000): images sampled from a model.
        steps (`int`, defaults to 50): sampling steps.
        scheduler (`str`, defaults to "ddim"): the solver models are sampled with (`slimfusion.diffusion.SOLVERS`).
        spacing (`str`, optional): timestep spacing; karras (`bool`): Karras sigmas (see `SampleConfig`).
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
    seed: int = Field(0, ge=0)
    batch_size: int = Field(250, ge=1)
    inception_weights: str | None = None
    prompts: list[str] | None = Field(None, min_length=1)
    class_labels: list[int] | None = Field(None, min_length=1)
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0)
    clip_model: str | None = None
    plan: str | None = None
    no_plan: bool = False

    _known_solver = field_validator("scheduler")(classmethod(lambda cls, value: known_solver(value)))

    def sample_config(self):
        """The sampling settings; sampler fields left unset stay unset, so a step-distilled model uses its own."""
        keys = ("num", "steps", "scheduler", "spacing", "karras", "seed", "batch_size", "prompts", "class_labels")
        values = self.model_dump(include={*keys, "guidance"})
        return SampleConfig(
            **{k: v for k, v in values.items() if k not in SAMPLER_FIELDS or k in self.model_fields_set}
        )


class _Images(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    images: torch.Tensor
    record: dict[str, Any]
    model: Any = None
    images_per_s: float | None = None
    plan: Any = None  # the SkipPlan the images were sampled with


def _resolve(spec, config: EvaluateConfig, progress: bool, plan: str | None = None, target: bool = True):
    """A samples folder as is, or a model sampled with the config's seed and solver, with its skip plan: `plan`,
    else the one stored in the model (for the target unless `config.no_plan`; for the original always)."""
    held = not isinstance(spec, (str, Path))  # a model or pipeline object already in memory
    if not held and (Path(spec) / "samples.npz").exists():
        if plan is not None:
            raise ConfigError("--plan applies to a model, not to a samples folder")
        images, record = load_samples(spec)
        return _Images(images=images, record=record)
    sampler = spec if held else load_for_sampling(spec)
    name = source_of(sampler) if held else spec
    sample_config = with_own_sampler(sampler, config.sample_config())
    no_plan = config.no_plan and target
    start = time.perf_counter()
    with sampling_plan(sampler, plan, no_plan, sample_config.scheduler, sample_config.steps) as chosen:
        images = sample(sampler, sample_config.model_copy(update={"no_plan": True}), progress=progress)
    rate = len(images) / (time.perf_counter() - start)
    used = None if chosen is None else (plan or "stored in the model")
    own = stored_sampler(denoiser_of(sampler)) is not None
    record = sample_config.model_dump() | {
        "model": name, "indices": list(range(config.num)), "plan": used, "own_sampler": own
    }  # fmt: skip
    return _Images(images=images, record=record, model=denoiser_of(sampler), images_per_s=rate, plan=chosen)


def _same_noise(a: dict, b: dict) -> None:
    """Refuse SSIM / PSNR between sets from different noise or conditions. The solver must match too, unless one side
    is a step-distilled model on its own sampler (compared with the original's from the same starting noise)."""
    defaults = {"prompts": None, "class_labels": None, "spacing": None, "karras": False}  # what older records mean
    keys = ["seed", "indices", "prompts", "class_labels"]
    if not (a.get("own_sampler") or b.get("own_sampler")):
        keys += ["steps", "scheduler", "spacing", "karras"]
    for key in keys:
        if key not in defaults and (key not in a or key not in b):
            raise ConfigError("SSIM / PSNR need samples from identical noise; a samples folder lacks sampling.json")
        if a.get(key, defaults.get(key)) != b.get(key, defaults.get(key)):
            raise ConfigError(
                f"SSIM / PSNR need samples from identical noise and conditions; the two sets differ in {key}"
            )


def _reference_stats(ref: str, space: str, config: EvaluateConfig, like: torch.Tensor) -> dict:
    """Cached statistics, a samples folder, or a data set loaded at the size / channels of the evaluated images."""
    if ref.endswith(".npz"):
        stats = load_stats(ref)
        if stats["space"] != space:
            raise ConfigError(f"--ref {ref} holds {stats['space']} statistics, {space} ones are needed here")
        return stats
    if (Path(ref) / "samples.npz").exists():
        return compute_stats(load_samples(ref)[0], space, config.inception_weights)
    images = load_images(ref, size=like.shape[-1], channels=like.shape[1])
    return compute_stats(images, space, config.inception_weights)


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
            `slimfusion stats`), for fd / fid.
        original (`str`, optional): the uncompressed model or its samples folder, for ssim / psnr.
        progress (`bool`, defaults to True): progress bars while sampling.

    Returns:
        {"target", "metrics": {name: value}, "skipped": {name: reason}, "num", "sampling"}.
    """
    config = config or EvaluateConfig()
    subject = _resolve(target, config, progress, config.plan)
    wanted = list(config.metrics) if config.metrics else _default_metrics(subject, ref, original)
    _check_inputs(wanted, subject, ref, original)
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for space, name in (("digits-features", "fd"), ("inception-v3", "fid")):
        if name not in wanted:
            continue
        if name == "fid" and config.inception_weights is None:
            skipped["fid"] = MISSING_WEIGHTS
            continue
        stats = compute_stats(subject.images, space, config.inception_weights)
        reference = _reference_stats(ref, space, config, subject.images)
        values[name] = frechet_distance(stats["mu"], stats["sigma"], reference["mu"], reference["sigma"])
    if "accuracy" in wanted:
        reason = accuracy_unavailable(subject.images, subject.record)
        if reason:
            skipped["accuracy"] = reason
        else:
            values["accuracy"] = digit_accuracy(subject.images, asked_digits(subject.record))
    if "clip" in wanted:
        score, reason = clip_score_or_reason(subject.images, subject.record, config.clip_model)
        if reason:
            skipped["clip"] = reason
        else:
            values["clip"] = score
    if "ssim" in wanted or "psnr" in wanted:
        base = _resolve(original, config, progress, target=False)
        _same_noise(subject.record, base.record)
        if "ssim" in wanted:
            values["ssim"] = ssim(subject.images, base.images)
        if "psnr" in wanted:
            values["psnr"] = psnr(subject.images, base.images)
    if "cost" in wanted:
        values |= {
            "params": count_params(subject.model),
            "macs": count_macs(subject.model),
            "latency_ms": 1000 * measure_latency(subject.model, batch=1),
            "images_per_s": subject.images_per_s,
        }
        if subject.plan is not None:
            ratio = measured_macs_ratio(subject.plan, subject.model)
            values |= {"plan_macs_ratio": ratio, "macs_per_step": values["macs"] * ratio}
    return {
        "target": target if isinstance(target, (str, Path)) else subject.record.get("model"),
        "metrics": values,
        "skipped": skipped,
        "num": len(subject.images),
        "sampling": {k: v for k, v in subject.record.items() if k != "indices"},
    }


def _default_metrics(subject: _Images, ref: str | None, original: str | None) -> list[str]:
    wanted = ["fd"] if ref else []
    if subject.record.get("prompts") or subject.record.get("class_labels"):
        wanted += ["accuracy"] + (["clip"] if subject.record.get("prompts") else [])
    wanted += ["ssim", "psnr"] if original else []
    wanted += ["cost"] if subject.model is not None else []
    if not wanted:
        raise ConfigError("nothing to measure: give --ref (fd), --original (ssim, psnr) or a model (cost)")
    return wanted


def _check_inputs(wanted: list[str], subject: _Images, ref: str | None, original: str | None) -> None:
    if ("fd" in wanted or "fid" in wanted) and ref is None:
        raise ConfigError("fd / fid need --ref (reference data or a statistics .npz from `slimfusion stats`)")
    if ("ssim" in wanted or "psnr" in wanted) and original is None:
        raise ConfigError("ssim / psnr need --original (the uncompressed model or its samples folder)")
    if "cost" in wanted and subject.model is None:
        raise ConfigError("cost needs a model, not a samples folder")


def print_result(result: dict[str, Any]) -> None:
    """A rich table of one evaluation; skipped metrics are said, not hidden."""
    labels = {
        "fd": "FD (digits features)",
        "fid": "FID (InceptionV3)",
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
    sampling = result.get("sampling") or {}
    how = f", {sampling['scheduler']} {sampling['steps']} steps" if sampling.get("scheduler") else ""
    own = " (its own sampler)" if sampling.get("own_sampler") else ""
    table = Table(title=f"{result['target']} ({result['num']} images{how}{own})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        text = f"{value:,}" if isinstance(value, int) else f"{value:.4g}" if value is not None else "-"
        table.add_row(labels.get(key, key), text)
    Console().print(table)
    for name, reason in result["skipped"].items():
        console.print(f"[yellow]{name} not computed:[/yellow] {reason}", highlight=False, soft_wrap=True)
