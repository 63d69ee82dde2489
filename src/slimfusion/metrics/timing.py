"""Wall-clock comparisons, the one timing helper of the optimizer and every benchmark: functions timed in alternation
over rounds, ratios as the median of per-round ratios with a 95% bootstrap interval over rounds, and "tie" when that
interval covers 1."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from slimfusion.metrics.intervals import bootstrap


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call of `fn`, over `repeats` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, rounds: int) -> dict[str, np.ndarray]:
    """Seconds per call of each function, per round (the functions alternate within a round)."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn, repeats))
    return {k: np.array(v) for k, v in times.items()}


def ratio(slow: np.ndarray, fast: np.ndarray) -> tuple[float, float, float]:
    """Median of the per-round ratios slow / fast and its 95% bootstrap interval over rounds."""
    per_round = slow / fast
    low, high = bootstrap(lambda idx: float(np.median(per_round[idx])), len(per_round), resamples=1000)
    return float(np.median(per_round)), low, high


def speedups(fns: dict[str, Callable[[], object]], reference: str, rounds: int) -> dict[str, tuple]:
    """`reference`'s time / each function's time (one call a round, all alternating): (median, low, high) per name."""
    times = interleaved(fns, 1, rounds)
    return {name: ratio(times[reference], t) for name, t in times.items()}


def cell(median: float, low: float, high: float) -> str:
    return f"{median:.2f}x [{low:.2f}, {high:.2f}]" + (" tie" if low <= 1 <= high else "")
