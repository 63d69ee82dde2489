"""`slimfusion demo`: what exists so far, end to end on the built-in model: load, measure cost, sample, score.

The full compress -> recover -> evaluate demo replaces this once pruning and fine-tuning land.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from slimfusion.data import load_digits_split
from slimfusion.metrics.cost import cost_summary, measure_latency
from slimfusion.metrics.fd import fd_between
from slimfusion.models.io import load
from slimfusion.sample import SampleConfig, sample, save_samples

DEMO_MODEL = "builtin:digits-ddpm"


def run_demo(out: Path, num: int = 256, steps: int = 50, progress: bool = True) -> dict[str, Any]:
    """Load `builtin:digits-ddpm`, measure its cost, sample `num` images into `out`, and score them by FD."""
    model = load(DEMO_MODEL)
    cost = cost_summary(model)
    latency = measure_latency(model, batch=1, repeats=20)
    start = time.perf_counter()
    images = sample(model, SampleConfig(num=num, steps=steps, scheduler="ddim", seed=0), progress=progress)
    elapsed = time.perf_counter() - start
    save_samples(images, out)
    test_images, _ = load_digits_split("test")
    train_images, _ = load_digits_split("train")
    return {
        "model": DEMO_MODEL,
        **cost,
        "latency_ms": latency * 1e3,
        "images_per_s": num / elapsed,
        "num": num,
        "steps": steps,
        "fd_samples_vs_test": fd_between(images, test_images),
        "fd_test_vs_train": fd_between(test_images, train_images),
        "grid": str(out / "grid.png"),
    }
