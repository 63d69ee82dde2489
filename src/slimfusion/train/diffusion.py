"""Train a denoiser with the DDPM noise-prediction loss (AdamW, warm-up, gradient clipping, EMA weights)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from slimfusion.models.meta import get_meta, record_step
from slimfusion.progress import progress_bar


class TrainConfig(BaseModel):
    """Settings of one training run.

    Args:
        steps (`int`, defaults to 8000): optimizer steps.
        batch_size (`int`, defaults to 64): images per step.
        lr (`float`, defaults to 5e-4): AdamW peak learning rate (after linear warm-up).
        warmup_steps (`int`, defaults to 200): linear warm-up length.
        weight_decay (`float`, defaults to 0.0): AdamW weight decay.
        grad_clip (`float`, defaults to 1.0): max global gradient norm.
        ema_decay (`float`, defaults to 0.999): max decay of the EMA weights, which are what gets returned.
        seed (`int`, defaults to 0): seeds batches, noise, timesteps.
        num_train_timesteps (`int`, defaults to 1000): DDPM steps of the linear beta schedule.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    steps: int = Field(8000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(200, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    seed: int = 0
    num_train_timesteps: int = Field(1000, ge=2)


def default_scheduler_config(num_train_timesteps: int = 1000) -> dict:
    """The DDPM schedule the built-in models are trained with (linear betas 1e-4..0.02, epsilon prediction)."""
    return dict(DDPMScheduler(num_train_timesteps=num_train_timesteps).config)


def train_diffusion(
    model: nn.Module,
    images: torch.Tensor,
    config: TrainConfig,
    progress: bool = True,
    on_checkpoint: Callable[[nn.Module, int], None] | None = None,
    checkpoint_every: int = 0,
) -> nn.Module:
    """Train `model` in place on `images` ([N, C, H, W] in [-1, 1]) and load its EMA weights into it.

    Args:
        model (`nn.Module`): a UNet2DModel-like denoiser called as `model(noisy, t).sample`.
        images (`torch.Tensor`): the training set.
        config (`TrainConfig`): the run's settings.
        progress (`bool`, defaults to True): show a progress bar with loss and steps/s.
        on_checkpoint (`Callable`, optional): called with (EMA copy of the model, step) every `checkpoint_every` steps.
        checkpoint_every (`int`, defaults to 0): 0 disables intermediate checkpoints.
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    scheduler_config = get_meta(model).get("scheduler") or default_scheduler_config(config.num_train_timesteps)
    noise_scheduler = DDPMScheduler.from_config(scheduler_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lr_lambda = lambda step: min(1.0, (step + 1) / max(1, config.warmup_steps))  # noqa: E731
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4)
    model.train()
    start, running = time.perf_counter(), None
    with progress_bar(progress) as bar:
        task = bar.add_task("train", total=config.steps, status="")
        for step in range(1, config.steps + 1):
            idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
            clean = images[idx]
            noise = torch.randn(clean.shape, generator=gen)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(clean),), generator=gen)
            noisy = noise_scheduler.add_noise(clean, noise, t)
            loss = F.mse_loss(model(noisy, t).sample, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            lr_sched.step()
            ema.step(model.parameters())
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            rate = step / (time.perf_counter() - start)
            bar.update(task, advance=1, status=f"loss {running:.4f}  {rate:.2f} steps/s")
            if on_checkpoint and checkpoint_every and step % checkpoint_every == 0 and step < config.steps:
                on_checkpoint(_ema_copy(model, ema), step)
    ema.copy_to(model.parameters())
    model.eval()
    meta = get_meta(model)
    meta["scheduler"] = scheduler_config
    record_step(
        model,
        "train",
        config.model_dump(),
        {"wall_s": round(time.perf_counter() - start, 1), "final_loss": running, "train_images": len(images)},
    )
    return model


def _ema_copy(model: nn.Module, ema: EMAModel) -> nn.Module:
    snapshot = copy.deepcopy(model)
    ema.copy_to(snapshot.parameters())
    return snapshot.eval()
