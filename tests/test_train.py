"""Fine-tuning: distillation losses, exact resume after a kill, and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_model

import slimfusion
from slimfusion.data import load_images
from slimfusion.errors import ConfigError, NotAModelError
from slimfusion.models.meta import history
from slimfusion.train import FinetuneConfig, finetune
from slimfusion.train.distill import Student, feature_loss, output_loss
from slimfusion.train.loop import fit, learning_rate


def test_output_distillation_loss_on_a_known_case():
    student, noise, teacher = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 2.0), torch.ones(2, 1, 4, 4)
    # W |eps_t - eps_s|^2 + (1 - W) |eps - eps_s|^2 = 0.25 * 1 + 0.75 * 4
    assert output_loss(student, noise, teacher, 0.25).item() == pytest.approx(3.25)
    assert output_loss(student, noise, teacher, 0.0).item() == pytest.approx(4.0)
    assert output_loss(student, noise, None, 0.5).item() == pytest.approx(4.0)
    assert feature_loss([torch.zeros(3), torch.ones(3)], [torch.ones(3), torch.ones(3)]).item() == pytest.approx(0.5)


def _pruned(seed: int = 0) -> torch.nn.Module:
    model = tiny_model("UNet2DModel", seed)
    return slimfusion.prune(model, slimfusion.StructuralConfig(method="magnitude", ratio=0.5), progress=False)


def test_feature_distillation_adapts_pruned_widths_and_trains_adapters():
    teacher, student = tiny_model("UNet2DModel"), _pruned()
    wrapped = Student(student, teacher, features=True)
    convs = [a for a in wrapped.adapters.values() if isinstance(a, torch.nn.Conv2d)]
    assert convs, "a pruned student needs 1x1 adapters to the teacher's widths"
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 500])
    teacher(x, t)
    pred, feats = wrapped(x, t)
    loss = feature_loss(feats, wrapped.teacher_features())
    loss.backward()
    assert pred.shape == x.shape and torch.isfinite(loss)
    assert all(a.weight.grad is not None for a in convs)
    wrapped.close()


def test_finetune_records_history_and_lowers_loss():
    images = load_images("digits", 8, 1)[:256]
    model = _pruned()
    config = FinetuneConfig(steps=40, batch_size=16, lr=1e-3, warmup_steps=5, distill=0.5, feature_distill=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune(model, images, config, teacher=tiny_model("UNet2DModel"), progress=False)
    entry = history(model)[-1]
    assert entry["step"] == "finetune" and entry["config"]["distill"] == 0.5
    assert entry["effect"]["final_loss"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [h["step"] for h in history(model)] == ["prune", "finetune"]


def test_finetune_distils_from_a_given_teacher_by_default():
    images = load_images("digits", 8, 1)[:32]
    config = FinetuneConfig(steps=2, batch_size=8)
    taught = finetune(_pruned(), images, config, teacher=tiny_model("UNet2DModel"), progress=False)
    alone = finetune(_pruned(), images, config, progress=False)
    assert history(taught)[-1]["config"]["distill"] == 1.0 and history(alone)[-1]["config"]["distill"] == 0.0


def test_resume_after_simulated_kill_is_exact(tmp_path):
    images = load_images("digits", 8, 1)[:128]
    config = FinetuneConfig(steps=7, batch_size=8, distill=0.5, feature_distill=0.1)
    teacher = tiny_model("UNet2DModel")
    straight = fit(_pruned(), images, config, "finetune", teacher=teacher, progress=False)
    run = tmp_path / "run"
    fit(_pruned(), images, config, "finetune", teacher=teacher, out=run, checkpoint_every=2, stop_at=5, progress=False)
    assert (run / "train_state" / "state.json").exists()
    checkpoint = slimfusion.load(run)  # the checkpoint is a loadable (EMA) model
    resumed = fit(checkpoint, images, config, "finetune", teacher=teacher, out=run, resume=True, progress=False)
    assert history(resumed)[-1]["effect"]["resumed_from"] == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_other_settings_and_missing_state(tmp_path):
    images = load_images("digits", 8, 1)[:64]
    config = FinetuneConfig(steps=4, batch_size=8)
    fit(_pruned(), images, config, "finetune", out=tmp_path / "run", checkpoint_every=2, stop_at=3, progress=False)
    other = FinetuneConfig(steps=4, batch_size=8, lr=1e-3)
    with pytest.raises(ConfigError, match="--lr"):
        fit(_pruned(), images, other, "finetune", out=tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="no training state"):
        fit(_pruned(), images, config, "finetune", out=tmp_path, resume=True, progress=False)


def test_cosine_decay_warms_up_then_falls_to_zero_and_fixes_the_step_budget(tmp_path):
    config = FinetuneConfig(steps=110, lr=1e-3, warmup_steps=10, lr_decay="cosine")
    rates = [learning_rate(config, step) for step in range(1, 111)]
    assert rates[9] == pytest.approx(1e-3) and rates[59] == pytest.approx(5e-4) and rates[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))
    assert learning_rate(FinetuneConfig(steps=110, lr=1e-3, warmup_steps=10), 110) == pytest.approx(1e-3)
    images = load_images("digits", 8, 1)[:64]
    short = FinetuneConfig(steps=4, batch_size=8, lr_decay="cosine")
    fit(_pruned(), images, short, "finetune", out=tmp_path / "run", checkpoint_every=2, stop_at=3, progress=False)
    longer = FinetuneConfig(steps=8, batch_size=8, lr_decay="cosine")
    with pytest.raises(ConfigError, match="--steps"):  # the decay is scheduled over the original budget
        fit(_pruned(), images, longer, "finetune", out=tmp_path / "run", resume=True, progress=False)


def test_distillation_without_teacher_and_untrainable_family_are_rejected():
    images = load_images("digits", 8, 1)[:16]
    with pytest.raises(ConfigError, match="teacher"):
        finetune(_pruned(), images, FinetuneConfig(steps=1, distill=0.5), progress=False)
    with pytest.raises(NotAModelError, match="not CLIPTextModel"):
        finetune(tiny_model("CLIPTextModel"), images, FinetuneConfig(steps=1), progress=False)
    with pytest.raises(ConfigError, match=r"training inputs have shape \(1, 8, 8\); the model takes \(4, 8, 8\)"):
        finetune(tiny_model("DiTTransformer2DModel"), images, FinetuneConfig(steps=1), progress=False)
    with pytest.raises(ConfigError, match="fp16"):
        finetune(_pruned(), images, FinetuneConfig(steps=1, mixed_precision="fp16"), progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "slimfusion", *args]


def test_cli_finetune_killed_then_resumed_matches_uninterrupted_run(tmp_path):
    student = slimfusion.save(_pruned(), tmp_path / "student")
    teacher = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "teacher")
    common = ["--teacher", str(teacher), "--distill", "0.5", "--steps", "150", "--batch-size", "4"]
    common += ["--checkpoint-every", "10"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    straight = subprocess.run(
        _cli("finetune", str(student), "--out", str(tmp_path / "a"), *common), capture_output=True, text=True, env=env
    )
    assert straight.returncode == 0, straight.stderr
    killed = subprocess.Popen(
        _cli("finetune", str(student), "--out", str(tmp_path / "b"), *common),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 120
    while not (tmp_path / "b" / "train_state").exists() and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (tmp_path / "b" / "train_state").exists(), "no checkpoint was written before the kill"
    resumed = subprocess.run(
        _cli("finetune", str(student), "--out", str(tmp_path / "b"), *common, "--resume"),
        capture_output=True,
        text=True,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = slimfusion.load(tmp_path / "a"), slimfusion.load(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not (tmp_path / "b" / "train_state").exists(), "the finished model folder drops the training state"
    assert history(b)[-1]["effect"]["resumed_from"] > 0


def test_cli_finetune_errors_are_one_line(tmp_path):
    result = subprocess.run(
        _cli("finetune", "builtin:digits-ddpm", "--out", str(tmp_path / "x"), "--distill", "0.5"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip().startswith("error:") and "--teacher" in result.stderr
    result = subprocess.run(
        _cli("finetune", "builtin:digits-ddpm", "--out", str(tmp_path / "x"), "--resume"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = subprocess.run(
        _cli("finetune", "builtin:digits-ddpm", "--out", str(tmp_path / "x"), "--lr-decay", "linear"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--lr-decay" in result.stderr
    assert not (tmp_path / "x").exists()
