"""Train the digit classifier behind `builtin:digits-features` (cross-entropy, shift augmentation, AdamW)."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from slimfusion.models.classifier import DigitClassifier
from slimfusion.models.meta import record_step
from slimfusion.progress import progress_bar


class ClassifierConfig(BaseModel):
    """Settings of the classifier run.

    Args:
        epochs (`int`, defaults to 40): passes over the training split.
        batch_size (`int`, defaults to 64): images per step.
        lr (`float`, defaults to 2e-3): AdamW learning rate, cosine-decayed to 0.
        max_shift (`int`, defaults to 2): random translation in pixels (augmentation).
        seed (`int`, defaults to 0): seeds init, order and augmentation.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    max_shift: int = Field(2, ge=0)
    seed: int = 0


def random_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift == 0:
        return images
    padded = F.pad(images, [max_shift] * 4, value=-1.0)  # -1 is the background colour
    side = images.shape[-1]
    out = torch.empty_like(images)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=gen)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + side, dx : dx + side]
    return out


@torch.no_grad()
def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of `model` on a labelled set."""
    model.eval()
    preds = torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])
    return (preds == labels).float().mean().item()


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: ClassifierConfig,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
) -> DigitClassifier:
    """Train a fresh `DigitClassifier` on (images, labels); records test accuracy in its history when given."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = DigitClassifier(in_channels=images.shape[1], num_classes=int(labels.max()) + 1)
    steps_per_epoch = -(-len(images) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("train classifier", total=config.epochs, status="")
        for _ in range(config.epochs):
            model.train()
            for idx in torch.randperm(len(images), generator=gen).split(config.batch_size):
                batch = random_shift(images[idx], config.max_shift, gen)
                loss = F.cross_entropy(model(batch), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sched.step()
            bar.update(task, advance=1, status=f"loss {loss.item():.4f}")
    model.eval()
    effect = {"wall_s": round(time.perf_counter() - start, 1), "train_accuracy": accuracy(model, images, labels)}
    if test is not None:
        effect["test_accuracy"] = accuracy(model, *test)
    record_step(model, "train_classifier", config.model_dump(), effect)
    return model
