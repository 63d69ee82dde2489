"""Solvers: every row of the scheduler table samples every model kind, seeded per image, through one chain."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_dit_pipeline, tiny_model, tiny_sd_pipeline
from pydantic import ValidationError
from typer.testing import CliRunner

import slimfusion
from slimfusion.cli import app
from slimfusion.diffusion import SOLVERS, make_scheduler, noise_scheduler
from slimfusion.errors import ConfigError
from slimfusion.sample import SampleConfig, sample


@pytest.fixture(scope="module")
def unet():
    return tiny_model("UNet2DModel")


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_every_solver_samples_seeded_and_batch_invariant(unet, solver):
    config = SampleConfig(num=3, steps=4, scheduler=solver, seed=1, batch_size=3)
    full = sample(unet, config, progress=False)
    assert full.shape == (3, 1, 8, 8) and torch.isfinite(full).all()
    rebatched = sample(unet, config.model_copy(update={"batch_size": 2}), progress=False)
    # multistep history starts afresh per batch; the tolerance is float rounding's, which differs with the batch size
    # (kernels pick their blocking by shape): Heun's two evaluations a step carry it to 4e-5 at two threads
    assert torch.allclose(rebatched, full, atol=1e-4)
    scheduler = make_scheduler(unet, solver, 4)
    assert type(scheduler).__name__ == SOLVERS[solver].class_name
    # every solver runs on the model's own training schedule (Heun / LCM once took their own default betas)
    assert torch.allclose(scheduler.alphas_cumprod, noise_scheduler(unet).alphas_cumprod)


def test_solvers_differ_and_spacing_changes_the_timesteps(unet):
    base = SampleConfig(num=2, steps=4, seed=0)
    images = {s: sample(unet, base.model_copy(update={"scheduler": s}), progress=False) for s in ("ddim", "unipc")}
    assert not torch.allclose(images["ddim"], images["unipc"])
    leading = make_scheduler(unet, "ddim", 4, spacing="leading").timesteps
    trailing = make_scheduler(unet, "ddim", 4, spacing="trailing").timesteps
    assert trailing[0] == 999 and leading[0] < 999
    karras = make_scheduler(unet, "dpm++2m", 4, karras=True)
    assert karras.config.use_karras_sigmas


def test_bad_solver_settings_are_refused(unet):
    with pytest.raises(ValidationError, match="unknown scheduler 'dpm'"):
        SampleConfig(scheduler="dpm")
    with pytest.raises(ConfigError, match="has no Karras sigmas"):
        sample(unet, SampleConfig(num=1, steps=2, karras=True), progress=False)


@pytest.mark.parametrize("solver", ["dpm++2m", "unipc", "euler"])
def test_pipelines_take_the_solver(solver):
    sd = tiny_sd_pipeline()
    config = SampleConfig(num=2, steps=3, scheduler=solver, prompts=["the digit 7"], batch_size=2)
    images = sample(sd, config, progress=False)
    assert images.shape[0] == 2 and torch.isfinite(images).all()
    assert type(sd.scheduler).__name__ == SOLVERS[solver].class_name
    dit = tiny_dit_pipeline()
    labels = config.model_copy(update={"prompts": None, "class_labels": [1, 2]})
    assert torch.isfinite(sample(dit, labels, progress=False)).all()


def test_dit_refuses_solvers_with_unseeded_step_noise():
    config = SampleConfig(num=1, steps=2, scheduler="dpm++2m-sde", class_labels=[1])
    with pytest.raises(ConfigError, match="dpm[+][+]2m-sde step noise from torch's global generator"):
        sample(tiny_dit_pipeline(), config, progress=False)


def test_cli_sample_records_the_solver(unet, tmp_path):
    folder = slimfusion.save(unet, tmp_path / "unet")
    out = tmp_path / "s"
    args = ["sample", str(folder), "--num", "2", "--steps", "3", "--scheduler", "dpm++3m", "--spacing", "trailing"]
    result = CliRunner().invoke(app, [*args, "--karras", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "sampling.json").read_text())
    assert (record["scheduler"], record["spacing"], record["karras"]) == ("dpm++3m", "trailing", True)


def test_ssim_refuses_sample_sets_from_different_solvers(unet, tmp_path):
    from slimfusion.evaluate import EvaluateConfig, evaluate
    from slimfusion.sample import sample_to_folder

    base = SampleConfig(num=2, steps=3, batch_size=2)
    sample_to_folder(unet, base, tmp_path / "ddim")
    sample_to_folder(unet, base.model_copy(update={"scheduler": "unipc"}), tmp_path / "unipc")
    sample_to_folder(unet, base.model_copy(update={"karras": True, "scheduler": "unipc"}), tmp_path / "karras")
    config = EvaluateConfig(metrics=["ssim"])
    with pytest.raises(ConfigError, match="differ in scheduler"):
        evaluate(str(tmp_path / "unipc"), config, original=str(tmp_path / "ddim"), progress=False)
    with pytest.raises(ConfigError, match="differ in karras"):
        evaluate(str(tmp_path / "karras"), config, original=str(tmp_path / "unipc"), progress=False)


def test_unknown_solver_is_one_line_on_every_verb(tmp_path):
    from test_cli import run_cli

    for verb, extra in (("sample", ["--out", str(tmp_path / "s")]), ("evaluate", ["--metrics", "cost"])):
        result = run_cli(verb, "builtin:digits-ddpm", "--scheduler", "dpm", *extra)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: --scheduler: unknown scheduler 'dpm'; choose one of " + ", ".join(SOLVERS) + " (got 'dpm')"
        ]
    assert not (tmp_path / "s").exists()


def test_explicit_timesteps_are_followed_in_every_batch(unet):
    ts = [900, 500, 100]
    config = SampleConfig(num=3, scheduler="euler", timesteps=ts, seed=0, batch_size=2)
    assert config.steps == 3
    assert make_scheduler(unet, "euler", 3, timesteps=ts).timesteps.tolist() == ts
    explicit = sample(unet, config, progress=False)
    default = sample(unet, SampleConfig(num=3, scheduler="euler", steps=3, seed=0, batch_size=2), progress=False)
    assert not torch.allclose(explicit, default)  # a chain that restarted on the default steps would equal these
    one_by_one = sample(unet, config.model_copy(update={"batch_size": 1}), progress=False)
    assert torch.allclose(explicit, one_by_one, atol=1e-5)
    own = make_scheduler(unet, "euler", 3).timesteps.round().long().tolist()
    same = sample(unet, config.model_copy(update={"timesteps": own}), progress=False)
    assert torch.allclose(same, default, atol=1e-4)  # the scheduler's own timesteps, given explicitly: same images


def test_explicit_timesteps_are_refused_where_they_cannot_apply(unet, tmp_path):
    from test_skip import _plan

    with pytest.raises(ValidationError, match="descending order"):
        SampleConfig(timesteps=[100, 500])
    with pytest.raises(ValidationError, match="--steps 4 disagrees with the 2 --timesteps"):
        SampleConfig(steps=4, timesteps=[500, 100])
    with pytest.raises(ConfigError, match="the ddim scheduler takes none; these do: ddpm, dpm[+][+]2m"):
        sample(unet, SampleConfig(num=1, timesteps=[500, 100]), progress=False)
    with pytest.raises(ConfigError, match="past the model's last train timestep 999"):
        sample(unet, SampleConfig(num=1, scheduler="lcm", timesteps=[1000, 100]), progress=False)
    plan = tmp_path / "plan.json"
    plan.write_text(_plan(unet, [[]] * 2, steps=2).model_dump_json())
    with pytest.raises(ConfigError, match="a skip plan is made for the scheduler's own timesteps"):
        sample(unet, SampleConfig(num=1, scheduler="ddim", plan=str(plan), timesteps=[500, 100]), progress=False)
    with pytest.raises(ConfigError, match="DiTPipeline takes no explicit timesteps"):
        sample(tiny_dit_pipeline(), SampleConfig(num=1, scheduler="euler", timesteps=[500, 100], class_labels=[1]))
    sd = tiny_sd_pipeline()
    prompt = SampleConfig(num=1, scheduler="euler", timesteps=[900, 300], prompts=["the digit 7"])
    explicit = sample(sd, prompt, progress=False)
    assert not torch.allclose(explicit, sample(sd, prompt.model_copy(update={"timesteps": None}), progress=False))


def test_cli_timesteps_are_recorded(unet, tmp_path):  # bad ones: tests/test_hostile_table.py
    folder = slimfusion.save(unet, tmp_path / "unet")
    out = tmp_path / "s"
    result = CliRunner().invoke(
        app, ["sample", str(folder), "--num", "2", "--scheduler", "lcm", "--timesteps", "999,499", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "sampling.json").read_text())
    assert (record["timesteps"], record["steps"]) == ([999, 499], 2)
