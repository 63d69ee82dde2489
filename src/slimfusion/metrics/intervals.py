"""95% intervals for every quality metric, and the verdict rule of every comparison.

A metric is a statistic of the evaluated samples: a function of an index array (which samples, with repeats). Its
interval is the bias-corrected percentile bootstrap over those samples: the statistic on `resamples` draws of n
indices with replacement, its 2.5 / 97.5 percentiles shifted by the draws' bias (see `percentile_interval`); the
reference data (or cached statistics) is held fixed. A difference between two subjects sampled from
the same noise is bootstrapped paired (one draw of indices for both), which cancels the noise they share.
Hand-written because scipy.stats.bootstrap evaluates statistics on data arrays, not on shared index draws, and the
paired FD / KID draws must reuse precomputed features and kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEVEL = 0.95
DEFAULT_RESAMPLES = 200
HIGHER_IS_BETTER = frozenset({"accuracy", "clip", "ssim", "psnr"})
LOWER_IS_BETTER = frozenset({"fd", "fid", "kd", "kid"})
Statistic = Callable[[np.ndarray], float]


def method_text(num: int, resamples: int) -> str:
    """How the intervals were made, as every result states it."""
    return (
        f"{LEVEL:.0%} bias-corrected percentile bootstrap over the {num} evaluated samples ({resamples} resamples;"
        " reference data held fixed; differences paired on identical noise)"
    )


def draws(num: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, num] indices drawn with replacement (seeded: the same intervals on every run)."""
    return np.random.default_rng(seed).integers(0, num, size=(resamples, num))


def percentile_interval(values: np.ndarray, estimate: float) -> tuple[float, float]:
    """The central LEVEL range of bootstrap values, shifted by the bootstrap's bias (median of the values minus the
    estimate). FD needs the shift: a draw with repeats has fewer distinct samples, so its FD is biased up by about
    as much as FD itself is (on 200 digits: draws' median 1.61 vs estimate 0.68); means are unbiased and unmoved."""
    tail = 100 * (1 - LEVEL) / 2
    values = np.asarray(values, dtype=float)
    low, middle, high = np.percentile(values, [tail, 50, 100 - tail], method="nearest")  # nearest: inf-safe
    shift = middle - estimate if np.isfinite(middle) and np.isfinite(estimate) else 0.0
    return float(low - shift), float(high - shift)


def bootstrap(statistic: Statistic, num: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% interval of `statistic` over `num` samples."""
    values = np.array([statistic(idx) for idx in draws(num, resamples, seed)])
    return percentile_interval(values, statistic(np.arange(num)))


def difference_interval(
    first: Statistic,
    second: Statistic,
    sizes: tuple[int, int],
    resamples: int = DEFAULT_RESAMPLES,
    paired: bool = True,
    seed: int = 0,
) -> tuple[float, float]:
    """95% interval of second - first over samples of `sizes`: one index draw for both when paired (same noise,
    equal sizes), independent draws otherwise."""
    a = draws(sizes[0], resamples, seed)
    b = a if paired and sizes[0] == sizes[1] else draws(sizes[1], resamples, seed + 1)
    values = np.array([second(j) - first(i) for i, j in zip(a, b, strict=True)])
    return percentile_interval(values, second(np.arange(sizes[1])) - first(np.arange(sizes[0])))


def verdict(metric: str, low: float, high: float) -> str:
    """better / worse when the interval of (subject - baseline) excludes zero, else tie; "-" for a metric without a
    direction (counts, timings)."""
    if metric not in HIGHER_IS_BETTER and metric not in LOWER_IS_BETTER:
        return "-"
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high:
        return "tie"
    return "better" if (low > 0) == (metric in HIGHER_IS_BETTER) else "worse"
