"""sparsify and sweep on the command line: pipelines in, pipelines out, one-line refusals, resumable sweeps."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import run_cli

import slimfusion
from slimfusion.models.meta import history
from slimfusion.sparsify import sparsity_of


def test_sparsify_writes_a_pipeline_back_with_only_the_chosen_component_changed(sd_folder, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a handwritten seven\nthe digit 3\n")
    out = tmp_path / "sparse"
    result = run_cli(
        "sparsify", str(sd_folder), "--method", "wanda", "--sparsity", "0.5", "--component", "text_encoder",
        "--calib-prompts", str(prompts), "--calib-samples", "2", "--calib-steps", "2", "--storage", "compact",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "achieved sparsity" in result.stdout
    pipe, dense = slimfusion.load_pipeline(out), slimfusion.load_pipeline(sd_folder)
    assert abs(sparsity_of(pipe.text_encoder)["sparsity"] - 0.5) < 0.005
    assert history(pipe.text_encoder)[-1]["config"]["method"] == "wanda"
    ours, theirs = pipe.unet.state_dict(), dense.unet.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert (out / "text_encoder" / "slimfusion_sparse.safetensors").exists()
    info = json.loads(run_cli("info", str(out), "--component", "text_encoder", "--json").stdout)
    assert info["storage"] == "compact" and abs(info["sparsity"]["sparsity"] - 0.5) < 0.005


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sparsity", "1.2"], "--sparsity"),
        (["--nm", "4:2"], "N:M"),
        (["--sparsity", "0.5", "--component", "transformer"], "no component 'transformer'"),
        (["--sparsity", "0.5", "--method", "wanda"], "--calib-prompts"),
        (["--sparsity", "0.5", "--storage", "zip"], "--storage"),
    ],
)
def test_sparsify_bad_input_is_one_line_and_writes_nothing(sd_folder, tmp_path, args, message):
    out = tmp_path / "never"
    result = run_cli("sparsify", str(sd_folder), *args, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not out.exists()


def test_a_resumed_sweep_recomputes_no_finished_point(sd_folder, tmp_path, monkeypatch):
    from slimfusion.sparsify import sweep as sweep_mod

    config = sweep_mod.SweepConfig(
        components=["unet", "text_encoder"], methods=["magnitude"], sparsities=[0.3, 0.6],
        prompts=["a handwritten seven", "the digit 3"], num=4, steps=2,
    )  # fmt: skip
    ran = []
    real = sweep_mod._run_point

    def counting(source, cfg, out, point, progress):
        ran.append(point)
        if len(ran) == 3:
            raise KeyboardInterrupt  # killed during the third run (dense, then two points)
        real(source, cfg, out, point, progress)

    monkeypatch.setattr(sweep_mod, "_run_point", counting)
    with pytest.raises(KeyboardInterrupt):
        sweep_mod.sweep(str(sd_folder), config, tmp_path / "sw", progress=False)
    finished = [p for p in ran[:2] if p is not None]
    ran.clear()
    monkeypatch.setattr(sweep_mod, "_run_point", lambda *a: (ran.append(a[3]), real(*a)))
    summary = sweep_mod.sweep(str(sd_folder), config, tmp_path / "sw", progress=False)
    assert None not in ran and not set(ran) & set(finished)
    assert len(ran) == len(config.points()) - len(finished)
    assert len(summary["points"]) == 4 and set(summary["collapse"]) == {"unet magnitude", "text_encoder magnitude"}
    assert (tmp_path / "sw" / "sweep.md").exists() and (tmp_path / "sw" / "sweep_ssim.png").exists()
    other = config.model_copy(update={"num": 5})
    with pytest.raises(slimfusion.errors.ConfigError, match="other settings"):
        sweep_mod.sweep(str(sd_folder), other, tmp_path / "sw", progress=False)
