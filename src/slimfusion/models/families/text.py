"""The CLIP text-encoder family: example inputs, and prompts -> the states a text-to-image UNet takes."""

from __future__ import annotations

import torch
from torch import nn


def inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    length = model.config.max_position_embeddings
    return {"input_ids": torch.randint(0, model.config.vocab_size, (batch, length))}


def token_ids(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Padded token ids [P, max_length] exactly as diffusers' pipelines tokenize prompts."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


@torch.no_grad()
def encode_prompts(text_encoder: nn.Module, ids: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Last hidden states [P, L, D]: the cross-attention input Stable Diffusion's UNet gets."""
    text_encoder.eval()
    return torch.cat([text_encoder(chunk).last_hidden_state for chunk in ids.split(batch)])
