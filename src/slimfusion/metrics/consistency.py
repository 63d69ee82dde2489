"""Consistency with the original model: SSIM and PSNR between images made from identical noise.

Both through torchmetrics; images are in [-1, 1] (data range 2). Small images (digits are 16x16) get a smaller
Gaussian window than the default 11 so that SSIM still has interior pixels to compare.
"""

from __future__ import annotations

import torch

from slimfusion.errors import ConfigError


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ConfigError(f"consistency needs image sets of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM over image pairs (a[i], b[i]), images [N, C, H, W] in [-1, 1]; 1 for identical sets."""
    _check_pair(a, b)
    kernel = 11 if min(a.shape[-2:]) >= 32 else 7
    return float(ssim_index(a.float(), b.float(), kernel))


def ssim_index(a: torch.Tensor, b: torch.Tensor, kernel: int) -> torch.Tensor:
    """Differentiable mean SSIM of images in [-1, 1] with a Gaussian window of `kernel` pixels."""
    # lazy: torchmetrics costs ~2 s of import time, paid only by commands that measure SSIM / PSNR
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(a, b, data_range=2.0, kernel_size=kernel, reduction="elementwise_mean")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) over image pairs, images in [-1, 1]; infinite for identical sets."""
    # lazy: torchmetrics costs ~2 s of import time, paid only by commands that measure SSIM / PSNR
    from torchmetrics.functional.image import peak_signal_noise_ratio  # lazy: as in ssim_index

    _check_pair(a, b)
    value = peak_signal_noise_ratio(a.float(), b.float(), data_range=2.0, reduction="elementwise_mean", dim=(1, 2, 3))
    return float(value)
