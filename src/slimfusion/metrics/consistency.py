"""Consistency with the original model: SSIM and PSNR between images made from identical noise.

Both through torchmetrics; images are in [-1, 1] (data range 2). Small images (digits are 16x16) get a smaller
Gaussian window than the default 11 so that SSIM still has interior pixels to compare.
"""

from __future__ import annotations

import numpy as np
import torch

from slimfusion.errors import ConfigError


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ConfigError(f"consistency needs image sets of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM over image pairs (a[i], b[i]), images [N, C, H, W] in [-1, 1]; 1 for identical sets."""
    return float(ssim_per_image(a, b).mean())


def ssim_per_image(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """SSIM of each image pair [N] (the samples an interval is bootstrapped over)."""
    _check_pair(a, b)
    kernel = 11 if min(a.shape[-2:]) >= 32 else 7
    return ssim_index(a.float(), b.float(), kernel, reduction="none").double().numpy()


def ssim_index(a: torch.Tensor, b: torch.Tensor, kernel: int, reduction: str = "elementwise_mean") -> torch.Tensor:
    """Differentiable SSIM (mean, or per image with reduction "none") of images in [-1, 1], Gaussian window of
    `kernel` pixels."""
    # lazy: torchmetrics costs ~2 s of import time, paid only by commands that measure SSIM / PSNR
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(a, b, data_range=2.0, kernel_size=kernel, reduction=reduction)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR (dB) over image pairs, images in [-1, 1]; infinite for identical sets."""
    return float(psnr_per_image(a, b).mean())


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """PSNR (dB) of each image pair [N]; infinite for an identical pair."""
    # lazy: torchmetrics costs ~2 s of import time, paid only by commands that measure SSIM / PSNR
    from torchmetrics.functional.image import peak_signal_noise_ratio  # lazy: as in ssim_index

    _check_pair(a, b)
    value = peak_signal_noise_ratio(a.float(), b.float(), data_range=2.0, reduction="none", dim=(1, 2, 3))
    return value.double().numpy()
