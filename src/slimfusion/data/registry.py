"""Resolve a data spec string (as the CLI takes it) to an image tensor."""

from __future__ import annotations

from pathlib import Path

import torch

from slimfusion.data.digits import load_digits_split
from slimfusion.data.folder import load_image_folder
from slimfusion.errors import DataError

DIGITS_SPLITS = ("train", "test", "all")


def load_images(spec: str, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """Images [N, C, H, W] in [-1, 1] for a spec: `digits` (train split), `digits:test`, `digits:all` or a folder.

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
    if Path(spec).exists():
        if size is None:
            raise DataError(f"an image size is needed to load the folder {spec}")
        return load_image_folder(spec, size=size, channels=channels or 3)
    raise DataError(f"unknown data set {spec!r}: use digits, digits:test, digits:all or an image folder path")
