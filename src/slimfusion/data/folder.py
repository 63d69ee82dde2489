"""A folder of the user's own images: resized, centre-cropped, converted to 1 or 3 channels, scaled to [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from slimfusion.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def _load_one(path: Path, size: int, mode: str) -> np.ndarray:
    # Plain PIL: torchvision's wheels do not match the pinned CPU torch, and this is four lines.
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            scale = size / min(im.size)
            im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def image_files(path: str | Path) -> list[Path]:
    """The image files under `path` (recursively), sorted: the order every loader of the folder uses."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def load_image_folder(path: str | Path, size: int, channels: int = 3) -> torch.Tensor:
    """Load every image under `path` (recursively, sorted) as a tensor [N, channels, size, size] in [-1, 1].

    Args:
        path (`str` or `Path`): folder of images (png, jpg, ...).
        size (`int`): output side; the shorter side is resized to it, then the centre is cropped.
        channels (`int`, defaults to 3): 1 for grey scale, 3 for RGB.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    files = image_files(path)
    mode = "L" if channels == 1 else "RGB"
    arrays = np.stack([_load_one(f, size, mode) for f in files])
    return torch.from_numpy(arrays) * 2 - 1
