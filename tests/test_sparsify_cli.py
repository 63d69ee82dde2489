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
    import slimfusion.sweep as sweep_mod

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
    _points_pair_up_in_compare(tmp_path / "sw" / "points", summary)


def _points_pair_up_in_compare(points, summary):
    """Every point folder is a samples folder: compare pairs two points and finds the SSIM the sweep measured."""
    from slimfusion.compare import compare
    from slimfusion.evaluate import EvaluateConfig

    names = ["unet__magnitude__0.300", "unet__magnitude__0.600"]
    config = EvaluateConfig(metrics=["ssim"], resamples=20)
    result = compare([str(points / n) for n in names], config, original=str(points / "dense"), progress=False)
    assert result["subjects"][1]["paired"]
    measured = {(p["component"], p["target"]): p["metrics"]["ssim"] for p in summary["points"]}
    for subject, target in zip(result["subjects"], (0.3, 0.6), strict=True):
        assert subject["metrics"]["ssim"] == pytest.approx(measured["unet", target], abs=0.03)  # uint8 PNG-like


def test_sweep_scores_clip_with_local_weights_and_refuses_a_bad_folder(sd_folder, tmp_path):
    from conftest import tiny_clip_folder

    from slimfusion.sweep import SweepConfig, sweep

    prompts = ["a handwritten seven", "the digit 3"]
    clip = tiny_clip_folder(tmp_path / "clip", prompts)
    values = {"components": ["unet"], "methods": ["magnitude"], "sparsities": [0.5], "prompts": prompts}
    config = SweepConfig(**values, num=2, steps=2, clip_model=str(clip))
    summary = sweep(str(sd_folder), config, tmp_path / "sw", progress=False)
    assert 0 <= summary["points"][0]["metrics"]["clip"] <= 100 and (tmp_path / "sw" / "sweep_clip.png").exists()
    bad = SweepConfig(**values, num=2, steps=2, clip_model=str(tmp_path))
    with pytest.raises(slimfusion.errors.ConfigError, match="not a folder with safetensors"):
        sweep(str(sd_folder), bad, tmp_path / "sw2", progress=False)
    assert not (tmp_path / "sw2").exists()


def test_a_sweep_sharded_over_two_accelerate_processes_equals_one_process(sd_folder, tmp_path):
    import subprocess
    import sys

    from test_sample import _free_port

    prompts = tmp_path / "p.txt"
    prompts.write_text("a handwritten seven\nthe digit 3\n")
    outs = {}
    for processes in (1, 2):
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
        launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launcher += ["--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port())]
        launcher += ["--multi_gpu"] if processes > 1 else []
        out = outs[processes] = tmp_path / f"sw{processes}"
        args = ["sweep", str(sd_folder), "--prompts", str(prompts), "--component", "unet,text_encoder"]
        args += ["--methods", "magnitude", "--sparsities", "0.3,0.6", "--num", "4", "--steps", "2", "--out", str(out)]
        result = subprocess.run([*launcher, "-m", "slimfusion", *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    one, two = (json.loads((outs[n] / "summary.json").read_text()) for n in (1, 2))
    assert [p["metrics"] for p in one["points"]] == [p["metrics"] for p in two["points"]]
    assert one["collapse"] == two["collapse"]


def test_a_pipeline_sparsified_by_the_cli_and_by_a_recipe_is_saved_byte_identically(sd_folder, tmp_path):
    from slimfusion.recipe import run_recipe

    cli = tmp_path / "cli"
    done = run_cli("sparsify", str(sd_folder), "--method", "magnitude", "--sparsity", "0.5", "--component", "unet",
                   "--out", str(cli))  # fmt: skip
    assert done.returncode == 0, done.stderr
    recipe = tmp_path / "r.yaml"
    step_options = "{method: magnitude, sparsity: 0.5, component: unet}"
    recipe.write_text(f"model: {sd_folder}\nsteps:\n  - sparsify: {step_options}\n")
    run_recipe(recipe, tmp_path / "run", echo=lambda *_: None)
    step = tmp_path / "run" / "steps" / "01-sparsify" / "model"
    files = sorted(p.relative_to(cli) for p in cli.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(step) for p in step.rglob("*") if p.is_file())
    for name in files:
        ours, theirs = (cli / name).read_bytes(), (step / name).read_bytes()
        if name.name == "slimfusion.json":  # the history records each run's wall time, nothing else differs
            ours, theirs = (json.dumps(_without_times(json.loads(b)), sort_keys=True) for b in (ours, theirs))
        assert ours == theirs, name


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "wall_s"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value
