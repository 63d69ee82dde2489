"""Measuring one candidate against the original: images on identical noise, paired verdicts, wall-clock speed.

Everything is measured on this machine, never modelled: quality is `Quality.versus` (the paired bootstrap of
`slimfusion compare`) on the same seeded noise and conditions as the original's images; speed is seconds per
sampling call of `batch` images, timed in alternation with the original for a confirmed candidate.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from slimfusion.metrics.intervals import verdict
from slimfusion.metrics.timing import interleaved, ratio
from slimfusion.optimize.config import OptimizeConfig, QualityRule
from slimfusion.optimize.space import Builder, Candidate, base_sampling
from slimfusion.pipelines import denoiser_of
from slimfusion.quality import Quality, References, quality_of
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip.hooks import apply_plan

PRIMARY = ("fd", "kd")  # plus accuracy for conditional models


def primary_metrics(config: OptimizeConfig) -> tuple[str, ...]:
    return (*PRIMARY, "accuracy") if config.conditional else PRIMARY


def sample_config(config: OptimizeConfig, sampling: dict, seed: int, num: int) -> SampleConfig:
    return SampleConfig(
        num=num,
        seed=seed,
        batch_size=config.batch,
        no_plan=True,  # the candidate's plan is applied around the call, the original's stored one never
        prompts=config.prompts,
        class_labels=config.class_labels,
        **({"guidance": config.guidance} | sampling),  # a student's own sampler may set its guidance (1)
    )


class Arena:
    """The original and the candidates, sampled on the same seeded noise; the original's images kept per seed."""

    def __init__(self, sampler, config: OptimizeConfig, cache: Path | None = None):
        self.config, self.cache = config, cache
        self.builder = Builder(sampler, config)
        self.references = References(config.ref)
        self.wanted = [*primary_metrics(config), "ssim"]
        self.originals: dict[int, torch.Tensor] = {}
        self.original_batch_seconds: list[float] = []

    def images(self, candidate: Candidate, seed: int, num: int) -> tuple[torch.Tensor, list[float]]:
        """The candidate's first `num` images of `seed`, and the seconds each sampling call of `batch` took."""
        sampler, build = self.builder.build(candidate)
        config = sample_config(self.config, build.sampling, seed, num)
        chunks, seconds = [], []
        with self.planned(sampler, build):
            for start in range(0, num, self.config.batch):
                began = time.perf_counter()
                chunks.append(sample(sampler, config, range(start, min(start + self.config.batch, num)), False))
                seconds.append(time.perf_counter() - began)
        return torch.cat(chunks), seconds

    @staticmethod
    def planned(sampler, build):
        """The candidate's skip plan applied to its denoiser for the block (nothing when it has none)."""
        if build.plan is None:
            return contextlib.nullcontext()
        return apply_plan(denoiser_of(sampler), build.plan)

    def original(self, seed: int, num: int) -> torch.Tensor:
        """The original's first `num` images of `seed` (grown, cached in memory and under `cache` for resume)."""
        have = self.originals.get(seed)
        if have is None and self.cache is not None and (self.cache / f"original-{seed}.npz").exists():
            have = torch.from_numpy(np.load(self.cache / f"original-{seed}.npz", allow_pickle=False)["images"])
        if have is None or len(have) < num:
            images, seconds = self.images({}, seed, num)
            self.original_batch_seconds += seconds
            have = images
        self.originals[seed] = have
        self.keep_in(self.cache)
        return have[:num]

    def keep_in(self, cache: Path | None) -> None:
        """Keep the original's images under `cache` (a resumed search reads them instead of sampling again)."""
        self.cache = cache
        if cache is None:
            return
        cache.mkdir(parents=True, exist_ok=True)
        for seed, images in self.originals.items():
            file = cache / f"original-{seed}.npz"
            if not file.exists() or len(np.load(file)["images"]) < len(images):
                np.savez(file, images=images.numpy())

    def record(self, num: int) -> dict:
        return {"indices": list(range(num)), "prompts": self.config.prompts, "class_labels": self.config.class_labels}

    def quality(self, images: torch.Tensor, base: torch.Tensor) -> Quality:
        return quality_of(images, self.record(len(images)), self.wanted, self.references, base=base)

    def judge(self, candidate: Candidate, seed: int, num: int) -> dict:
        """One rung: the candidate's images against the original's, metric by metric, and the rule's verdict."""
        base_images = self.original(seed, num)
        images, seconds = self.images(candidate, seed, num)
        base, mine = self.quality(base_images, base_images), self.quality(images, base_images)
        versus = mine.versus(base, self.config.resamples, paired=True)
        values, base_values = mine.values(), base.values()
        spans = mine.intervals(self.config.resamples)
        ok, why = holds(self.config.quality, versus, spans, base_values, primary_metrics(self.config))
        return {
            "num": num,
            "seed": seed,
            "seconds_per_batch": statistics.median(seconds),
            "metrics": values,
            "intervals": spans,
            "original": base_values,
            "differences": versus,
            "detectable": {m: (v["interval"][1] - v["interval"][0]) / 2 for m, v in versus.items()},
            "holds": ok,
            "why": why,
        }

    def speeds(self, candidates: list[Candidate], seed: int) -> list[dict]:
        """Seconds of one sampling call of `batch` images, every candidate and the original in alternation over
        rounds (one run, so they share the original's batches): each speedup the median of per-round ratios with
        its 95% bootstrap interval."""
        original = self.builder.sampler
        theirs = sample_config(self.config, base_sampling(self.config), seed, self.config.batch)
        runs = {"original": lambda: sample(original, theirs, progress=False)}
        for index, candidate in enumerate(candidates):
            sampler, build = self.builder.build(candidate)
            ours = sample_config(self.config, build.sampling, seed, self.config.batch)

            def candidate_run(sampler=sampler, build=build, ours=ours):
                with self.planned(sampler, build):  # only around the candidate: the original may be the same object
                    return sample(sampler, ours, progress=False)

            runs[f"candidate {index}"] = candidate_run
        times = interleaved(runs, repeats=1, rounds=self.config.rounds)
        rows = []
        for index in range(len(candidates)):
            mine = times[f"candidate {index}"]
            median, low, high = ratio(times["original"], mine)
            rows.append({"speedup": median, "interval": [low, high], "seconds": float(np.median(mine)),
                         "original_seconds": float(np.median(times["original"]))})  # fmt: skip
        return rows


