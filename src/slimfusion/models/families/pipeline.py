"""Pipeline layout: the component names diffusers' pipelines keep their denoiser and text encoder under."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from slimfusion.models.families.text import encode_prompts, token_ids

DENOISERS = ("unet", "transformer")
TEXT_ENCODER, TOKENIZER = "text_encoder", "tokenizer"
COMPONENTS = (TEXT_ENCODER, *DENOISERS)  # what a technique may be pointed at, one component at a time
CONDITIONAL = (TEXT_ENCODER, "transformer")  # a pipeline with either is conditional (text-to-image or DiT)


def denoiser_component(names: Iterable[str]) -> str | None:
    """ "unet" or "transformer", whichever of `names` (a model_index.json, available components) has; else None."""
    names = set(names)
    return next((c for c in DENOISERS if c in names), None)


def is_conditional(names: Iterable[str]) -> bool:
    """Whether components `names` make a conditional pipeline (trained on VAE latents with conditions)."""
    return any(c in set(names) for c in CONDITIONAL)


def present(pipe) -> list[str]:
    """The components of COMPONENTS a pipeline object has."""
    return [c for c in COMPONENTS if getattr(pipe, c, None) is not None]


def is_text_pipeline(pipe) -> bool:
    """A tokenizer and a text encoder: prompts can be encoded."""
    return getattr(pipe, TEXT_ENCODER, None) is not None and getattr(pipe, TOKENIZER, None) is not None


def is_class_pipeline(pipe) -> bool:
    """A DiT whose transformer embeds class labels."""
    transformer = getattr(pipe, "transformer", None)
    return transformer is not None and bool(getattr(transformer.config, "num_embeds_ada_norm", None))


def class_count(pipe) -> int:
    """How many class labels a class-conditional pipeline takes (its label table, else the embedding's size)."""
    return len(getattr(pipe, "labels", None) or {}) or pipe.transformer.config.num_embeds_ada_norm


def embed(pipe, prompts: list[str]) -> torch.Tensor:
    """Text-encoder states [P, L, D] of prompts, tokenized exactly as the pipeline does."""
    return encode_prompts(getattr(pipe, TEXT_ENCODER), token_ids(getattr(pipe, TOKENIZER), prompts))
