"""`slimfusion run recipe.yaml`: validation before any work, resume at the unfinished step, history of every step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import tiny_model
from test_cli import run_cli

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.recipe import load_recipe


def _recipe(path, model, steps: str):
    path.write_text(f"model: {model}\nsteps:\n{steps}")
    return path


@pytest.mark.parametrize(
    "steps,message",
    [
        ("  - prun: {}\n", "step 1: unknown step 'prun'; allowed:"),
        ("  - prune: {method: magnitude, ration: 0.2}\n", "step 1 (prune): unknown option 'ration'; allowed: method"),
        ("  - lowrank: {rank_ratio: 0.5}\n  - prune: {ratio: 1.5}\n", "step 2 (prune): ratio: Input should be less"),
        ("  - quantize: {scheme: int4}\n", "step 1 (quantize): scheme: Input should be 'bf16'"),
        ("  - finetune: {steps: many}\n", "step 1 (finetune): steps: Input should be a valid integer"),
        ("  - prune: {}\n    finetune: {}\n", "step 1: one verb per step"),
    ],
)
def test_invalid_recipe_rejected_before_any_work(steps, message, tmp_path):
    recipe = _recipe(tmp_path / "r.yaml", "builtin:digits-ddpm", steps)
    with pytest.raises(ConfigError, match="recipe .*" + message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(recipe)
    result = run_cli("run", str(recipe), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_killed_in_step_3_resumes_at_step_3(tmp_path):
    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "tiny")
    first_two = "  - prune: {method: magnitude, ratio: 0.25}\n  - lowrank: {rank_ratio: 0.5}\n"
    long_run = _recipe(tmp_path / "long.yaml", model, first_two + "  - finetune: {steps: 100000, batch_size: 4}\n")
    out = tmp_path / "out"
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "slimfusion", "run", str(long_run), "--out", str(out)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    for line in proc.stdout:
        if line.startswith("step 3"):
            break
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (out / "steps").glob("*.done.json"))
    assert done == ["01-prune.done.json", "02-lowrank.done.json"]
    stamps = [(out / "steps" / name).stat().st_mtime_ns for name in done]
    short = _recipe(
        tmp_path / "short.yaml",
        model,
        first_two + "  - finetune: {steps: 2, batch_size: 4}\n  - quantize: {scheme: bf16}\n",
    )
    result = run_cli("run", str(short), "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert "step 1 (prune): done before, kept" in text and "step 2 (lowrank): done before, kept" in text
    assert "step 3 (finetune): slimfusion finetune" in text
    assert [(out / "steps" / name).stat().st_mtime_ns for name in done] == stamps
    final = slimfusion.load(out / "model")
    history = slimfusion.models.meta.history(final)
    assert [h["step"] for h in history] == ["prune", "lowrank", "finetune", "quantize", "recipe"]
    assert history[-1]["config"]["steps"][2] == {"finetune": {"steps": 2, "batch_size": 4}}
    info = run_cli("info", str(out / "model"), "--json")
    assert info.returncode == 0 and "recipe" in json.dumps(json.loads(info.stdout)["history"])


def test_accelerate_launcher_wraps_only_training_and_sampling_steps(tmp_path):
    from slimfusion.recipe import launched_command
    from slimfusion.registry import STEPS

    assert sorted(v for v, s in STEPS.items() if s.launched) == ["distill-steps", "evaluate", "finetune"]
    context = {"model": "builtin:digits-ddpm"}
    tune = launched_command("finetune", {"steps": 5}, "m", tmp_path / "01-finetune", context)
    assert tune[1:4] == ["-m", "accelerate.commands.launch", "-m"] and tune[4:6] == ["slimfusion", "finetune"]
    assert tune[-1] == "--steps=5"  # one word: a value can never be read as an option
    evaluate = launched_command("evaluate", {"ref": "--help"}, "m", tmp_path / "03-evaluate", context)
    assert evaluate[-2:] == ["--ref=--help", "--original=builtin:digits-ddpm"]


def test_five_step_recipe_runs_in_one_process(tmp_path, monkeypatch):
    """No subprocess for steps that do not train under `accelerate launch`: the model stays in memory."""
    from slimfusion.recipe import run_recipe

    def refuse(*args, **kwargs):
        raise AssertionError(f"a recipe step started a subprocess: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "tiny")
    steps = (
        "  - prune: {method: magnitude, ratio: 0.25}\n"
        "  - lowrank: {rank_ratio: 0.5, skip: [conv_in, conv_out]}\n"
        "  - skip-plan: {method: deepcache, steps: 6, interval: 2}\n"
        "  - quantize: {scheme: bf16}\n"
        "  - evaluate: {num: 4, steps: 6, metrics: [ssim, cost]}\n"
    )
    final = run_recipe(_recipe(tmp_path / "r.yaml", model, steps), tmp_path / "out", echo=lambda *_: None)
    loaded = slimfusion.load(final)
    names = [h["step"] for h in slimfusion.models.meta.history(loaded)]
    assert names == ["prune", "lowrank", "quantize", "recipe"]
    assert slimfusion.models.meta.get_meta(loaded)["skip_plan"]["method"] == "deepcache"
    row = json.loads((tmp_path / "out" / "results.json").read_text())["rows"][0]
    assert row["name"] == "after step 4" and 0 < row["metrics"]["plan_macs_ratio"] < 1  # evaluated with the plan
    assert sorted(p.name for p in (tmp_path / "out" / "steps").glob("*.done.json"))[-1] == "05-evaluate.done.json"


def test_recipe_values_are_values_and_aliases_are_refused(tmp_path):
    recipe = _recipe(tmp_path / "flag.yaml", '"--help"', "  - quantize: {scheme: bf16}\n")
    result = run_cli("run", str(recipe), "--out", str(tmp_path / "out"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.returncode == 2 and errors == [
        "error: model not found: --help (no such folder, builtin:NAME or hub id)"
    ]
    assert not list((tmp_path / "out" / "steps").glob("*.done.json"))
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(levels) + "\nmodel: m\nsteps: [*a8]\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        load_recipe(bomb)
    assert time.perf_counter() - start < 1.0


def test_run_refuses_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "mine"
    (out / "model").mkdir(parents=True)
    (out / "model" / "notes.txt").write_text("keep me")
    recipe = _recipe(tmp_path / "r.yaml", "builtin:digits-ddpm", "  - quantize: {scheme: bf16}\n")
    result = run_cli("run", str(recipe), "--out", str(out))
    assert result.returncode == 2 and "is not a recipe run folder" in result.stderr
    assert (out / "model" / "notes.txt").read_text() == "keep me"
