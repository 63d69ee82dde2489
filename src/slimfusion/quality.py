"""Quality of one image set, metric by metric, as statistics of its samples: values, intervals, paired differences.

Every quality metric here is a function of sample indices (metrics/intervals.py), so one computation of features,
kernels and per-image scores gives the value (all samples), its 95% interval (bootstrap draws) and, in
`slimfusion compare`, the interval of a difference between two subjects sampled from the same noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slimfusion.data import load_images
from slimfusion.errors import ConfigError
from slimfusion.metrics.accuracy import accuracy_unavailable, asked_digits, digit_hits
from slimfusion.metrics.clip import clip_score_or_reason
from slimfusion.metrics.consistency import psnr_per_image, ssim_per_image
from slimfusion.metrics.fd import FrechetToReference
from slimfusion.metrics.fid import MISSING_WEIGHTS
from slimfusion.metrics.intervals import DEFAULT_RESAMPLES, Statistic, bootstrap, difference_interval, verdict
from slimfusion.metrics.kid import KernelDistance
from slimfusion.metrics.stats import compute_stats, features, load_stats
from slimfusion.sample import load_samples

QUALITY_METRICS = ("fd", "kd", "fid", "kid", "accuracy", "clip", "ssim", "psnr")
SPACE_OF = {"fd": "digits-features", "kd": "digits-features", "fid": "inception-v3", "kid": "inception-v3"}
NO_REFERENCE_FEATURES = (
    "the reference statistics file holds no features (made by an older slimfusion): rerun `slimfusion stats`"
)


@dataclass
class Quality:
    """The quality metrics of one image set: `statistics[name](indices)` is the metric on those samples."""

    num: int
    statistics: dict[str, Statistic] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        everyone = np.arange(self.num)
        return {name: float(statistic(everyone)) for name, statistic in self.statistics.items()}

    def versus(self, base: Quality, resamples: int = DEFAULT_RESAMPLES, paired: bool = True) -> dict[str, dict]:
        """Per metric both sets have: {"difference": self - base, "interval": [low, high], "verdict"}; paired when
        both come from identical noise (one index draw for both)."""
        out = {}
        everyone, base_everyone = np.arange(self.num), np.arange(base.num)
        for name, statistic in self.statistics.items():
            if name not in base.statistics:
                continue
            low, high = difference_interval(base.statistics[name], statistic, (base.num, self.num), resamples, paired)
            difference = float(statistic(everyone) - base.statistics[name](base_everyone))
            out[name] = {"difference": difference, "interval": [low, high], "verdict": verdict(name, low, high)}
        return out

    def intervals(self, resamples: int = DEFAULT_RESAMPLES) -> dict[str, list[float]]:
        spans = {name: list(bootstrap(statistic, self.num, resamples)) for name, statistic in self.statistics.items()}
        for name in ("fd", "fid"):  # a distance is never negative; the bias shift can push the low end below 0
            if name in spans:
                spans[name][0] = max(0.0, spans[name][0])
        return spans


def mean_of(per_sample: np.ndarray) -> Statistic:
    """The mean of per-sample scores (NaN entries, e.g. images asked for no digit, left out)."""
    return lambda idx: float(np.nanmean(per_sample[idx]))


class References:
    """Reference data or cached statistics (`ref`) per feature space, loaded once, at the evaluated images' size."""

    def __init__(self, ref: str, inception_weights: str | None = None):
        self.ref, self.weights, self.loaded = ref, inception_weights, {}

    def __call__(self, space: str, like: torch.Tensor) -> dict:
        if space not in self.loaded:
            self.loaded[space] = self._load(space, like)
        return self.loaded[space]

    def _load(self, space: str, like: torch.Tensor) -> dict:
        if self.ref.endswith(".npz"):
            stats = load_stats(self.ref)
            if stats["space"] != space:
                raise ConfigError(f"--ref {self.ref} holds {stats['space']} statistics, {space} ones are needed here")
            return stats
        if (Path(self.ref) / "samples.npz").exists():
            return compute_stats(load_samples(self.ref)[0], space, self.weights)
        images = load_images(self.ref, size=like.shape[-1], channels=like.shape[1])
        return compute_stats(images, space, self.weights)


def quality_of(
    images: torch.Tensor,
    record: dict,
    wanted: list[str],
    references: Callable[[str, torch.Tensor], dict] | None = None,
    base: torch.Tensor | None = None,
    clip_model: str | None = None,
    inception_weights: str | None = None,
) -> Quality:
    """The wanted quality metrics of `images` (sampled as `record` says); metrics that cannot be computed are in
    `skipped` with the reason. `references(space, images)`: reference statistics for fd / kd / fid / kid; `base`:
    the original's images from identical noise, for ssim / psnr."""
    quality = Quality(num=len(images))
    feats: dict[str, np.ndarray] = {}
    for name in (m for m in ("fd", "kd", "fid", "kid") if m in wanted):
        space = SPACE_OF[name]
        if space == "inception-v3" and inception_weights is None:
            quality.skipped[name] = MISSING_WEIGHTS
            continue
        if space not in feats:
            feats[space] = features(images, space, inception_weights)
        reference = references(space, images)
        if name in ("fd", "fid"):
            quality.statistics[name] = FrechetToReference(feats[space], reference["mu"], reference["sigma"])
        elif reference.get("features") is None:
            quality.skipped[name] = NO_REFERENCE_FEATURES
        else:
            quality.statistics[name] = KernelDistance(feats[space], reference["features"])
    if "accuracy" in wanted:
        reason = accuracy_unavailable(images, record)
        if reason:
            quality.skipped["accuracy"] = reason
        else:
            quality.statistics["accuracy"] = mean_of(digit_hits(images, asked_digits(record)))
    if "clip" in wanted:
        scores, reason = clip_score_or_reason(images, record, clip_model)
        if reason:
            quality.skipped["clip"] = reason
        else:
            quality.statistics["clip"] = mean_of(scores)
    if "ssim" in wanted:
        quality.statistics["ssim"] = mean_of(ssim_per_image(images, base))
    if "psnr" in wanted:
        quality.statistics["psnr"] = mean_of(psnr_per_image(images, base))
    return quality
