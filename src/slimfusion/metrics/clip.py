"""CLIP score of text-to-image samples: 100 x max(cos(image, prompt), 0) in a local CLIP model's embedding space.

Computed with transformers' `CLIPModel` loaded from safetensors only (torchmetrics' CLIPScore would accept a folder
with pickled weights); no weights are downloaded, so without `--clip-model` the score is reported as not computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

MISSING_CLIP = "CLIP score needs local CLIP weights: pass --clip-model DIR (a CLIPModel folder with safetensors)"


def clip_score_or_reason(images: torch.Tensor, record: dict, clip_model: str | None) -> tuple[Any, str | None]:
    """(per-image scores [N], None), or (None, why it was not computed)."""
    prompts = record.get("prompts")
    if not prompts:
        return None, "CLIP score is for text-to-image samples (no prompts)"
    if clip_model is None:
        return None, MISSING_CLIP
    folder = Path(clip_model)
    if not folder.is_dir() or not list(folder.glob("*.safetensors")):
        return None, f"--clip-model {clip_model}: not a folder with safetensors CLIP weights"
    texts = [prompts[i % len(prompts)] for i in record["indices"]]
    return clip_scores(images, texts, folder), None


@torch.no_grad()
def clip_scores(images: torch.Tensor, texts: list[str], folder: Path, batch: int = 64) -> np.ndarray:
    """CLIP score of each image ([N, C, H, W] in [-1, 1]; grey scale is repeated to RGB) against its text [N]."""
    # lazy: importing transformers' CLIP processor warns about torchvision and costs import time for every command
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(folder), use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(str(folder))
    rgb = ((images.clamp(-1, 1) + 1) / 2).expand(-1, 3, -1, -1) if images.shape[1] == 1 else (images + 1) / 2
    scores = []
    for first in range(0, len(rgb), batch):
        chunk = list(rgb[first : first + batch])
        inputs = processor(
            text=texts[first : first + batch], images=chunk, return_tensors="pt", padding=True, do_rescale=False
        )
        out = model(**inputs)
        img = torch.nn.functional.normalize(out.image_embeds, dim=-1)
        txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)
        scores.append(100 * (img * txt).sum(-1).clamp_min(0))
    return torch.cat(scores).double().numpy()
