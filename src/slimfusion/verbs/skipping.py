"""The skip-plan step: make a DiP-GO / DeepCache plan and store it in the model, which then samples with it."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from slimfusion.diffusion.schedulers import SOLVERS
from slimfusion.errors import ConfigError
from slimfusion.models.families import family_of
from slimfusion.models.families.pipeline import embed
from slimfusion.registry import Build, Lever, config_of, register, register_lever
from slimfusion.sample import DEFAULT_GUIDANCE
from slimfusion.skip import SkipConfig, SkipPlan, save_plan, skip_plan, store_plan
from slimfusion.skip.picture import plan_picture
from slimfusion.subject import Subject
from slimfusion.train.conditional_data import NULL_CLASS
from slimfusion.verbs.compress import calibration_conditions

PLAN_NAME = "plan.json"


class SkipOptions(SkipConfig):
    """skip-plan's options: SkipConfig plus DiP-GO's calibration conditions of conditional pipelines."""

    prompts: Path | None = Field(None, description="dipgo / adaptive, text-to-image: calibration prompts file")
    class_labels: str | None = Field(None, description="dipgo, DiT: calibration labels, e.g. 3,7")
    guidance: float = Field(DEFAULT_GUIDANCE, description="dipgo / adaptive: guidance scale during calibration")

    def technique(self) -> SkipConfig:
        return config_of(self, SkipConfig)


def make_plan(subject: Subject, options: SkipOptions, progress: bool = True) -> SkipPlan:
    """The plan for the subject's denoiser (DiP-GO and adaptive calibrate a conditional pipeline on its prompts /
    labels)."""
    conditions = null = None
    if options.method in ("dipgo", "adaptive") and (options.prompts is not None or options.class_labels is not None):
        if not subject.is_pipeline:
            raise ConfigError("--prompts / --class-labels need a pipeline folder (its text encoder or label table)")
        conditions = calibration_conditions(subject, options.prompts, options.class_labels)
        null = embed(subject.obj, [""]) if options.prompts is not None else torch.tensor([NULL_CLASS])
    guidance = options.guidance if conditions is not None else 1.0
    return skip_plan(subject.denoiser, options.technique(), conditions, null, guidance, progress=progress)


def _make_and_store(model, config: SkipConfig, **inputs) -> SkipPlan:
    """`apply(model, SkipConfig(...))`: make the plan and store it in the model (sample / evaluate apply it)."""
    plan = skip_plan(model, config, **inputs)
    store_plan(model, plan)
    return plan


@register("skip-plan", SkipOptions, api={SkipConfig: _make_and_store})
def run_skip_plan(subject: Subject, options: SkipOptions, folder: Path | None = None, progress: bool = True, **context):
    plan = make_plan(subject, options, progress)
    store_plan(subject.denoiser, plan)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        plan_picture(plan, save_plan(plan, folder / PLAN_NAME).with_suffix(".png"))
    return subject


def _cache(build: Build, knobs: dict, method: str = "deepcache") -> None:
    config = SkipConfig(method=method, steps=build.sampling["steps"], scheduler=build.sampling["scheduler"], **knobs)
    build.plan = skip_plan(build.plan_model, config, progress=False)


def _one_deterministic_evaluation(sampling: dict) -> bool:
    """Whether the solver evaluates the model once per step without noise (what step-indexed reuse assumes)."""
    return not SOLVERS[sampling["scheduler"]].stochastic and sampling["scheduler"] != "heun"


def _cache_allowed(denoiser, knobs: dict, sampling: dict) -> str | None:
    if family_of(denoiser).cache_branch is None:
        return f"DeepCache needs a UNet's shallow branch; {type(denoiser).__name__} has none"
    if not _one_deterministic_evaluation(sampling):
        return "DeepCache's static schedule takes deterministic one-evaluation-per-step solvers"
    if sampling["steps"] < 2 * knobs["interval"]:
        return f"{sampling['steps']} steps leave fewer than two full steps at interval {knobs['interval']}"
    return None


# DeepCache as a lever: its interval (a full step every N) on the shallowest branch (the reference's default)
register_lever(
    Lever(
        "cache",
        "plan",
        {"interval": (2, 3), "branch": (0,)},
        _cache,
        lambda k: f"DeepCache N={k['interval']}" + (f" b{k['branch']}" if k["branch"] else ""),
        allowed=_cache_allowed,
    )
)

# TaylorSeer as a lever: DeepCache's schedule with the reused outputs forecast (order 1: linear, 2: quadratic)
register_lever(
    Lever(
        "forecast",
        "plan",
        {"interval": (2, 3), "order": (1, 2), "branch": (0,)},
        lambda build, knobs: _cache(build, knobs, "taylorseer"),
        lambda k: f"TaylorSeer N={k['interval']} K={k['order']}" + (f" b{k['branch']}" if k["branch"] else ""),
        allowed=_cache_allowed,
        excludes=("cache",),
    )
)


def _adaptive_allowed(denoiser, knobs: dict, sampling: dict) -> str | None:
    if type(denoiser).__name__ != "UNet2DModel":
        return "adaptive caching calibrates on the model alone: unconditional UNets (skip-plan takes --prompts)"
    if not _one_deterministic_evaluation(sampling):
        return "adaptive caching takes deterministic one-evaluation-per-step solvers"
    return None


# adaptive caching as a lever: DeepCache's branch reused while its input barely changes, at a kept-MACs target
register_lever(
    Lever(
        "adaptive",
        "plan",
        {"target": (0.5, 0.35), "branch": (0,)},
        lambda build, knobs: _cache(build, knobs, "adaptive"),
        lambda k: f"adaptive cache {k['target']:g}" + (f" b{k['branch']}" if k["branch"] else ""),
        allowed=_adaptive_allowed,
        excludes=("cache", "forecast"),
        share=lambda k: k["target"],
    )
)
