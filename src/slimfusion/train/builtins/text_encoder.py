"""Pre-train the digits text encoder contrastively against `builtin:digits-features`, as CLIP was against images.

Why contrastive and then frozen (not trained jointly with the UNet): Stable Diffusion uses a CLIP text encoder trained
on its own objective and frozen, so the sparsity study prunes an encoder whose meaning lives in its own weights, as
SD's does; a frozen encoder also lets the UNet's training cache every prompt's embedding once.

A batch pairs images with one truthful prompt each; since many images share a digit (and style), every prompt that
truthfully describes an image counts as a positive for it (soft targets), not only the one drawn for it.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from slimfusion.data.prompts import PromptBank
from slimfusion.models.meta import record_step
from slimfusion.progress import progress_bar


class TextEncoderConfig(BaseModel):
    """Settings of the contrastive text-encoder run.

    Args:
        steps (`int`, defaults to 2000): optimizer steps.
        batch_size (`int`, defaults to 128): image-prompt pairs per step.
        lr (`float`, defaults to 1e-3): AdamW learning rate, cosine-decayed to 0.
        embed_dim (`int`, defaults to 64): dimension of the shared embedding space (projections are discarded).
        seed (`int`, defaults to 0): seeds init and batches.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    embed_dim: int = Field(64, ge=1)
    seed: int = 0


def train_text_encoder(
    text_encoder: nn.Module,
    ids: torch.Tensor,
    bank: PromptBank,
    image_features: torch.Tensor,
    config: TextEncoderConfig,
    progress: bool = True,
) -> nn.Module:
    """Train a `CLIPTextModel` in place so its pooled prompt embedding matches the features of the images it describes.

    Args:
        text_encoder (`nn.Module`): a fresh `transformers.CLIPTextModel`.
        ids (`torch.Tensor`): token ids [P, L] of `bank.prompts`.
        bank (`PromptBank`): prompts and, per image, the indices of its truthful prompts.
        image_features (`torch.Tensor`): [N, F] frozen image features (digits-features) of the bank's images.
        config (`TextEncoderConfig`): the run's settings.
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    hidden = text_encoder.config.hidden_size
    text_proj = nn.Linear(hidden, config.embed_dim, bias=False)
    image_proj = nn.Linear(image_features.shape[1], config.embed_dim, bias=False)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*text_encoder.parameters(), *text_proj.parameters(), *image_proj.parameters(), logit_scale]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    feats = F.normalize(image_features, dim=1)
    truthful = torch.zeros(len(bank.choices), len(bank.prompts), dtype=torch.bool)
    for i, choice in enumerate(bank.choices):
        truthful[i, choice] = True
    start, running = time.perf_counter(), None
    text_encoder.train()
    with progress_bar(progress) as bar:
        task = bar.add_task("train text encoder", total=config.steps, status="")
        for step in range(1, config.steps + 1):
            idx = torch.randint(0, len(feats), (config.batch_size,), generator=gen)
            pick = torch.stack(
                [c[torch.randint(0, len(c), (1,), generator=gen)] for c in (bank.choices[i] for i in idx)]
            ).squeeze(1)
            text = F.normalize(text_proj(text_encoder(ids[pick]).pooler_output), dim=1)
            image = F.normalize(image_proj(feats[idx]), dim=1)
            logits = logit_scale.exp().clamp(max=100) * image @ text.T
            target = truthful[idx][:, pick].float()
            loss = (
                F.cross_entropy(logits, target / target.sum(1, keepdim=True))
                + F.cross_entropy(logits.T, target.T / target.T.sum(1, keepdim=True).clamp_min(1))
            ) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sched.step()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update(task, completed=step, status=f"loss {running:.4f}")
    text_encoder.eval()
    effect = {
        "wall_s": round(time.perf_counter() - start, 1),
        "final_loss": running,
        "digit_probe_accuracy": digit_probe_accuracy(text_encoder, ids, bank),
    }
    record_step(text_encoder, "train_text_encoder", config.model_dump(), effect)
    return text_encoder


@torch.no_grad()
def digit_probe_accuracy(text_encoder: nn.Module, ids: torch.Tensor, bank: PromptBank) -> float:
    """Share of prompts whose pooled embedding lies nearest to the mean embedding of their own digit's prompts.

    A quick check that the encoder carries the digit (leave-one-out would change little with ~28 prompts a digit).
    """
    text_encoder.eval()
    named = bank.digits >= 0
    pooled = F.normalize(text_encoder(ids[named]).pooler_output, dim=1)
    digits = bank.digits[named]
    centres = F.normalize(torch.stack([pooled[digits == d].mean(0) for d in range(10)]), dim=1)
    return (pooled @ centres.T).argmax(1).eq(digits).float().mean().item()
