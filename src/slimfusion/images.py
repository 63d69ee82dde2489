"""Images as files: [-1, 1] tensors to uint8, grids, PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] tensors [N, C, H, W] -> uint8 array [N, H, W, C]."""
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images ([-1, 1], [N, C, H, W]) into one uint8 array [H', W', C] with `pad` pixels of white."""
    # By hand: torchvision's make_grid would pull in a torchvision that does not match the pinned CPU torch.
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = arr[i]
    return grid


def save_image(array: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Write a uint8 [H, W, C] array as PNG (grey scale for one channel), optionally upscaled (nearest)."""
    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
