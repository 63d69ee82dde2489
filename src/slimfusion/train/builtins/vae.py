"""Train the digits `AutoencoderKL` behind the latent built-ins: reconstruction (L1 + MSE) + a small KL term.

As Stable Diffusion's VAE, the KL weight is tiny (the latent is nearly deterministic) and the latents are rescaled by
`scaling_factor` = 1 / their standard deviation on the training set, stored in the VAE's config, so diffusion models
see unit-variance latents.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from slimfusion.diffusion.latents import decode, encode  # noqa: F401  (re-exported)
from slimfusion.models.meta import get_meta, record_step
from slimfusion.progress import progress_bar
from slimfusion.train.builtins.classifier import random_shift


class VAEConfig(BaseModel):
    """Settings of the digits VAE run.

    Args:
        steps (`int`, defaults to 3000): optimizer steps.
        batch_size (`int`, defaults to 64): images per step.
        lr (`float`, defaults to 1e-3): AdamW learning rate, cosine-decayed to 0.
        kl_weight (`float`, defaults to 1e-5): weight of the KL term (summed over latent elements, per image).
        max_shift (`int`, defaults to 1): random translation in pixels (augmentation).
        seed (`int`, defaults to 0): seeds init, batches, augmentation and posterior samples.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    kl_weight: float = Field(1e-5, ge=0)
    max_shift: int = Field(1, ge=0)
    seed: int = 0


def train_vae(vae: nn.Module, images: torch.Tensor, config: VAEConfig, progress: bool = True) -> nn.Module:
    """Train `vae` (an `AutoencoderKL`) in place on images [N, C, H, W] in [-1, 1]; sets its scaling factor."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    start = time.perf_counter()
    running = None
    vae.train()
    with progress_bar(progress) as bar:
        task = bar.add_task("train vae", total=config.steps, status="")
        for step in range(1, config.steps + 1):
            idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
            batch = random_shift(images[idx], config.max_shift, gen)
            posterior = vae.encode(batch).latent_dist
            latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
            recon = vae.decode(latents).sample
            rec = F.l1_loss(recon, batch) + F.mse_loss(recon, batch)
            loss = rec + config.kl_weight * posterior.kl().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            sched.step()
            running = rec.item() if running is None else 0.98 * running + 0.02 * rec.item()
            bar.update(task, completed=step, status=f"recon {running:.4f}")
    vae.eval()
    vae.register_to_config(scaling_factor=1.0)
    std = encode(vae, images).std().item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    effect = {"wall_s": round(time.perf_counter() - start, 1), "recon_loss": running, "latent_std": std}
    get_meta(vae)["source"] = None
    record_step(vae, "train_vae", config.model_dump(), effect)
    return vae
