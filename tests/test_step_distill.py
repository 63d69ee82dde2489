"""Step distillation: the two objectives' targets, refusals, exact resume, and students plain diffusers can sample."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import tiny_dit_pipeline, tiny_model, tiny_sd_pipeline
from diffusers import DDPMPipeline, LCMScheduler, UNet2DModel
from pydantic import ValidationError
from typer.testing import CliRunner

import slimfusion
from slimfusion.cli import app
from slimfusion.diffusion import image_generator, noise_scheduler
from slimfusion.errors import ConfigError
from slimfusion.models.io import load, save
from slimfusion.models.meta import get_meta, record_step
from slimfusion.sample import SampleConfig, sample
from slimfusion.train.recovery.step_distill import (
    ConsistencyObjective,
    ProgressiveObjective,
    StepDistillConfig,
    _Process,
    _Teacher,
    ddim_grid,
    distill_steps,
)
from slimfusion.verbs.step_distill import teacher_source

FAST = {"steps": 3, "batch_size": 4, "warmup_steps": 1}


@pytest.fixture(scope="module")
def images():
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_config_refuses_impossible_step_counts():
    with pytest.raises(ValidationError, match="must be below the teacher"):
        StepDistillConfig(method="consistency", to_steps=50)
    with pytest.raises(ValidationError, match="power of 2"):
        StepDistillConfig(method="progressive", to_steps=4, teacher_steps=24)
    with pytest.raises(ValidationError):
        StepDistillConfig(to_steps=0)
    assert StepDistillConfig(method="progressive", to_steps=4).teacher_of() == 32
    assert StepDistillConfig(method="progressive", to_steps=4).rounds() == 3
    assert StepDistillConfig(method="progressive", to_steps=3).teacher_of() == 48


def test_progressive_target_lands_where_two_teacher_steps_land():
    model = tiny_model("UNet2DModel")
    process = _Process(noise_scheduler(model))
    process.clip = False  # the identity below holds for the unclipped estimate
    grid = ddim_grid(get_meta(model).get("scheduler") or noise_scheduler(model).config, 8)
    assert torch.equal(ddim_grid(noise_scheduler(model).config, 4), grid[0::2])  # the grids nest
    teacher = _Teacher(model.eval(), None, 1.0)
    objective = ProgressiveObjective(process, teacher, grid)
    t = objective.starts
    z = torch.randn(len(t), 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mid, end = objective.mid_of[t], objective.end_of[t]
    two = process.ddim(z, teacher(z, t, None), t, mid)
    two = process.ddim(two, teacher(two, mid, None), mid, end)
    target = objective.target(z, t, None)
    a, s = process.coefficients(t, z)
    one = process.ddim(z, (z - a * target) / s, t, end)  # one student step with the target as its estimate
    assert torch.allclose(one, two, atol=1e-4)
    assert end[0] == -1 or (end == -1).any()  # the last step lands on the clean end


def test_consistency_target_at_the_boundary_is_the_teachers_step():
    model = tiny_model("UNet2DModel")
    process = _Process(noise_scheduler(model))
    objective = ConsistencyObjective(process, _Teacher(model.eval(), None, 1.0), model, 50, 1000)
    z, out = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    assert torch.allclose(objective.consistent(z, out, torch.zeros(2, dtype=torch.long)), z)  # c_skip(0) = 1
    assert objective.grid[0] == 19 and objective.grid[-1] == 999  # LCM's 50-point grid


@pytest.mark.parametrize("method", ["progressive", "consistency"])
def test_killed_run_resumes_exactly(tmp_path, images, method):
    config = StepDistillConfig(method=method, to_steps=2, teacher_steps=8, **FAST)
    whole = distill_steps(tiny_model("UNet2DModel"), images, config, progress=False)
    run = tmp_path / "run"
    model = tiny_model("UNet2DModel")
    kill = 5 if method == "progressive" else 2  # progressive: inside the second round (its teacher is a checkpoint)
    distill_steps(model, images, config, out=run, checkpoint_every=1, progress=False, stop_at=kill)
    if method == "progressive":
        assert json.loads((run / "distill_round.json").read_text())["round"] == 1 and (run / "round_teacher").is_dir()
    resumed = distill_steps(tiny_model("UNet2DModel"), images, config, out=run, resume=True, progress=False)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert get_meta(resumed)["sampler"]["steps"] == 2


@pytest.mark.parametrize("method", ["progressive", "consistency"])
def test_plain_diffusers_samples_the_saved_student(tmp_path, images, method):
    student = distill_steps(
        tiny_model("UNet2DModel"), images, StepDistillConfig(method=method, to_steps=2, teacher_steps=8, **FAST),
        progress=False,
    )  # fmt: skip
    folder = save(student, tmp_path / "student")
    ours = sample(load(folder), SampleConfig(num=1, seed=3), progress=False)  # its own sampler, unasked
    assert json.loads((folder / "scheduler_config.json").read_text())["_class_name"] == (
        "DDIMScheduler" if method == "progressive" else "LCMScheduler"
    )
    cls = getattr(__import__("diffusers"), json.loads((folder / "scheduler_config.json").read_text())["_class_name"])
    pipe = DDPMPipeline(UNet2DModel.from_pretrained(folder), cls.from_pretrained(folder))
    out = pipe(generator=image_generator(3, 0), num_inference_steps=2, output_type="np").images
    theirs = torch.from_numpy(out).permute(0, 3, 1, 2) * 2 - 1
    assert torch.allclose(ours, theirs, atol=1e-4)
    if method == "consistency":
        assert isinstance(cls.from_pretrained(folder), LCMScheduler)
        assert cls.from_pretrained(folder).config.original_inference_steps == 8


def test_compressed_student_needs_a_teacher():
    model = tiny_model("UNet2DModel")
    assert teacher_source(model, None) is None  # an uncompressed model teaches itself
    record_step(model, "sparsify", {}, {})
    with pytest.raises(ConfigError, match="needs --teacher"):
        teacher_source(model, None)
    assert teacher_source(model, "builtin:digits-ddpm") == "builtin:digits-ddpm"
    get_meta(model)["sampler"] = {"scheduler": "lcm"}
    record_step(model, "prune", {}, {"pruned_from": "somewhere"})
    with pytest.raises(ConfigError, match="already step-distilled"):
        teacher_source(model, None)


def test_apply_dispatches_to_step_distillation(images):
    model = tiny_model("UNet2DModel")
    slimfusion.apply(model, StepDistillConfig(to_steps=2, teacher_steps=8, **FAST), data=images, progress=False)
    assert get_meta(model)["sampler"]["scheduler"] == "lcm"


def test_cli_distills_and_sample_uses_the_students_sampler(tmp_path):
    out, samples = tmp_path / "student", tmp_path / "samples"
    args = ["distill-steps", "builtin:digits-ddpm", "--out", str(out), "--method", "progressive", "--to-steps", "2"]
    result = CliRunner().invoke(app, [*args, "--teacher-steps", "4", "--steps", "1", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["sample", str(out), "--out", str(samples), "--num", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads((samples / "sampling.json").read_text())
    used = (record["scheduler"], record["steps"], record["spacing"], record["own_sampler"])
    assert used == ("ddim", 2, "trailing", True)
    result = CliRunner().invoke(app, ["sample", str(out), "--out", str(tmp_path / "s2"), "--num", "1", "--steps", "6"])
    assert json.loads((tmp_path / "s2" / "sampling.json").read_text())["steps"] == 6  # what the user says wins
    bad = CliRunner().invoke(app, [*args[:3], str(tmp_path / "x"), "--to-steps", "60"])
    assert bad.exit_code != 0 and "below the teacher" in str(bad.exception) and not (tmp_path / "x").exists()


def test_conditional_students_fold_guidance_and_save_their_scheduler(tmp_path):
    from slimfusion.subject import Subject
    from slimfusion.verbs.step_distill import StepDistillOptions, run_distill_steps

    pipe = tiny_sd_pipeline()
    teacher = tmp_path / "teacher"
    slimfusion.save_pipeline(pipe, teacher)
    subject = Subject.load(teacher)
    before = copy.deepcopy(subject.denoiser.state_dict())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a zero\na one\n")
    options = StepDistillOptions(
        to_steps=2, teacher_steps=8, guidance=2.0, teacher=str(teacher), distill_prompts=prompts, distill_num=4, **FAST
    )
    run_distill_steps(subject, options, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in subject.denoiser.state_dict().items())
    assert type(subject.obj.scheduler).__name__ == "LCMScheduler"
    folder = subject.save(tmp_path / "student")
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "LCMScheduler"
    config = SampleConfig(num=1, prompts=["a one"])
    images = sample(slimfusion.load_pipeline(folder), config, progress=False)
    assert images.shape[0] == 1 and torch.isfinite(images).all()


def test_dit_students_distill_progressively(tmp_path, monkeypatch):
    from slimfusion.subject import Subject
    from slimfusion.verbs.step_distill import StepDistillOptions, run_distill_steps

    teacher = tmp_path / "teacher"
    slimfusion.save_pipeline(tiny_dit_pipeline(), teacher)
    subject = Subject.load(teacher)
    options = StepDistillOptions(
        method="progressive", to_steps=2, teacher_steps=8, teacher=str(teacher), distill_class_labels="0,1",
        guidance=2.0, distill_num=4, **FAST,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="use --method progressive"):
        run_distill_steps(subject, options.model_copy(update={"method": "consistency"}), progress=False)
    import slimfusion.train.recovery.step_distill as module

    guided = []
    monkeypatch.setattr(module, "_Teacher", lambda t, null, g: guided.append(g) or _Teacher(t, null, g))
    rounds = []
    run_distill_steps(
        subject, options, progress=False, on_round=lambda m: rounds.append(get_meta(m)["sampler"]["steps"])
    )
    assert rounds == [4, 2]  # every round's student is handed out (benchmarks keep them)
    assert guided == [2.0, 1.0]  # guidance is folded in once: round 2's teacher already carries it
    images = sample(subject.obj, SampleConfig(num=1, class_labels=[1]), progress=False)
    assert torch.isfinite(images).all()


def test_a_sparse_student_keeps_its_zeros(images):
    from slimfusion.sparsify import SparsityConfig, sparsify, sparsity_of

    teacher = tiny_model("UNet2DModel")
    student = sparsify(copy.deepcopy(teacher), SparsityConfig(method="magnitude", sparsity=0.5), progress=False)
    before = sparsity_of(student)["sparsity"]
    config = StepDistillConfig(to_steps=2, teacher_steps=8, **FAST)
    distill_steps(student, images, config, teacher=teacher, progress=False)
    assert before > 0.4 and sparsity_of(student)["sparsity"] == pytest.approx(before)


def test_pseudo_huber_is_consistency_only_and_grows_like_the_distance():
    from slimfusion.train.recovery.step_distill import pseudo_huber

    with pytest.raises(ValidationError, match="is for consistency"):
        StepDistillConfig(method="progressive", to_steps=4, loss="pseudo-huber")
    x = torch.zeros(2, 1, 8, 8)
    assert pseudo_huber(x, x) == 0
    c = 0.00054 * 8  # 64 values
    near, far = pseudo_huber(x, x + 1e-4), pseudo_huber(x, x + 1.0)
    assert torch.isclose(far, torch.tensor(8.0 - c), rtol=1e-4)  # |d| = 8 for a unit shift: linear far off
    assert torch.isclose(near, torch.tensor((1e-4 * 8) ** 2 / (2 * c)), rtol=0.05)  # quadratic near zero: |d|^2 / 2c
    student = distill_steps(
        tiny_model("UNet2DModel"), torch.rand(8, 1, 8, 8) * 2 - 1,
        StepDistillConfig(to_steps=2, teacher_steps=8, loss="pseudo-huber", **FAST), progress=False,
    )  # fmt: skip
    assert get_meta(student)["sampler"]["scheduler"] == "lcm"
