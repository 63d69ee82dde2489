"""Reference feature statistics (mean, covariance) for FD / FID, computed once and cached as a plain .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimfusion.errors import ConfigError, CorruptFileError
from slimfusion.metrics.fd import digit_features, feature_stats
from slimfusion.metrics.fid import inception_features

FEATURE_SPACES = ("digits-features", "inception-v3")


def features(images: torch.Tensor, space: str, inception_weights: str | Path | None = None) -> np.ndarray:
    """Features [N, D] of images in [-1, 1] in the named feature space."""
    if space == "digits-features":
        return digit_features(images)
    if space == "inception-v3":
        return inception_features(images, inception_weights)
    raise ConfigError(f"unknown feature space {space!r}; choose one of {', '.join(FEATURE_SPACES)}")


def compute_stats(images: torch.Tensor, space: str, inception_weights: str | Path | None = None) -> dict:
    """{"mu", "sigma", "num", "space"} of an image set."""
    mu, sigma = feature_stats(features(images, space, inception_weights))
    return {"mu": mu, "sigma": sigma, "num": len(images), "space": space}


def save_stats(stats: dict, path: str | Path) -> Path:
    """Write statistics as .npz (arrays and plain strings only; no pickle)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.npz")
    np.savez(tmp, mu=stats["mu"], sigma=stats["sigma"], num=np.int64(stats["num"]), space=np.str_(stats["space"]))
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
    except Exception as exc:  # not a zip, missing keys, object arrays: all "not our statistics file"
        raise CorruptFileError(f"{file}: not a slimfusion statistics file ({type(exc).__name__})") from exc
    dim = stats["mu"].shape[0] if stats["mu"].ndim == 1 else -1
    if dim < 1 or stats["sigma"].shape != (dim, dim):
        raise CorruptFileError(f"{file}: mean / covariance shapes do not match")
    return stats
