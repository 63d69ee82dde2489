"""Intervals and verdicts: the estimators match their references, intervals cover what they should, and compare says
tie for two sample sets of one model and worse for a clearly degraded one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchmetrics.image.kid import poly_mmd
from typer.testing import CliRunner

from slimfusion.cli import app
from slimfusion.compare import compare
from slimfusion.errors import ConfigError
from slimfusion.evaluate import EvaluateConfig, evaluate
from slimfusion.metrics.fd import FrechetToReference, feature_stats, frechet_distance
from slimfusion.metrics.intervals import bootstrap, difference_interval, verdict
from slimfusion.metrics.kid import KernelDistance
from slimfusion.models.io import load
from slimfusion.sample import SampleConfig, sample_to_folder


def test_kernel_distance_is_torchmetrics_unbiased_mmd_and_fd_matches_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(120, 16)), rng.normal(size=(120, 16)) + 0.2
    everyone = np.arange(120)
    assert KernelDistance(a, b)(everyone) == pytest.approx(float(poly_mmd(torch.tensor(b), torch.tensor(a))))
    mu, sigma = feature_stats(b)
    assert FrechetToReference(a, mu, sigma)(everyone) == pytest.approx(frechet_distance(*feature_stats(a), mu, sigma))
    # a draw that repeats samples leaves the repeated pairs out of the within-set term (no self-similarity bonus)
    repeated = np.array([0, 0, 1, 2])
    distance = KernelDistance(a, b)
    xx = (distance.kxx[0, 1] * 4 + distance.kxx[0, 2] * 4 + distance.kxx[1, 2] * 2) / 10
    assert distance(repeated) == pytest.approx(xx + distance.yy - 2 * distance.kxy_rows[repeated].mean())


def test_bootstrap_interval_of_a_mean_has_the_normal_width_and_covers_the_truth():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(20):
        values = rng.normal(3.0, 2.0, size=400)
        low, high = bootstrap(lambda idx, v=values: v[idx].mean(), 400, resamples=400)
        assert high - low == pytest.approx(2 * 1.96 * 2.0 / 20, rel=0.25)
        covered += low <= 3.0 <= high
    assert covered >= 17  # 95% nominal: 20 x 0.95 = 19, binomial slack


def test_paired_difference_cancels_shared_noise_and_verdicts_follow_the_interval():
    rng = np.random.default_rng(2)
    shared = rng.normal(size=300)
    first, second = shared, shared + 0.05 + 0.01 * rng.normal(size=300)
    stats = (lambda idx: first[idx].mean(), lambda idx: second[idx].mean())
    paired = difference_interval(*stats, (300, 300), 300, paired=True)
    independent = difference_interval(*stats, (300, 300), 300, paired=False)
    assert paired[0] > 0 and independent[0] < 0 < independent[1]  # only pairing sees the +0.05
    assert verdict("fd", *paired) == "worse" and verdict("ssim", *paired) == "better"
    assert verdict("fd", -0.1, 0.2) == "tie" and verdict("psnr", float("nan"), 1.0) == "tie"


@pytest.fixture(scope="module")
def digit_sets(tmp_path_factory):
    """Samples of builtin:digits-ddpm from two seeds, and of a copy with noisy weights from the first seed."""
    root = tmp_path_factory.mktemp("digit_sets")
    model, damaged = load("builtin:digits-ddpm"), load("builtin:digits-ddpm")
    torch.manual_seed(0)
    with torch.no_grad():
        for param in damaged.parameters():
            param.add_(0.3 * param.abs().mean() * torch.randn_like(param))
    for name, subject, seed in (("a", model, 0), ("b", model, 1), ("bad", damaged, 0)):
        sample_to_folder(subject, SampleConfig(num=200, steps=5, seed=seed, batch_size=200), root / name)
    return root


def test_two_sets_of_one_model_tie_and_a_degraded_model_is_worse(digit_sets):
    a, b, bad = (str(digit_sets / n) for n in ("a", "b", "bad"))
    config = EvaluateConfig(metrics=["fd", "kd"])
    same = compare([a, b], config, ref="digits", progress=False)
    assert not same["subjects"][1]["paired"]  # other seed: independent draws
    assert {d["metric"]: d["verdict"] for d in same["differences"]} == {"fd": "tie", "kd": "tie"}
    worse = compare([a, bad], EvaluateConfig(metrics=["fd", "kd", "ssim"]), ref="digits", original=a, progress=False)
    assert worse["subjects"][1]["paired"]
    assert {d["metric"]: d["verdict"] for d in worse["differences"]} == {"fd": "worse", "kd": "worse", "ssim": "worse"}
    fd = next(d for d in worse["differences"] if d["metric"] == "fd")
    assert fd["interval"][0] <= fd["difference"] <= fd["interval"][1]


def test_compare_cli_prints_verdicts_and_writes_json(digit_sets, tmp_path):
    out = tmp_path / "cmp.json"
    args = ["compare", str(digit_sets / "a"), str(digit_sets / "bad"), "--ref", "digits", "--metrics", "kd"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "worse" in result.output and "paired" in result.output
    assert json.loads(out.read_text())["differences"][0]["verdict"] == "worse"
    with pytest.raises(ConfigError, match="at least two"):
        compare([str(digit_sets / "a")], progress=False)
    with pytest.raises(ConfigError, match="--plan"):
        compare([str(digit_sets / "a")] * 2, EvaluateConfig(plan="p.json"), progress=False)


def test_evaluate_gives_every_quality_metric_an_interval(digit_sets):
    result = evaluate(str(digit_sets / "bad"), ref="digits", original=str(digit_sets / "a"), progress=False)
    assert set(result["intervals"]) == set(result["metrics"]) == {"fd", "kd", "ssim", "psnr"}
    for name, (low, high) in result["intervals"].items():
        assert low < high, name
    assert "bootstrap over the 200 evaluated samples" in result["interval_method"]
