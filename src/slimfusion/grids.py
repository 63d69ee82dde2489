"""A sample grid with one labelled row per prompt or class: what a reader needs to judge conditional samples."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from slimfusion.images import to_uint8

MAX_ROWS = 16
PER_ROW = 8


def labelled_grid(images: torch.Tensor, labels: list[str], tile: int = 64, pad: int = 2):
    """A PIL image: one row per distinct label (first 16, in order of appearance), its first 8 images, the label left.

    Args:
        images (`torch.Tensor`): [N, C, H, W] in [-1, 1].
        labels (`list[str]`): the prompt or class of each image.
        tile (`int`, defaults to 64): side of each image in the grid (nearest-neighbour upscaling).
        pad (`int`, defaults to 2): white pixels between tiles.
    """
    rows: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if label in rows or len(rows) < MAX_ROWS:
            rows.setdefault(label, [])
            if len(rows[label]) < PER_ROW:
                rows[label].append(i)
    font = ImageFont.load_default()
    text_w = max(int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font=font)) for label in rows) + 8
    width = text_w + PER_ROW * (tile + pad) + pad
    canvas = Image.new("RGB", (width, len(rows) * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    arrays = to_uint8(images)
    for r, (label, members) in enumerate(rows.items()):
        top = pad + r * (tile + pad)
        draw.text((4, top + tile // 2 - 6), label, fill="black", font=font)
        for c, i in enumerate(members):
            arr = arrays[i]
            img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).convert("RGB")
            canvas.paste(img.resize((tile, tile), Image.NEAREST), (text_w + pad + c * (tile + pad), top))
    return canvas
