"""Calibration data for conditional models: the model's own samples for prompts or class labels.

Text-to-image and class-conditional models are calibrated on latents they generate themselves, each paired with the
conditioning it was generated from, so Taylor / Diff-Pruning gradients see the inputs the model meets in use.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slimfusion.data.prompts import read_prompts  # noqa: F401  (re-exported: the CLI's prompt files)
from slimfusion.diffusion import repeat_to, self_samples  # noqa: F401  (re-exported for existing callers)
from slimfusion.errors import ConfigError, NotAModelError
from slimfusion.models.families.pipeline import TEXT_ENCODER, TOKENIZER
from slimfusion.models.families.text import encode_prompts as encode_states
from slimfusion.models.families.text import token_ids
from slimfusion.models.io import load
from slimfusion.pipelines import pipeline_folder


def parse_class_labels(text: str, num_classes: int | None) -> torch.Tensor:
    """ "3,207,360" -> tensor([3, 207, 360]); each label must exist in the model."""
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"--class-labels {text!r}: expected comma-separated integers") from exc
    if not labels:
        raise ConfigError("--class-labels is empty")
    if num_classes is not None and not all(0 <= label < num_classes for label in labels):
        raise ConfigError(f"--class-labels {text!r}: labels must lie in [0, {num_classes})")
    return torch.tensor(labels, dtype=torch.long)


@torch.no_grad()
def encode_prompts(pipeline: str | Path, prompts: list[str]) -> torch.Tensor:
    """Text-encoder hidden states [N, L, D] of `prompts`, with the pipeline's own tokenizer and text encoder."""
    folder = pipeline_folder(pipeline)
    if folder is None or not (folder / TOKENIZER).is_dir() or not (folder / TEXT_ENCODER).is_dir():
        raise NotAModelError(f"--prompts needs a pipeline folder with text_encoder/ and tokenizer/, not {pipeline}")
    # lazy: transformers costs ~0.5-1 s of import time, paid only by commands that tokenise or build CLIP
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder / TOKENIZER))
    encoder = load(folder, component=TEXT_ENCODER)
    return encode_states(encoder, token_ids(tokenizer, prompts))
