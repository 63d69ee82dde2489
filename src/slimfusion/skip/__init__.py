"""Timestep-wise block skipping: `skip_plan(model, SkipConfig(...))` -> a `SkipPlan`; `with apply_plan(model, plan):`.

The methods share one plan format and one code path: DiP-GO (a learned plan per step and block), DeepCache (a static
schedule with a shallow branch), TaylorSeer (DeepCache's schedule, reused outputs forecast) and adaptive (DeepCache's
branch, reused while its input barely changes; decided at run time). See docs/skipping.md.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from slimfusion.diffusion import calibration_noise, make_scheduler, predictor
from slimfusion.diffusion.schedulers import known_solver
from slimfusion.errors import ConfigError
from slimfusion.skip.adaptive import fit_threshold
from slimfusion.skip.deepcache import branch_reuse, deepcache_reuse
from slimfusion.skip.dipgo import plan_from_scores, train_pruner
from slimfusion.skip.graph import cascade, consumers, kept_macs_ratio, skip_units, top_level, unit_macs
from slimfusion.skip.hooks import SkipState, apply_plan
from slimfusion.skip.plan import (
    PLAN_FILE,
    SkipPlan,
    check_plan,
    load_plan,
    model_fingerprint,
    save_plan,
    store_plan,
)

__all__ = [
    "PLAN_FILE",
    "SkipConfig",
    "SkipPlan",
    "SkipState",
    "apply_plan",
    "check_plan",
    "load_plan",
    "save_plan",
    "skip_plan",
    "store_plan",
]


class SkipConfig(BaseModel):
    """How to make a skip plan.

    Args:
        method (`str`, defaults to "dipgo"): "dipgo" (learned), "deepcache" (static schedule), "taylorseer"
            (DeepCache's schedule, the reused outputs forecast from their last full computations) or "adaptive"
            (DeepCache's branch reused while its input barely changes: decided at run time, a threshold fitted to
            `target`).
        steps (`int`, defaults to 50): sampling steps the plan is for.
        scheduler (`str`, defaults to "ddim"): the solver the plan is for; DiP-GO learns on the DDIM chain only
            (its checkpointed steps must be stateless), DeepCache's static schedule takes any one-evaluation-per-step
            solver.
        target (`float`, defaults to 0.25): DiP-GO's and adaptive's kept share of the sampling run's MACs, in (0, 1].
        tolerance (`float`, defaults to 0.0125): DiP-GO's post-processing stops within this of the target.
        iterations (`int`, defaults to 100): DiP-GO's SGD iterations (cosine schedule).
        lr (`float`, defaults to 0.02): DiP-GO's SGD learning rate (momentum 0.9); higher rates flip many gates at
            once and the plans lose quality (benchmarks/results/skip_digits.md).
        loss (`str`, defaults to "ssim"): DiP-GO's consistency loss: "ssim" (the paper's best), "l1" or "l2".
        sparsity_weight (`float`, defaults to 1.0): weight of the MACs-weighted sparsity term.
        calib (`int`, defaults to 32): calibration noises (from the seed), DiP-GO and adaptive.
        batch_size (`int`, defaults to 8): calibration noises per iteration, DiP-GO; per calibration run, adaptive.
        checkpoint (`bool`, defaults to True): DiP-GO recomputes each sampling step in the backward pass, so memory
            stays flat in the step count (False: faster, memory grows with the steps).
        interval (`int`, defaults to 3): DeepCache's cache interval N (a full step every N).
        branch (`int`, defaults to 0): DeepCache's skip branch (block b // 3, layer b % 3).
        uniform (`bool`, defaults to True): DeepCache's uniform schedule; False: the paper's non-uniform one.
        center (`int`, optional): DeepCache's non-uniform schedule's center step (default: steps // 2).
        order (`int`, defaults to 1): TaylorSeer's extrapolation order K over the last K + 1 full computations of
            each reused block (0: DeepCache's plain reuse).
        seed (`int`, defaults to 0): seeds the calibration noise and the pruner network.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    method: Literal["dipgo", "deepcache", "taylorseer", "adaptive"] = "dipgo"
    steps: int = Field(50, ge=2, le=1000)
    scheduler: str = "ddim"
    target: float = Field(0.25, gt=0, le=1)
    tolerance: float = Field(0.0125, gt=0)
    iterations: int = Field(100, ge=1)
    lr: float = Field(0.02, gt=0)
    loss: Literal["ssim", "l1", "l2"] = "ssim"
    sparsity_weight: float = Field(1.0, ge=0)
    calib: int = Field(32, ge=1)
    batch_size: int = Field(8, ge=1)
    checkpoint: bool = True
    interval: int = Field(3, ge=1)
    branch: int = Field(0, ge=0)
    uniform: bool = True
    center: int | None = None
    order: int = Field(1, ge=0, le=4)
    seed: int = 0

    @model_validator(mode="after")
    def _solver_fits(self) -> SkipConfig:
        known_solver(self.scheduler)
        if self.method == "dipgo" and self.scheduler != "ddim":
            raise ValueError(
                f"DiP-GO learns plans on the DDIM chain; --scheduler {self.scheduler} works with deepcache"
            )
        if self.scheduler == "heun":
            raise ValueError("heun evaluates the model twice per step; a skip plan counts one evaluation per step")
        return self


def skip_plan(
    model: nn.Module,
    config: SkipConfig,
    conditions: torch.Tensor | None = None,
    null: torch.Tensor | None = None,
    guidance: float = 1.0,
    progress: bool = True,
) -> SkipPlan:
    """Make a skip plan for `model` sampled with DDIM in `config.steps` steps.

    Args:
        model (`nn.Module`): a UNet2DModel, UNet2DConditionModel or DiT denoiser.
        config (`SkipConfig`): method and settings.
        conditions (`torch.Tensor`, optional): DiP-GO calibration conditioning of conditional models (text-encoder
            states [K, L, D] or class labels [K]), cycled over the calibration noises.
        null (`torch.Tensor`, optional): the unconditional conditioning (one item) for classifier-free guidance.
        guidance (`float`, defaults to 1.0): guidance scale used during calibration (1: off).
        progress (`bool`, defaults to True): progress bar with loss and kept ratio.
    """
    units = skip_units(model, fine=config.method != "dipgo")
    macs, total = unit_macs(model, units)
    scheduler = make_scheduler(model, config.scheduler, config.steps)
    settings = config.model_dump(exclude={"version"})
    if config.method in ("dipgo", "adaptive"):  # both calibrate where the model lives (a GPU makes it minutes)
        if conditions is None and type(model).__name__ != "UNet2DModel":
            raise ConfigError(f"{type(model).__name__} is conditional: give calibration prompts or class labels")
        device = next(model.parameters()).device
        noise = calibration_noise(model, config.calib, config.seed).to(device)
        conditions, null = (None if t is None else t.to(device) for t in (conditions, null))
    macs_ratio = None
    if config.method in ("deepcache", "taylorseer"):
        keys = ("method", "steps", "scheduler", "interval", "branch", "uniform", "center")
        keys += ("order",) if config.method == "taylorseer" else ()
        settings = {k: settings[k] for k in keys}
        reuse = deepcache_reuse(model, config.steps, config.interval, config.branch, config.uniform, config.center)
    elif config.method == "adaptive":
        kept = ("method", "steps", "scheduler", "branch", "target", "calib", "batch_size", "seed")
        settings = {k: settings[k] for k in kept}
        branch = branch_reuse(model, config.branch)
        reuse = [[]] + [list(branch)] * (config.steps - 1)  # what may be reused; the gate decides at run time
        blocks = [u for u in units if u in top_level(branch)]
        predict = predictor(model, conditions, null, guidance)
        threshold, macs_ratio = fit_threshold(
            model, scheduler, noise, predict, blocks, macs, total, config.target, config.batch_size
        )
        settings |= {"threshold": threshold, "guidance": guidance}
    else:
        names = top_level(units)
        graph = consumers(model, names)
        weights = torch.tensor([sum(macs[u] for u in cascade({n}, graph)) / total for n in names], device=device)

        def predictors(idx: torch.Tensor):
            return predictor(model, conditions, null, guidance, indices=idx)

        keep, log = train_pruner(
            model, scheduler, noise, predictors, names, weights, graph, macs, total, config, progress
        )
        reuse, _, threshold = plan_from_scores(keep, names, graph, macs, total, config.target, config.tolerance)
        settings |= {"threshold": threshold, "log": log, "guidance": guidance}
        units = names
    return SkipPlan(
        model_class=type(model).__name__,
        model_hash=model_fingerprint(model),
        scheduler=config.scheduler,
        steps=config.steps,
        units=units,
        reuse=reuse,
        macs_ratio=round(kept_macs_ratio(reuse, macs, total) if macs_ratio is None else macs_ratio, 6),
        method=config.method,
        settings=settings,
    )