def holds(
    rule: QualityRule, versus: dict, spans: dict, base: dict, primary: tuple[str, ...]
) -> tuple[bool, str | None]:
    """Whether the rule holds on one paired comparison, and if not, the metric that breaks it."""
    if rule.kind == "tie":
        for metric in primary:
            if metric in versus and versus[metric]["verdict"] == "worse":
                low, high = versus[metric]["interval"]
                return False, f"{metric} worse ({versus[metric]['difference']:+.4g} [{low:+.4g}, {high:+.4g}])"
        return True, None
    if rule.kind == "fd-ratio":
        high, limit = versus["fd"]["interval"][1], (rule.value - 1) * base["fd"]
        return (True, None) if high <= limit else (False, f"fd up to {high:+.4g} over the original, limit {limit:+.4g}")
    low = spans[rule.kind][0]
    return (True, None) if low >= rule.value else (False, f"{rule.kind} down to {low:.4g}, below {rule.value:g}")


def likely_to_hold(row: dict, config: OptimizeConfig) -> bool:
    """Whether the rule would still hold on `confirm_num` samples if each difference stayed what this rung measured
    and its interval shrank as 1 / sqrt(n), as a bootstrap's does: a screen "tie" of +0.4 FD at 256 samples is a
    "worse" at 2,000. Orders the promotions only (the fresh-noise confirmation alone decides); rules other than
    "tie" keep the rung's own verdict."""
    if not row["holds"] or config.quality.kind != "tie":
        return row["holds"]
    shrink = math.sqrt(row["num"] / max(config.confirm_num, row["num"]))
    for metric in primary_metrics(config):
        measured = row["differences"].get(metric)
        if measured is None:
            continue
        low, high = measured["interval"]
        centre, half = measured["difference"], (high - low) / 2 * shrink
        if verdict(metric, centre - half, centre + half) == "worse":
            return False
    return True
