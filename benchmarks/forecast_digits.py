"""Forecasting caches on builtin:digits-ddpm: TaylorSeer against DeepCache at equal kept MACs, and against fewer steps.

Regenerates benchmarks/results/forecast_digits.md:

    .venv/bin/python benchmarks/forecast_digits.py --num 2000

For each base sampler (DDIM 50, UniPC 20) and kept-MACs target (0.5, 0.35, 0.25): the uniform DeepCache plan
(interval 2-10 x skip branch) whose measured kept MACs lie closest to the target; TaylorSeer on the very same schedule
and blocks at orders 1 and 2 (same MACs: forecasting adds elementwise work only); adaptive caching on the same
branch, its threshold fitted to DeepCache's kept MACs on 32 calibration noises (its kept MACs as measured on the
`num` samples from its decisions); and the base solver at
round(steps x kept) evaluations, the same MACs spent on fewer steps. Quality: FD and KD (digits features, not FID /
KID) of `num` samples vs all 1,797 digits; every verdict paired on identical noise (TaylorSeer vs DeepCache; each cache
vs the fewer-steps row), a claim only when its 95% interval excludes zero. Speed: each row timed in alternation with
its base sampler in one run (median of 5 rounds at batch 64). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch
from runinfo import stamp, verdict

from slimfusion.errors import ConfigError
from slimfusion.metrics.timing import cell, speedups
from slimfusion.models.io import load
from slimfusion.quality import References, quality_of
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, apply_plan, skip_plan
from slimfusion.skip.adaptive import measured_kept

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "forecast_digits.md"
BASES = (("ddim", 50), ("unipc", 20))
TARGETS = (0.5, 0.35, 0.25)
ORDERS = (1, 2)
WANTED = ["fd", "kd"]


def closest_deepcache(model, scheduler: str, steps: int, target: float):
    """The uniform DeepCache plan (interval x branch) whose kept MACs lie closest to `target`."""
    best = None
    for interval in range(2, 11):
        for branch in range(12):
            try:
                config = SkipConfig(method="deepcache", steps=steps, scheduler=scheduler, interval=interval,
                                    branch=branch)  # fmt: skip
                plan = skip_plan(model, config, progress=False)
            except ConfigError:  # no such branch in this UNet
                break
            if best is None or abs(plan.macs_ratio - target) < abs(best[1].macs_ratio - target):
                best = (config, plan)
    return best


def run_of(model, plan, sampling: dict, num: int, seed: int, batch: int):
    config = SampleConfig(num=num, seed=seed, batch_size=batch, **sampling)

    def call():
        with apply_plan(model, plan) if plan is not None else contextlib.nullcontext() as state:
            call.state = state  # an adaptive plan's gate decisions: the MACs this run really kept
            return sample(model, config, progress=False)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()
    code, model, references = stamp(), load("builtin:digits-ddpm"), References("digits:all")
    record = {"indices": list(range(args.num)), "prompts": None, "class_labels": None}
    lines = [
        "# Forecasting caches on builtin:digits-ddpm: TaylorSeer vs DeepCache vs fewer steps",
        "",
        f"Command: `.venv/bin/python benchmarks/forecast_digits.py --num {args.num}` ({code})",
        "",
        __doc__.split("\n\n")[3].strip().replace("\n", " "),
        "",
        "| base | target | row | kept MACs | FD | KD x1000 | FD vs DeepCache | FD vs fewer steps | KD vs fewer steps"
        " (x1000) | speedup over the base |",
        "|---|---:|---|---:|---:|---:|---|---|---|---|",
    ]
    for scheduler, steps in BASES:
        base = {"scheduler": scheduler, "steps": steps}
        for target in TARGETS:
            config, deepcache = closest_deepcache(model, scheduler, steps, target)
            plans = {f"DeepCache N={config.interval} b{config.branch}": deepcache}
            for order in ORDERS:
                forecast = config.model_copy(update={"method": "taylorseer", "order": order})
                plans[f"TaylorSeer K={order} (same schedule)"] = skip_plan(model, forecast, progress=False)
            adaptive = SkipConfig(method="adaptive", steps=steps, scheduler=scheduler, branch=config.branch,
                                  target=deepcache.macs_ratio)  # fmt: skip
            plans[f"adaptive b{config.branch} (DeepCache's MACs)"] = skip_plan(model, adaptive, progress=False)
            fewer = max(2, round(steps * deepcache.macs_ratio))
            rows = {n: (p, base) for n, p in plans.items()} | {f"{scheduler} {fewer}": (None, base | {"steps": fewer})}
            qualities, measured = {}, {}
            for name, (plan, sampling) in rows.items():
                call = run_of(model, plan, sampling, args.num, args.seed, 250)
                images = call()
                if plan is not None and plan.method == "adaptive":
                    measured[name] = measured_kept(model, plan, call.state.gate)
                qualities[name] = quality_of(images, record, WANTED, references)
                print(name, qualities[name].values(), flush=True)
            calls = {"base": run_of(model, None, base, 64, args.seed, 64)}
            calls |= {n: run_of(model, p, s, 64, args.seed, 64) for n, (p, s) in rows.items()}
            speed = speedups(calls, "base", args.rounds)
            reference, fewer_name = next(iter(plans)), f"{scheduler} {fewer}"
            for name, (plan, _) in rows.items():
                q = qualities[name]
                values = q.values()
                versus_cache = q.versus(qualities[reference], args.resamples)["fd"] if name != reference else None
                versus_fewer = q.versus(qualities[fewer_name], args.resamples) if plan is not None else None
                kept = measured.get(name, plan.macs_ratio) if plan is not None else fewer / steps
                kd_text = verdict(versus_fewer["kd"], 1000) if versus_fewer else ""
                lines.append(
                    f"| {scheduler} {steps} | {target:g} | {name} | {kept:.3f} | {values['fd']:.3f} |"
                    f" {values['kd'] * 1000:.2f} | {verdict(versus_cache) if versus_cache else ''} |"
                    f" {verdict(versus_fewer['fd']) if versus_fewer else ''} | {kd_text} | {cell(*speed[name])} |"
                )
            RESULT.write_text("\n".join(lines) + "\n")  # each finished target is kept
    print(RESULT.read_text())


if __name__ == "__main__":
    with torch.inference_mode():
        main()
