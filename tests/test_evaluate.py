"""evaluate / stats / report: metric sanity, identical-noise checks, FID only with weights, self-contained pages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_model

import slimfusion
from slimfusion.errors import ConfigError, CorruptFileError
from slimfusion.evaluate import EvaluateConfig, evaluate
from slimfusion.metrics.consistency import psnr, ssim
from slimfusion.metrics.stats import compute_stats, load_stats, save_stats
from slimfusion.report import write_report
from slimfusion.sample import SampleConfig, sample_to_folder, save_samples


def test_ssim_identical_is_one_and_drops_with_noise():
    torch.manual_seed(0)
    a = torch.rand(6, 1, 16, 16) * 2 - 1
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a) == float("inf")
    noisy = [ssim(a, (a + s * torch.randn_like(a)).clamp(-1, 1)) for s in (0.05, 0.2, 0.8)]
    assert noisy[0] > noisy[1] > noisy[2]
    with pytest.raises(ConfigError, match="equal shape"):
        ssim(a, a[:3])


def test_stats_round_trip_and_bad_files(tmp_path):
    images = torch.rand(20, 1, 16, 16) * 2 - 1
    stats = compute_stats(images, "digits-features")
    loaded = load_stats(save_stats(stats, tmp_path / "s.npz"))
    assert loaded["num"] == 20 and loaded["space"] == "digits-features"
    assert np.array_equal(loaded["mu"], stats["mu"]) and np.array_equal(loaded["sigma"], stats["sigma"])
    assert np.allclose(loaded["features"], stats["features"]) and loaded["features"].shape[0] == 20
    save_stats(stats | {"features": None}, tmp_path / "old.npz")  # as files before KD / KID were
    result = evaluate(
        images_folder(tmp_path, images), EvaluateConfig(metrics=["fd", "kd"]), ref=str(tmp_path / "old.npz")
    )
    assert "fd" in result["metrics"] and "older slimfusion" in result["skipped"]["kd"]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError, match="not a slimfusion statistics file"):
        load_stats(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="not found"):
        load_stats(tmp_path / "missing.npz")


def images_folder(root, images) -> str:
    save_samples(images, root / "images")
    return str(root / "images")


@pytest.fixture(scope="module")
def sample_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    model = slimfusion.save(tiny_model("UNet2DModel"), root / "model")
    loaded = slimfusion.load(model)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        sample_to_folder(loaded, SampleConfig(num=12, steps=3, seed=seed), root / name)
    return root


def test_evaluate_samples_against_themselves(sample_sets, tmp_path):
    stats = tmp_path / "ref.npz"
    subprocess.run(
        [sys.executable, "-m", "slimfusion", "stats", str(sample_sets / "a"), "--out", str(stats)], check=True
    )
    result = evaluate(str(sample_sets / "b"), ref=str(stats), original=str(sample_sets / "a"), progress=False)
    assert result["metrics"]["fd"] == pytest.approx(0.0, abs=1e-6)
    assert result["metrics"]["ssim"] == pytest.approx(1.0)
    assert set(result["metrics"]) == {"fd", "kd", "ssim", "psnr"}  # no cost for a samples folder


def test_evaluate_refuses_samples_from_other_noise(sample_sets):
    with pytest.raises(ConfigError, match="identical noise.*seed"):
        evaluate(str(sample_sets / "c"), original=str(sample_sets / "a"), progress=False)


def test_fid_without_weights_is_skipped_with_a_message_never_replaced(sample_sets):
    config = EvaluateConfig(metrics=["fd", "fid"])
    result = evaluate(str(sample_sets / "a"), config, ref=str(sample_sets / "c"), progress=False)
    assert "fid" not in result["metrics"] and "inception-weights" in result["skipped"]["fid"]
    assert "fd" in result["metrics"]
    with pytest.raises(ConfigError):
        evaluate(
            str(sample_sets / "a"),
            EvaluateConfig(metrics=["fid"], inception_weights="missing.safetensors"),
            ref="digits",
            progress=False,
        )


def test_evaluate_model_reports_cost_and_consistency(sample_sets):
    config = EvaluateConfig(num=4, steps=2, batch_size=4)
    model = str(sample_sets / "model")
    result = evaluate(model, config, ref="digits:test", original=model, progress=False)
    metrics = result["metrics"]
    assert metrics["params"] == sum(p.numel() for p in slimfusion.load(model).parameters())
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["macs"] > 0 and metrics["images_per_s"] > 0
    assert result["intervals"]["macs"] == [metrics["macs"]] * 2  # an exact count is its own interval
    low, high = result["intervals"]["latency_ms"]
    assert low <= metrics["latency_ms"] <= high and set(result["intervals"]) == set(metrics) - {"images_per_s"}


def test_evaluate_needs_inputs_for_what_it_is_asked():
    with pytest.raises(ConfigError, match="--ref"):
        evaluate("builtin:digits-ddpm", EvaluateConfig(metrics=["fd"], num=2, steps=1), progress=False)


def test_report_writes_markdown_and_self_contained_html(sample_sets, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {"name": "original", "original": True, "samples": str(sample_sets / "a"), "metrics": {"macs": 100, "fd": 1.0}},
        {"name": "pruned", "samples": str(sample_sets / "b"), "metrics": {"macs": 50, "fd": 1.5, "ssim": 0.9}},
    ]
    (run / "results.json").write_text(json.dumps({"title": "t", "rows": rows}))
    md, page = write_report(run)
    text = md.read_text()
    assert "| pruned |" in text and "50.0 M" not in text and "(50%)" in text
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3  # two grids and the plot, embedded
    assert 'src="http' not in html and "src='http" not in html
    assert (run / "quality_vs_macs.png").exists()


def test_report_shows_the_skip_plan_of_a_row(sample_sets, tmp_path):
    from slimfusion.models.io import load
    from slimfusion.skip import SkipConfig, save_plan, skip_plan

    run = tmp_path / "run"
    plan = skip_plan(load("builtin:digits-ddpm"), SkipConfig(method="deepcache", steps=10, interval=2))
    save_plan(plan, run / "plans" / "dc.json")  # no picture yet: the report draws it
    metrics = {"macs": 50, "fd": 1.5, "plan_macs_ratio": plan.macs_ratio}
    rows = [{"name": "cached", "samples": str(sample_sets / "b"), "plan": "plans/dc.json", "metrics": metrics}]
    (run / "results.json").write_text(json.dumps({"title": "t", "rows": rows}))
    md, page = write_report(run)
    assert (run / "plans" / "dc.png").exists() and "![plan of cached](plans/dc.png)" in md.read_text()
    assert f"{plan.macs_ratio:.1%}" in md.read_text()
    assert page.read_text().count("data:image/png;base64,") == 3  # the grid, the plot and the plan


def test_report_on_a_folder_without_results_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "slimfusion", "report", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.strip().startswith("error:") and "results.json" in result.stderr
