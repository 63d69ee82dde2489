"""Prompt / class accuracy: the share of samples that `builtin:digits-features` labels as the digit they were asked for.

Meaningful for the digits built-ins only: the classifier reads 16x16 grey-scale digits, and a prompt counts when it
names exactly one digit ("a handwritten seven", "the digit 7").
"""

from __future__ import annotations

import numpy as np
import torch

from slimfusion.data.prompts import digit_of_prompt
from slimfusion.models.io import load

NOT_DIGITS = "the digit classifier reads 16x16 grey-scale digits; these samples are not"


def asked_digits(record: dict) -> list[int | None]:
    """The digit each sample of a sampling record was asked for (None where its prompt / label names none)."""
    prompts, labels = record.get("prompts"), record.get("class_labels")
    indices = record["indices"]
    if prompts:
        return [digit_of_prompt(prompts[i % len(prompts)]) for i in indices]
    if labels:
        return [labels[i % len(labels)] if 0 <= labels[i % len(labels)] <= 9 else None for i in indices]
    return [None] * len(indices)


def accuracy_unavailable(images: torch.Tensor, record: dict) -> str | None:
    """Why accuracy cannot be measured on these samples, or None when it can."""
    if tuple(images.shape[1:]) != (1, 16, 16):
        return NOT_DIGITS
    if not any(d is not None for d in asked_digits(record)):
        return "no sample was asked for a digit (unconditional, or prompts / labels that name none)"
    return None


def digit_accuracy(images: torch.Tensor, digits: list[int | None]) -> float:
    """Share of the images with an asked digit that the classifier labels as that digit."""
    return float(np.nanmean(digit_hits(images, digits)))


@torch.no_grad()
def digit_hits(images: torch.Tensor, digits: list[int | None]) -> np.ndarray:
    """Per image [N]: 1 when the classifier reads the asked digit, 0 when not, NaN when none was asked."""
    classifier = load("builtin:digits-features")
    preds = torch.cat([classifier(chunk).argmax(1) for chunk in images.split(256)]).numpy()
    return np.array([np.nan if d is None else float(p == d) for p, d in zip(preds, digits, strict=True)])
