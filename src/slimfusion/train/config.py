"""The settings of one training run (from scratch or recovery): the one config behind train and finetune."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Settings of one training run.

    Args:
        steps (`int`, defaults to 8000): optimizer steps.
        batch_size (`int`, defaults to 64): images per step.
        lr (`float`, defaults to 5e-4): AdamW peak learning rate (after linear warm-up).
        warmup_steps (`int`, defaults to 200): linear warm-up length.
        lr_decay (`str`, defaults to "constant"): after warm-up, "constant" keeps `lr`; "cosine" decays it to 0
            at the last step.
        weight_decay (`float`, defaults to 0.0): AdamW weight decay.
        grad_clip (`float`, defaults to 1.0): max global gradient norm.
        ema_decay (`float`, defaults to 0.999): max decay of the EMA weights, which are what gets returned.
        seed (`int`, defaults to 0): seeds batches, noise, timesteps.
        num_train_timesteps (`int`, defaults to 1000): DDPM steps of the linear beta schedule.
        mixed_precision (`str`, defaults to "no"): "no", "bf16" or "fp16" (fp16 needs a GPU), through Accelerate.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    steps: int = Field(8000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(200, ge=0)
    lr_decay: Literal["constant", "cosine"] = "constant"
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    seed: int = 0
    num_train_timesteps: int = Field(1000, ge=2)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
