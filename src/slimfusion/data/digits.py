"""scikit-learn's 1,797 real 8x8 handwritten digits, upsampled, with a fixed stratified train/test split."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Split = Literal["train", "test", "all"]
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_split(split: Split = "train", size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images [N, 1, size, size] in [-1, 1], labels [N]) for one split of the digits set.

    Args:
        split (`str`, defaults to "train"): "train" (1,437 images), "test" (360) or "all" (1,797).
        size (`int`, defaults to 16): side length; the 8x8 originals are upsampled bilinearly.
    """
    # lazy: scikit-learn costs ~1.2 s of import time, paid only by commands that read the digits
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32) / 16.0  # pixel values are 0..16
    labels = torch.tensor(bunch.target, dtype=torch.long)
    if split != "all":
        idx = torch.arange(len(labels)).numpy()
        train_idx, test_idx = train_test_split(
            idx, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels.numpy()
        )
        chosen = torch.as_tensor(train_idx if split == "train" else test_idx)
        images, labels = images[chosen], labels[chosen]
    images = images.unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return (images.clamp(0, 1) * 2 - 1), labels
