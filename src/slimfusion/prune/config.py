"""`StructuralConfig`: one validated, versioned, JSON-serialisable description of a structural pruning run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slimfusion.prune.importance import METHODS

Compat = Literal["torch-pruning", "paper"]


class StructuralConfig(BaseModel):
    """How to prune.

    Args:
        method (`str`, defaults to "diff-pruning"): importance criterion, a key of `slimfusion.prune.METHODS`:
            random, magnitude, taylor, diff-pruning or reinit.
        ratio (`float`, defaults to 0.3): fraction of channels to remove from every prunable layer group, in (0, 1);
            see docs/pruning.md for how GroupNorm groups and `round_to` round it.
        threshold (`float`, defaults to 0.05): diff-pruning's T: gradients are accumulated over t = 0, 1, 2, ... and
            stop at the first timestep whose loss is below T x the largest loss so far. 0 uses every timestep.
        calib_batches (`int`, defaults to 1): calibration batches per timestep (taylor, diff-pruning).
        batch_size (`int`, defaults to 64): images per calibration batch.
        round_to (`int`, optional): keep channel counts multiples of this (e.g. 8 for tensor cores).
        compat (`str`, defaults to "torch-pruning"): "torch-pruning" rounds per GroupNorm group as Torch-Pruning 1.6
            does (removes at least `ratio`); "paper" reproduces the Diff-Pruning paper's Torch-Pruning 1.3 rounding
            (removes at most `ratio`) and so its pruned architectures.
        seed (`int`, defaults to 0): seeds random importance, calibration images and noise.
        min_group_channels (`int`, defaults to 2): no GroupNorm group is left with fewer channels than this (or
            than it had): where rounding would, the norm's groups are merged (docs/pruning.md). 1 keeps every group
            count as Torch-Pruning does.
        calib_sample_steps (`int`, defaults to 25): DDIM steps of the model's own calibration samples, when a
            conditional model is calibrated from prompts or class labels instead of data.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    method: str = "diff-pruning"
    ratio: float = Field(0.3, gt=0, lt=1)
    threshold: float = Field(0.05, ge=0, lt=1)
    calib_batches: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1)
    round_to: int | None = Field(None, ge=1)
    compat: Compat = "torch-pruning"
    seed: int = 0
    calib_sample_steps: int = Field(25, ge=1)
    min_group_channels: int = Field(2, ge=1)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(METHODS)}")
        return value


class DepthConfig(BaseModel):
    """How to prune depth (whole layers / blocks; see docs/pruning.md).

    Args:
        method (`str`, defaults to "greedy"): "greedy" (remove the candidate whose bypass raises the calibration
            loss least per MACs saved, repeatedly) or "learned" (gates trained on the distillation loss).
        target_macs (`float`, optional): keep this share of the MACs, in (0, 1); met within `tolerance`.
        remove (`list[str]`, optional): explicit units instead ("mid_block", "transformer_blocks.3",
            "down_blocks.1.1+up_blocks.1.0"); no calibration then.
        tolerance (`float`, defaults to 0.02): how far below the target the kept MACs may fall.
        timesteps (`int`, defaults to 8): timesteps (evenly spread over training's) the calibration loss uses.
        batch_size (`int`, defaults to 32): calibration samples per timestep.
        calib_batches (`int`, defaults to 1): with self-sampled calibration, batches of samples to generate.
        calib_sample_steps (`int`, defaults to 25): DDIM steps of self-sampled calibration images.
        learn_steps (`int`, defaults to 100), learn_lr (`float`, 0.1), init_logit (`float`, 3.0),
            macs_weight (`float`, 10.0): the learned variant's optimisation (Adam on the gate logits).
        seed (`int`, defaults to 0): seeds calibration batches and noise.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    method: Literal["greedy", "learned"] = "greedy"
    target_macs: float | None = Field(None, gt=0, lt=1)
    remove: list[str] | None = Field(None, min_length=1)
    tolerance: float = Field(0.02, ge=0, lt=1)
    timesteps: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    calib_batches: int = Field(1, ge=1)
    calib_sample_steps: int = Field(25, ge=1)
    learn_steps: int = Field(100, ge=1)
    learn_lr: float = Field(0.1, gt=0)
    init_logit: float = 3.0
    macs_weight: float = Field(10.0, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_way(self) -> DepthConfig:
        if (self.target_macs is None) == (self.remove is None):
            raise ValueError("give --target-macs R or --remove NAMES (one of them)")
        return self
