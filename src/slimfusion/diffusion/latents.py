"""VAE latents of latent denoisers: images in [-1, 1] to scaled latents and back."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def encode(vae: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Scaled latents (posterior means x scaling_factor) of images in [-1, 1]: what a latent denoiser trains on."""
    vae.eval()
    scale = vae.config.scaling_factor
    return torch.cat([vae.encode(chunk).latent_dist.mode() * scale for chunk in images.split(batch)])


@torch.no_grad()
def decode(vae: nn.Module, latents: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Images in [-1, 1] from scaled latents."""
    vae.eval()
    scale = vae.config.scaling_factor
    return torch.cat([vae.decode(chunk / scale).sample.clamp(-1, 1) for chunk in latents.split(batch)])
