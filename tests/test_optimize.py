"""`slimfusion optimize`: the search over the lever registry, its refusals, resume, and the saved choice."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_cli import run_cli

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.models.meta import get_meta
from slimfusion.optimize import OptimizeConfig, optimize
from slimfusion.optimize.journal import Journal
from slimfusion.optimize.measure import Arena, likely_to_hold
from slimfusion.optimize.search import Search
from slimfusion.optimize.space import candidates, key_of, model_key, sampled_with
from slimfusion.registry import LEVERS, Lever, register_lever

# The built-in DDPM against DDIM 10 as its "original": real digits, so FD / KD verdicts mean something, and cheap.
SMALL = dict(base_steps=10, batch=16, screen_num=16, mid_num=0, confirm_num=32, rounds=2, confirm=2, budget="10m")


def small(**changes) -> OptimizeConfig:
    return OptimizeConfig(**(SMALL | changes))


@pytest.fixture(scope="module")
def ddpm():
    return slimfusion.load("builtin:digits-ddpm")


def test_a_one_step_solver_is_never_chosen_under_tie_and_the_choice_reloads_to_the_same_images(ddpm, tmp_path):
    config = small(
        levers=["solver"], knobs={"solver.scheduler": ["unipc"], "solver.steps": [1, 4], "solver.spacing": ["linspace"]}
    )
    result = optimize(ddpm, config, out=tmp_path / "run")
    screened = {r["key"]: r for r in result["rows"] if r["rung"] == "screen"}
    one = screened[key_of({"solver": {"scheduler": "unipc", "steps": 1, "spacing": "linspace"}})]
    assert not one["holds"] and "worse" in one["why"]
    chosen = result["chosen"]["candidate"]
    assert chosen == {"solver": {"scheduler": "unipc", "steps": 4, "spacing": "linspace"}}
    for name in ("frontier.json", "frontier.md", "frontier.png", "report.html", "model/slimfusion.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert "unipc 4" in (tmp_path / "run" / "report.html").read_text()
    # a fresh process loads the model and samples with its own sampler: the search's images of those seeds
    script = (
        "import sys, numpy, slimfusion; m = slimfusion.load(sys.argv[1]);"
        "x = slimfusion.sample(m, slimfusion.SampleConfig(num=4, seed=1), progress=False);"
        "numpy.save(sys.argv[2], x.numpy())"
    )
    out = tmp_path / "fresh.npy"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "run" / "model"), str(out)], check=True)
    search_images, _ = Arena(ddpm, config).images(chosen, 1, 4)
    assert np.array_equal(np.load(out), search_images.numpy())


def test_a_killed_search_resumes_without_remeasuring_and_makes_the_same_choice(ddpm, tmp_path, monkeypatch):
    config = small(
        levers=["solver"],
        knobs={"solver.scheduler": ["unipc", "ddim"], "solver.steps": [1, 4], "solver.spacing": ["leading"]},
    )
    whole = optimize(ddpm, config, out=tmp_path / "whole")
    calls = {"n": 0}
    judge = Arena.judge

    def dies_on_the_third(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return judge(self, *args)

    monkeypatch.setattr(Arena, "judge", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        optimize(ddpm, config, out=tmp_path / "killed")
    monkeypatch.setattr(Arena, "judge", judge)
    with pytest.raises(FileExistsError):
        optimize(ddpm, config, out=tmp_path / "killed")
    measured = []
    monkeypatch.setattr(Arena, "judge", lambda self, c, seed, num: measured.append((key_of(c), seed, num)) or judge(
        self, c, seed, num))  # fmt: skip
    resumed = optimize(ddpm, config, out=tmp_path / "killed", resume=True)
    finished = [json.loads(line) for line in (tmp_path / "killed" / "journal.jsonl").read_text().splitlines()]
    before = [(r["key"], r["seed"], r["num"]) for r in finished if r["rung"] == "screen"][:2]
    assert len(before) == 2 and not set(before) & set(measured)  # read back from the journal, not measured again
    assert resumed["chosen"]["candidate"] == whole["chosen"]["candidate"]
    with pytest.raises(ConfigError, match="other settings"):
        optimize(ddpm, small(levers=["solver"], seed=3), out=tmp_path / "killed", resume=True)


def test_a_lever_registered_elsewhere_is_searched_without_touching_the_optimizer(ddpm):
    register_lever(Lever("toy-steps", "sampler", {"steps": (3,)}, lambda b, k: b.sampling.update(steps=k["steps"]),
                         lambda k: f"toy {k['steps']}"))  # fmt: skip
    try:
        config = small(levers=["toy-steps"])
        found, _ = candidates(config, ddpm)
        assert found == [{"toy-steps": {"steps": 3}}]
        result = Search(Arena(ddpm, config), config, Journal(None), log=lambda line: None).run()
        assert any(r["key"] == key_of({"toy-steps": {"steps": 3}}) for r in result["rows"])
    finally:
        LEVERS.pop("toy-steps")


def test_a_student_is_trained_once_samples_with_its_own_sampler_and_excludes_the_solver(ddpm, tmp_path):
    knobs = {"distill.train_steps": [2], "distill.nfe": [2, 3], "solver.scheduler": ["unipc"], "solver.steps": [4],
             "solver.spacing": ["leading"]}  # fmt: skip
    config = small(levers=["distill", "solver"], knobs=knobs, data="digits", quality="fd-ratio=1000", confirm=1)
    found, refused = candidates(config, ddpm)
    assert all(not {"distill", "solver"} <= c.keys() for c in found)
    assert any("distill is never combined with solver" in reason for reason in refused)
    student = {"distill": {"method": "consistency", "loss": "pseudo-huber", "train_steps": 2, "nfe": 2}}
    assert sampled_with(student, config) == {"scheduler": "lcm", "steps": 2}
    assert model_key(student) == model_key({"distill": student["distill"] | {"nfe": 3}})
    config = config.model_copy(update={"levers": ["distill"]})
    result = optimize(ddpm, config, out=tmp_path / "run")
    assert len(list((tmp_path / "run" / "models").iterdir())) == 1  # one training for both evaluation counts
    chosen = result["chosen"]["candidate"]
    saved = slimfusion.load(tmp_path / "run" / "model")
    own = get_meta(saved)["sampler"]
    assert (own["scheduler"], own["steps"]) == ("lcm", chosen["distill"]["nfe"])
    again = slimfusion.sample(saved, slimfusion.SampleConfig(num=4, seed=1), progress=False)
    arena = Arena(ddpm, config)
    arena.builder.store = tmp_path / "run" / "models"
    assert torch.equal(again, arena.images(chosen, 1, 4)[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "1s", "--confirm-num", "4000"], "cannot evaluate one candidate"),  # not a fast machine's 1 s
        (["--levers", "solver,teleport"], "unknown lever 'teleport'"),
        (["--knobs", "solver.warp=2"], "unknown knob 'solver.warp'"),
        (["--quality", "ssim>=1.5"], "the original fails it against itself"),
        (["--quality", "accuracy>=0.9"], "needs a conditional model"),
        (["--batch", "0"], "--batch"),
        (["--class-labels", "3,7"], "unconditional"),
        (["--quality", "roughly"], "--quality 'roughly'"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    common = ["--base-steps", "4", "--batch", "8", "--screen-num", "8", "--confirm-num", "8", "--mid-num", "0"]
    result = run_cli("optimize", "builtin:digits-ddpm", "--out", str(out), *common, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_prompts_are_refused_on_an_unconditional_model_and_required_by_a_pipeline(ddpm, dit_folder):
    with pytest.raises(ConfigError, match="unconditional"):
        optimize(ddpm, small(prompts=["a handwritten seven"]))
    with pytest.raises(ConfigError, match="--class-labels"):
        optimize(str(dit_folder), small())


@pytest.mark.parametrize("kind", ["dit", "sd"])
def test_a_pipeline_is_searched_and_saved_as_a_pipeline_with_its_sampler(kind, dit_folder, sd_folder, tmp_path):
    folder, conditions = (dit_folder, {"class_labels": [3, 7]}) if kind == "dit" else (
        sd_folder, {"prompts": ["a handwritten seven", "the digit 3"]})  # fmt: skip
    knobs = {"solver.scheduler": ["unipc"], "solver.steps": [4], "solver.spacing": ["leading"]}
    config = small(levers=["solver", "cache"], knobs=knobs, quality="fd-ratio=100", **conditions)
    result = optimize(str(folder), config, out=tmp_path / "run")
    considered = {r["key"] for r in result["rows"]} | set(result["notes"])
    cached = {"solver": {"scheduler": "unipc", "steps": 4, "spacing": "leading"}, "cache": {"interval": 2, "branch": 0}}
    assert (key_of(cached) in considered) == (kind == "sd")  # DeepCache needs a UNet
    pipe = slimfusion.load_pipeline(str(tmp_path / "run" / "model"))
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    denoiser = pipe.transformer if kind == "dit" else pipe.unet
    assert slimfusion.models.meta.get_meta(denoiser)["sampler"]["scheduler"] == "unipc"


def test_a_recipe_can_end_with_optimize(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: builtin:digits-ddpm\nsteps:\n  - optimize: {levers: solver, knobs: 'solver.scheduler=unipc;"
        "solver.steps=4', base_steps: 10, batch: 16, screen_num: 16, mid_num: 0, confirm_num: 32, rounds: 2}\n"
    )
    final = slimfusion.run_recipe(recipe, tmp_path / "run", echo=lambda line: None)
    sampler = slimfusion.models.meta.get_meta(slimfusion.load(final))["sampler"]
    assert (sampler["scheduler"], sampler["steps"]) == ("unipc", 4)
    assert list((tmp_path / "run").rglob("frontier.md"))


DERIVED = ["optimize", "lowrank", "quantize", "skip-plan", "prune", "finetune", "distill-steps", "sparsify"]


@pytest.mark.parametrize("verb", [*DERIVED, "sample", "evaluate"])
def test_every_option_of_a_derived_verb_comes_from_its_registered_options(verb):
    from typer.main import get_command

    from slimfusion.cli.app import app
    from slimfusion.cli.derived import field_help
    from slimfusion.registry import STEPS
    from slimfusion.verbs.sampling import SampleOptions

    command = get_command(app).commands[verb]
    options = {p.name: p for p in command.params}
    options_class = STEPS[verb].options if verb in STEPS and verb != "sample" else SampleOptions
    fields = {k: f for k, f in options_class.model_fields.items() if k != "version"}
    assert set(fields) <= set(options)
    for name in fields:
        assert field_help(options_class, name) and options[name].help.startswith(field_help(options_class, name)), name
    where = {"model", "out", "overwrite", "resume", "into", "component", "as_json"}
    assert set(options) - set(fields) <= where  # where to read and write, nothing else


def test_a_screen_tie_far_from_zero_is_unlikely_to_hold_on_the_confirmations_samples():
    config = small(screen_num=256, confirm_num=2000)
    row = {"holds": True, "num": 256, "differences": {"fd": {"difference": 0.4, "interval": [-0.2, 1.0]}}}
    assert not likely_to_hold(row, config)  # at 2,000 samples the interval would be about +0.4 +- 0.21: worse
    near = row | {"differences": {"fd": {"difference": 0.05, "interval": [-0.55, 0.65]}}}
    assert likely_to_hold(near, config)
    better = row | {"differences": {"fd": {"difference": -0.5, "interval": [-1.1, 0.1]}}}
    assert likely_to_hold(better, config)  # a difference on the better side never counts against it
    assert not likely_to_hold(near | {"holds": False}, config)


def test_an_exact_lever_shares_the_verdict_of_its_setting_and_is_not_sampled_again(ddpm, monkeypatch):
    register_lever(Lever("toy-exact", "sampler", {"on": (True,)}, lambda b, k: None, lambda k: "toy exact",
                         exact=True))  # fmt: skip
    try:
        knobs = {"solver.scheduler": ["unipc"], "solver.steps": [4], "solver.spacing": ["leading"]}
        config = small(levers=["solver", "toy-exact"], knobs=knobs)
        judged = []
        judge = Arena.judge
        monkeypatch.setattr(Arena, "judge", lambda self, c, s, n: judged.append(key_of(c)) or judge(self, c, s, n))
        result = Search(Arena(ddpm, config), config, Journal(None), log=lambda line: None).run()
        both = {"solver": {"scheduler": "unipc", "steps": 4, "spacing": "leading"}, "toy-exact": {"on": True}}
        assert key_of(both) not in judged  # neither screened nor confirmed by sampling: its images are unipc 4's
        alone = key_of({"solver": both["solver"]})
        shared = [r for r in result["rows"] if r["key"] == key_of(both) and r["rung"] in ("screen", "confirm")]
        assert shared and all(r["inherited"] == alone for r in shared)
        assert all(r["differences"] == next(o for o in result["rows"] if o["key"] == alone and o["rung"] == r["rung"])[
            "differences"] for r in shared)  # fmt: skip
    finally:
        LEVERS.pop("toy-exact")


def test_a_failed_confirmation_is_followed_by_its_next_setting(ddpm, monkeypatch):
    knobs = {"solver.scheduler": ["unipc"], "solver.steps": [4, 5], "solver.spacing": ["leading"]}
    config = small(levers=["solver"], knobs=knobs, confirm=1, screen_num=64, confirm_num=64)
    judge = Arena.judge

    def fails_fresh_at_4(self, candidate, seed, num):  # unipc 4 ties on the screen, so 5 is skipped there
        row = judge(self, candidate, seed, num)
        if seed == config.seed + 1 and candidate["solver"]["steps"] == 4:
            row = row | {"holds": False, "why": "toy: worse on fresh noise"}
        return row

    monkeypatch.setattr(Arena, "judge", fails_fresh_at_4)
    result = Search(Arena(ddpm, config), config, Journal(None), log=lambda line: None).run()
    steps = [c["candidate"]["solver"]["steps"] for c in result["confirmed"]]
    assert steps[0] == 4 and not result["confirmed"][0]["holds"]
    assert steps == [4, 5]  # one confirmation slot, yet the next setting was screened and confirmed after it
    assert result["confirmed"][1]["holds"] and result["chosen"]["candidate"]["solver"]["steps"] == 5
