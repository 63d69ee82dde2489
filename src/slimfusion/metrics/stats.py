"""Reference feature statistics (mean, covariance) for FD / FID, computed once and cached as a plain .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimfusion.errors import ConfigError, CorruptFileError
from slimfusion.metrics.fd import digit_features, feature_stats
from slimfusion.metrics.fid import inception_features

FEATURE_SPACES = ("digits-features", "inception-v3")
KERNEL_ROWS = 5000  # reference features kept for KID: its estimator is unbiased at any count


def features(images: torch.Tensor, space: str, inception_weights: str | Path | None = None) -> np.ndarray:
    """Features [N, D] of images in [-1, 1] in the named feature space."""
    if space == "digits-features":
        return digit_features(images)
    if space == "inception-v3":
        return inception_features(images, inception_weights)
    raise ConfigError(f"unknown feature space {space!r}; choose one of {', '.join(FEATURE_SPACES)}")


def compute_stats(images: torch.Tensor, space: str, inception_weights: str | Path | None = None) -> dict:
    """{"mu", "sigma", "num", "space", "features"} of an image set; "features" (float32) holds up to
    KERNEL_ROWS of them (a seeded subset), which the kernel distances (kd / kid) compare against."""
    feats = features(images, space, inception_weights)
    mu, sigma = feature_stats(feats)
    if len(feats) > KERNEL_ROWS:
        feats = feats[np.sort(np.random.default_rng(0).choice(len(feats), KERNEL_ROWS, replace=False))]
    return {"mu": mu, "sigma": sigma, "num": len(images), "space": space, "features": feats.astype(np.float32)}


def save_stats(stats: dict, path: str | Path) -> Path:
    """Write statistics as .npz (arrays and plain strings only; no pickle)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.npz")
    extra = {"features": stats["features"]} if stats.get("features") is not None else {}
    np.savez(
        tmp, mu=stats["mu"], sigma=stats["sigma"], num=np.int64(stats["num"]), space=np.str_(stats["space"]), **extra
    )
    tmp.replace(target)
    return target


def load_stats(path: str | Path) -> dict:
    """Read statistics written by `save_stats`; a wrong or damaged file is a one-line error."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"statistics file not found: {file}")
    try:
        with np.load(file, allow_pickle=False) as data:
            stats = {"mu": data["mu"], "sigma": data["sigma"], "num": int(data["num"]), "space": str(data["space"])}
            stats["features"] = data["features"].astype(np.float64) if "features" in data.files else None
    except Exception as exc:  # not a zip, missing keys, object arrays: all "not our statistics file"
        raise CorruptFileError(f"{file}: not a slimfusion statistics file ({type(exc).__name__})") from exc
    dim = stats["mu"].shape[0] if stats["mu"].ndim == 1 else -1
    if dim < 1 or stats["sigma"].shape != (dim, dim):
        raise CorruptFileError(f"{file}: mean / covariance shapes do not match")
    kept = stats["features"]
    if kept is not None and (kept.ndim != 2 or kept.shape[1] != dim):
        raise CorruptFileError(f"{file}: stored features do not match the mean's dimension")
    return stats
