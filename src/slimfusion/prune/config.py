"""`StructuralConfig`: one validated, versioned, JSON-serialisable description of a structural pruning run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        from slimfusion.prune.importance import METHODS

        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(METHODS)}")
        return value
