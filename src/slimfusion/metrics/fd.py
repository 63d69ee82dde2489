"""Frechet distance (FD) between image sets in the feature space of `builtin:digits-features`.

An offline stand-in for FID: InceptionV3 weights cannot be downloaded here. It is always reported as "FD (digits
features)", never as FID. Statistics are (mean, covariance) of the classifier's pooled penultimate features.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.io import load

FEATURES_MODEL = "builtin:digits-features"
FEATURE_SIDE = 16


@lru_cache(maxsize=1)
def _default_extractor() -> nn.Module:
    return load(FEATURES_MODEL)


@torch.no_grad()
def digit_features(images: torch.Tensor, extractor: nn.Module | None = None, batch_size: int = 256) -> np.ndarray:
    """Features [N, D] (float64) of images [N, 1, H, W] in [-1, 1]; other sides are resized to 16x16."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ConfigError(f"digit features need grey-scale images [N, 1, H, W], got shape {tuple(images.shape)}")
    extractor = extractor or _default_extractor()
    if images.shape[-1] != FEATURE_SIDE or images.shape[-2] != FEATURE_SIDE:
        images = F.interpolate(images, size=(FEATURE_SIDE, FEATURE_SIDE), mode="bilinear", align_corners=False)
    feats = [extractor.features(chunk.float()) for chunk in images.split(batch_size)]
    return torch.cat(feats).double().numpy()


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D]."""
    if len(features) < 2:
        raise ConfigError("need at least 2 images for feature statistics")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the Frechet distance between two Gaussians.

    By hand on top of scipy's sqrtm because it must also run on cached statistics (no images at hand), which
    torchmetrics' FID class does not accept; same formula and the same tiny-eigenvalue guard as pytorch-fid.
    """
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(max(0.0, diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)))


class FrechetToReference:
    """FD of any subset of sample features to fixed reference statistics, fast enough to bootstrap: with R the
    symmetric square root of the reference covariance, Tr((S R^2)^1/2) = sum of sqrt(eigenvalues of R S R) (one
    symmetric eigen-solve per draw instead of a general sqrtm)."""

    def __init__(self, features: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
        self.features, self.mu, self.trace_ref = features, mu, float(np.trace(sigma))
        values, vectors = np.linalg.eigh(sigma)
        self.root = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T

    def __call__(self, idx: np.ndarray) -> float:
        mu, sigma = feature_stats(self.features[idx])
        diff = mu - self.mu
        roots = np.sqrt(np.linalg.eigvalsh(self.root @ sigma @ self.root).clip(min=0)).sum()
        return float(max(0.0, diff @ diff + np.trace(sigma) + self.trace_ref - 2 * roots))


def fd_between(images_a: torch.Tensor, images_b: torch.Tensor, extractor: nn.Module | None = None) -> float:
    """FD (digits features) between two image sets in [-1, 1]."""
    stats_a = feature_stats(digit_features(images_a, extractor))
    stats_b = feature_stats(digit_features(images_b, extractor))
    return frechet_distance(*stats_a, *stats_b)
