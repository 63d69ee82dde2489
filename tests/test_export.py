"""`slimfusion export --format openvino`: the IR samples as torch does, int8 samples, refusals write nothing."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch
from conftest import tiny_model
from test_cli import run_cli

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.export import ExportConfig, export_openvino
from slimfusion.models.openvino import openvino_runtime
from slimfusion.sample import SampleConfig, sample

pytest.importorskip("openvino")  # make test installs the extra: CI runs these


def test_a_float32_export_samples_the_images_torch_samples_and_pads_a_short_batch(tmp_path):
    model = tiny_model("UNet2DModel")
    folder = export_openvino(model, ExportConfig(batch=2), tmp_path / "ov")
    exported = slimfusion.load(folder)
    config = SampleConfig(num=3, steps=4, seed=5, batch_size=2)  # the last batch of one is padded to the IR's two
    theirs, ours = sample(model, config, progress=False), sample(exported, config, progress=False)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()  # float32 IR: rounding only
    assert slimfusion.load(folder).config.sample_size == model.config.sample_size


def test_an_int8_export_is_calibrated_on_the_models_own_trajectory_and_samples(tmp_path):
    model = tiny_model("UNet2DModel")
    folder = export_openvino(model, ExportConfig(batch=2, int8=True, calib_num=2, calib_steps=3), tmp_path / "int8")
    xml = (folder / "denoiser.xml").read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml  # NNCF's quantize / dequantize pairs are in the graph
    config = SampleConfig(num=2, steps=4, seed=1, batch_size=2)
    images = sample(slimfusion.load(folder), config, progress=False)
    assert images.shape == (2, 3, 32, 32) or images.shape[0] == 2
    assert torch.isfinite(images).all()
    assert (images - sample(model, config, progress=False)).abs().mean() < 0.5  # close, not equal: int8 rounds


def test_int8_keeps_the_time_path_and_the_first_and_last_convolutions_in_float(tmp_path):
    import re

    names = {}
    for scope in ("recommended", "everything"):
        config = ExportConfig(batch=2, int8=True, calib_num=2, calib_steps=3, int8_scope=scope)
        xml = (export_openvino(tiny_model("UNet2DModel"), config, tmp_path / scope) / "denoiser.xml").read_text()
        names[scope] = re.findall(r'<layer id="\d+" name="([^"]+)" type="FakeQuantize"', xml)
    sensitive = re.compile(r"\.(time_proj|time_embedding|time_emb_proj|conv_in|conv_out)[./]")
    assert any(sensitive.search(n) for n in names["everything"])  # NNCF's default scheme quantizes them
    assert names["recommended"] and not any(sensitive.search(n) for n in names["recommended"])


def test_bf16_runs_where_the_cpu_has_it_and_is_refused_where_it_has_not(tmp_path, monkeypatch):
    import slimfusion.export as export

    model = tiny_model("UNet2DModel")
    config = SampleConfig(num=2, steps=4, seed=5, batch_size=2)
    if export.cpu_has_bf16():
        folder = export_openvino(model, ExportConfig(batch=2, precision="bf16"), tmp_path / "bf16")
        exported = slimfusion.load(folder)
        assert exported.record["precision"] == "bf16"
        gap = (sample(exported, config, progress=False) - sample(model, config, progress=False)).abs().max()
        assert 1e-4 < gap < 0.5  # bf16 rounds (a float32 IR is within 1e-4: asked for explicitly, not the default)
    monkeypatch.setattr(export, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="no bf16"):
        export_openvino(model, ExportConfig(batch=2, precision="bf16"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_the_exported_folder_keeps_a_students_sampler(tmp_path):
    model = tiny_model("UNet2DModel")
    slimfusion.models.meta.get_meta(model)["sampler"] = {"scheduler": "unipc", "steps": 3}
    exported = slimfusion.load(export_openvino(model, ExportConfig(batch=1), tmp_path / "ov"))
    assert slimfusion.models.meta.get_meta(exported)["sampler"] == {"scheduler": "unipc", "steps": 3}
    assert slimfusion.models.meta.history(exported)[-1]["step"] == "export"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: str(tmp / "missing"), "model not found"),
        (lambda tmp: str(slimfusion.save(tiny_model("DiTTransformer2DModel"), tmp / "dit")), "UNet2DModel"),
        (
            lambda tmp: str(
                slimfusion.save(
                    slimfusion.quantize(tiny_model("UNet2DModel"), slimfusion.QuantizeConfig(scheme="bf16")),
                    tmp / "bf16",
                )
            ),
            "float32 model",
        ),  # fmt: skip
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, make, message):
    source = make(tmp_path)
    result = run_cli("export", source, "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_the_cli_exports_and_sample_runs_the_exported_folder(tmp_path):
    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "unet")
    made = run_cli("export", str(model), "--batch", "2", "--out", str(tmp_path / "ov"))
    assert made.returncode == 0 and "saved" in made.stderr + made.stdout, made.stderr
    again = run_cli("export", str(model), "--out", str(tmp_path / "ov"))
    assert again.returncode != 0 and "already exists" in again.stderr
    sampled = run_cli("sample", str(tmp_path / "ov"), "--num", "2", "--steps", "3", "--out", str(tmp_path / "s"))
    assert sampled.returncode == 0, sampled.stderr
    torch_run = run_cli("sample", str(model), "--num", "2", "--steps", "3", "--out", str(tmp_path / "t"))
    assert torch_run.returncode == 0
    a, b = (np.load(tmp_path / n / "samples.npz")["images"].astype(int) for n in ("s", "t"))
    assert np.abs(a - b).max() <= 1  # uint8 images: at most one level of rounding apart


def test_without_openvino_the_error_names_the_extra(monkeypatch):
    real = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("no openvino")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(ConfigError, match=r"slimfusion\[openvino\]"):
        openvino_runtime()


def test_the_engine_lever_is_searched_and_its_choice_reloads_to_the_same_images(tmp_path):
    import json
    import subprocess
    import sys

    from slimfusion.optimize import OptimizeConfig, optimize
    from slimfusion.optimize.measure import Arena

    ddpm = slimfusion.load("builtin:digits-ddpm")
    knobs = {
        "solver.scheduler": ["unipc"],
        "solver.steps": [4],
        "solver.spacing": ["leading"],
        "engine.int8": [False],
        "engine.bf16": [False],
    }
    config = OptimizeConfig(levers=["solver", "engine"], knobs=knobs, base_steps=10, batch=16, screen_num=16,
                            mid_num=0, confirm_num=32, rounds=2, confirm=2, budget="10m")  # fmt: skip
    result = optimize(ddpm, config, out=tmp_path / "run")
    screened = {r["key"]: r for r in result["rows"] if r["rung"] == "screen"}
    both = {
        "solver": {"scheduler": "unipc", "steps": 4, "spacing": "leading"},
        "engine": {"bf16": False, "int8": False},
    }
    alone = {"solver": both["solver"]}
    assert json.dumps(both, sort_keys=True) in screened or result["notes"], result["notes"]
    if json.dumps(both, sort_keys=True) in screened:  # a float32 IR: the images of torch up to rounding
        same = screened[json.dumps(both, sort_keys=True)]["differences"]["fd"]["difference"]
        assert abs(same - screened[json.dumps(alone, sort_keys=True)]["differences"]["fd"]["difference"]) < 0.05
    chosen = result["chosen"]
    if chosen is not None and "engine" in chosen["candidate"]:
        script = (
            "import sys, numpy, slimfusion; m = slimfusion.load(sys.argv[1]); assert type(m).__name__ =="
            " 'OpenVINODenoiser'; x = slimfusion.sample(m, slimfusion.SampleConfig(num=4, seed=1), progress=False);"
            "numpy.save(sys.argv[2], x.numpy())"
        )
        out = tmp_path / "fresh.npy"
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "run" / "model"), str(out)], check=True)
        search_images, _ = Arena(ddpm, config).images(chosen["candidate"], 1, 4)
        assert np.allclose(np.load(out), search_images.numpy(), atol=1e-4)
