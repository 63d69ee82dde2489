"""Resolve a data spec string (as the CLI takes it) to an image tensor."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from slimfusion.data.digits import load_digits_split
from slimfusion.data.folder import load_image_folder
from slimfusion.errors import DataError

DIGITS_SPLITS = ("train", "test", "all")


def load_images(spec: str, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """Images [N, C, H, W] in [-1, 1] for a spec: `digits` (train split), `digits:test`, `digits:all`, a folder, or a
    `.safetensors` file holding one tensor [N, C, H, W] (e.g. VAE latents for latent models, used as they are).

    Args:
        spec (`str`): the data set name or an image folder path.
        size (`int`, optional): side length; digits default to 16, folders require it.
        channels (`int`, optional): channels for folders (default 3); digits are always 1.
    """
    name, _, split = spec.partition(":")
    if name == "digits":
        split = split or "train"
        if split not in DIGITS_SPLITS:
            raise DataError(f"unknown digits split {split!r}; choose one of {', '.join(DIGITS_SPLITS)}")
        return load_digits_split(split, size=size or 16)[0]
    if spec.endswith(".safetensors"):
        return load_tensor_file(spec)
    if Path(spec).exists():
        if size is None:
            raise DataError(f"an image size is needed to load the folder {spec}")
        return load_image_folder(spec, size=size, channels=channels or 3)
    raise DataError(
        f"unknown data set {spec!r}: use digits, digits:test, digits:all, an image folder or a .safetensors tensor file"
    )


def load_tensor_file(path: str | Path) -> torch.Tensor:
    """The single 4-D tensor stored in a safetensors file (the key `latents` when there are several)."""
    if not Path(path).is_file():
        raise DataError(f"tensor file not found: {path}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise DataError(f"{path}: corrupt or truncated safetensors file") from exc
    tensor = tensors.get("latents") if len(tensors) != 1 else next(iter(tensors.values()))
    if tensor is None or tensor.ndim != 4:
        raise DataError(f"{path}: expected one 4-D tensor [N, C, H, W] (or one named 'latents'), found {list(tensors)}")
    return tensor.float()
