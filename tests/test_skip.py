"""Timestep-wise block skipping: plans applied through hooks, DiP-GO's post-processing, DeepCache's equivalence."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model, tiny_sd_pipeline

from slimfusion.errors import ConfigError, CorruptFileError
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, SkipPlan, apply_plan, load_plan, save_plan, skip_plan
from slimfusion.skip.graph import cascade, consumers, skip_units, unit_macs
from slimfusion.skip.plan import measured_macs_ratio, model_fingerprint

STEPS = 6


def _plan(model, reuse: list[list[str]], steps: int = STEPS, fine: bool = False) -> SkipPlan:
    plan = SkipPlan(
        model_class=type(model).__name__,
        model_hash=model_fingerprint(model),
        scheduler="DDIMScheduler",  # the legacy class name: still read as "ddim"
        steps=steps,
        units=skip_units(model, fine),
        reuse=reuse,
        macs_ratio=1.0,
        method="none",
    )
    return plan.model_copy(update={"macs_ratio": measured_macs_ratio(plan, model)})


@pytest.fixture
def unet():
    return tiny_model("UNet2DModel")


def test_plan_that_reuses_nothing_reproduces_samples_bit_for_bit(unet):
    config = SampleConfig(num=3, steps=STEPS, batch_size=2)
    plain = sample(unet, config, progress=False)
    with apply_plan(unet, _plan(unet, [[] for _ in range(STEPS)])):
        planned = sample(unet, config, progress=False)
    assert torch.equal(plain, planned)


def test_reused_block_is_not_called_and_returns_the_previous_steps_output(unet):
    reuse = [[] for _ in range(STEPS)]
    reuse[2] = ["up_blocks.0"]
    plan = _plan(unet, reuse)  # (measuring its MACs runs a forward: before the hook below)
    outputs = []
    handle = unet.up_blocks[0].register_forward_hook(lambda _m, _i, out: outputs.append(out))
    with apply_plan(unet, plan) as state:
        sample(unet, SampleConfig(num=2, steps=STEPS), progress=False)
    handle.remove()
    assert state.calls["up_blocks.0"] == STEPS - 1
    assert "up_blocks.1" not in state.calls  # never reused: no hook, it runs as it is
    assert outputs[2] is outputs[1]  # step 2 got step 1's output object back
    assert not torch.equal(outputs[3], outputs[2])


def test_only_the_outermost_reused_blocks_are_hooked(unet):
    from slimfusion.skip.hooks import hooked_units

    reuse = [[] for _ in range(STEPS)]
    reuse[1] = ["up_blocks.0", "up_blocks.0.resnets.0"]  # the inner block goes with the outer one: no hook needed
    reuse[2] = ["up_blocks.1.resnets.0"]  # reused alone at a step: hooked
    plan = _plan(unet, reuse, fine=True)
    assert hooked_units(plan) == ["up_blocks.0", "up_blocks.1.resnets.0"]
    with apply_plan(unet, plan) as state:
        sample(unet, SampleConfig(num=2, steps=STEPS), progress=False)
    assert state.calls == {"up_blocks.0": STEPS - 1, "up_blocks.1.resnets.0": STEPS - 1}


def test_hooks_come_off_cleanly(unet):
    config = SampleConfig(num=2, steps=STEPS)
    before = sample(unet, config, progress=False)
    reuse = [[]] + [["mid_block", "up_blocks.0"]] * (STEPS - 1)
    with apply_plan(unet, _plan(unet, reuse)):
        skipped = sample(unet, config, progress=False)
    assert not torch.equal(before, skipped)
    assert torch.equal(before, sample(unet, config, progress=False))
    registries = [m._diffusers_hook for m in unet.modules() if hasattr(m, "_diffusers_hook")]
    assert registries and all(not r.hooks for r in registries)


def test_a_compiled_model_under_a_plan_compiles_once_not_at_every_step(unet):
    """torch.compile through the hooks: Dynamo must not guard on the step counter (it recompiled the model at every
    step until its limit, then ran it eagerly); a 12-step run compiles no more graphs than a 4-step one, and the
    samples equal the eager run's."""
    from torch._dynamo.testing import CompileCounter

    frames = {}
    for steps in (4, 12):
        plan = _plan(unet, [[] if s % 2 == 0 else ["mid_block", "up_blocks.0"] for s in range(steps)], steps)
        config = SampleConfig(num=2, steps=steps, batch_size=2)
        with apply_plan(unet, plan):
            eager = sample(unet, config, progress=False)
        torch._dynamo.reset()
        counter = CompileCounter()
        unet.compile(backend=counter)
        try:
            with apply_plan(unet, plan) as state:
                compiled = sample(unet, config, progress=False)
        finally:
            unet._compiled_call_impl = None
            torch._dynamo.reset()
        frames[steps] = counter.frame_count
        assert state.calls["mid_block"] == steps // 2  # the plan still decides under compile
        assert torch.allclose(compiled, eager, atol=1e-5)
    assert frames[12] == frames[4] > 0


def test_a_compiled_model_under_a_plan_hooking_more_blocks_than_the_recompile_limit_stays_compiled(unet):
    """Every hooked block resumes in the same hook code after its graph break and Dynamo's recompile limit (8) counts
    per code object: with more hooked blocks than that, the rest ran eagerly. The plan lifts the limit while applied."""
    from slimfusion.skip.hooks import hooked_units

    units = skip_units(unet, fine=True)
    leaves = [u for u in units if not any(o.startswith(f"{u}.") for o in units)]
    plan = _plan(unet, [[] if s % 2 == 0 else leaves for s in range(4)], 4, fine=True)
    default = torch._dynamo.config.recompile_limit
    assert len(hooked_units(plan)) > default
    torch._dynamo.reset()
    unet.compile(backend="eager")
    try:
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), apply_plan(unet, plan) as state:
            sample(unet, SampleConfig(num=2, steps=4, batch_size=2), progress=False)
    finally:
        unet._compiled_call_impl = None
        torch._dynamo.reset()
    assert all(calls == 2 for calls in state.calls.values())  # each ran at steps 0 and 2 only
    assert torch._dynamo.config.recompile_limit == default  # restored when the plan comes off


def test_a_plan_cannot_be_applied_twice(unet):
    plan = _plan(unet, [[] for _ in range(STEPS)])
    with apply_plan(unet, plan), pytest.raises(ConfigError, match="already applied"):
        with apply_plan(unet, plan):
            pass


def test_consumers_are_read_from_the_graph_and_cascade(unet):
    graph = consumers(unet, skip_units(unet))
    assert graph["mid_block"] == {"up_blocks.0"}
    assert graph["up_blocks.1"] is None  # feeds the output convolution
    assert "up_blocks.1" in graph["down_blocks.0"]  # skip connection
    assert cascade({"up_blocks.0"}, graph) >= {"up_blocks.0", "mid_block"}
    assert cascade({"up_blocks.0"}, graph) == {"up_blocks.0", "mid_block", "down_blocks.1"}
    assert cascade({"up_blocks.1"}, graph) == set(graph)  # the last block reused: nothing else is read


def test_unit_macs_add_up_to_nearly_the_whole_model(unet):
    macs, total = unit_macs(unet, skip_units(unet))
    assert 0.8 * total < sum(macs.values()) <= total


@pytest.mark.parametrize("target", [0.5, 0.3])
def test_dipgo_post_processing_meets_the_target(unet, target):
    config = SkipConfig(steps=40, target=target, iterations=2, calib=2, batch_size=2)
    plan = skip_plan(unet, config, progress=False)
    assert abs(plan.macs_ratio - target) <= 0.0125
    assert plan.reuse[0] == [] and any(plan.reuse[1:])
    assert len(plan.settings["log"]) >= 1


def test_dipgo_learns_to_reuse_towards_the_target(unet):
    """The sparsity term moves the gates: after training the kept share (before bisection) has fallen."""
    config = SkipConfig(steps=8, target=0.3, iterations=30, lr=0.5, calib=2, batch_size=2, checkpoint=False)
    plan = skip_plan(unet, config, progress=False)
    log = plan.settings["log"]
    assert log[0]["kept"] == 1.0 and log[-1]["kept"] < 0.9


def test_dipgo_beats_random_plans_of_the_same_macs_on_its_own_loss():
    """What DiP-GO learns matters: the same per-step reuse lists put at other steps (so exactly the same MACs) keep
    the samples further from the full model's than DiP-GO's own order, for the typical (median) such plan."""
    import random
    import statistics

    from slimfusion.metrics.consistency import ssim
    from slimfusion.models.io import load

    model = load("builtin:digits-ddpm")
    config = SkipConfig(steps=8, target=0.5, iterations=30, calib=4, batch_size=4, checkpoint=False)
    plan = skip_plan(model, config, progress=False)
    settings = SampleConfig(num=32, steps=8, seed=123, batch_size=32)
    full = sample(model, settings, progress=False)

    def closeness(candidate):
        with apply_plan(model, candidate):
            return ssim(sample(model, settings, progress=False), full)

    rng = random.Random(0)
    shuffled = []
    for _ in range(8):
        order = rng.sample(range(1, 8), 7)
        other = plan.model_copy(update={"reuse": [[]] + [plan.reuse[i] for i in order], "method": "random"})
        assert measured_macs_ratio(other, model) == pytest.approx(plan.macs_ratio, abs=1e-5)
        shuffled.append(closeness(other))
    assert closeness(plan) > statistics.median(shuffled) + 0.02


def test_checkpointed_chain_gives_the_same_gradients(unet):
    from slimfusion.sample import make_scheduler
    from slimfusion.skip.dipgo import gated_chain, hard_gates
    from slimfusion.skip.hooks import SkipState, gate_mix, hooked

    names = skip_units(unet)
    scheduler = make_scheduler(unet, "ddim", 4)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    grads = []
    for use in (True, False):
        keep = torch.full((4, len(names)), 0.7, requires_grad=True)
        gates = hard_gates(keep)
        state = SkipState(4, lambda s, n: True)
        state.mix = gate_mix(gates, {n: i for i, n in enumerate(names)}, state)
        with hooked(unet, names, state, count_steps=False):
            out = gated_chain(scheduler, noise, lambda x, t, i: unet(x, t).sample, state, use)
            out.square().mean().backward()  # recomputation needs the hooks in place
        grads.append(keep.grad)
    assert grads[0] is not None and grads[0].abs().sum() > 0  # a gradient reached the gates
    torch.testing.assert_close(grads[0], grads[1])


def test_plans_for_other_models_steps_or_versions_are_refused(unet, tmp_path):
    plan = _plan(unet, [[] for _ in range(STEPS)])
    other = tiny_model("UNet2DModel", seed=1)
    with apply_plan(other, plan):  # same architecture, other weights: the plan is about shapes
        pass
    from slimfusion.skip.plan import check_plan

    pruned = tiny_model("UNet2DModel")
    pruned.register_to_config(block_out_channels=[8, 8])
    with pytest.raises(ConfigError, match="another model"):
        check_plan(plan, pruned)
    with pytest.raises(ConfigError, match="6 sampling steps, not 10"):
        check_plan(plan, unet, "DDIMScheduler", 10)
    with pytest.raises(ConfigError, match="made for the ddim scheduler, not ddpm"):
        check_plan(plan, unet, "DDPMScheduler", 6)
    with pytest.raises(ConfigError, match="UNet2DModel, not this"):
        check_plan(plan, tiny_model("DiTTransformer2DModel"))
    path = save_plan(plan, tmp_path / "plan.json")
    assert load_plan(path) == plan
    raw = json.loads(path.read_text())
    for change, message in [
        ({"version": 2}, "newer"),
        ({"format": "other"}, "not a slimfusion skip plan"),
        ({"reuse": raw["reuse"][:-1]}, "lists 5 steps"),
        ({"reuse": [["up_blocks.0"]] + raw["reuse"][1:]}, "step 0"),
        ({"reuse": [[]] + [["nowhere"]] * 5}, "unknown block"),
        ({"steps": "six"}, "invalid skip plan"),
    ]:
        (tmp_path / "bad.json").write_text(json.dumps(raw | change))
        with pytest.raises(CorruptFileError, match=message):
            load_plan(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text(path.read_text()[:40])
    with pytest.raises(CorruptFileError, match="not a JSON"):
        load_plan(tmp_path / "cut.json")


def test_running_more_steps_than_the_plan_is_refused(unet):
    with apply_plan(unet, _plan(unet, [[] for _ in range(STEPS)])):
        with pytest.raises(ConfigError, match="more than the skip plan's 6 steps"):
            sample(unet, SampleConfig(num=1, steps=STEPS + 2), progress=False)


def test_dit_and_conditional_unet_take_plans_from_the_family_table():
    dit = tiny_model("DiTTransformer2DModel")
    assert skip_units(dit) == ["transformer_blocks.0", "transformer_blocks.1"]
    labels = torch.tensor([1, 2])
    plan = skip_plan(
        dit,
        SkipConfig(steps=20, target=0.6, iterations=1, calib=2, batch_size=2),
        labels,
        torch.tensor([9]),
        2.0,
        progress=False,
    )
    assert abs(plan.macs_ratio - 0.6) <= 0.0125
    cond = tiny_model("UNet2DConditionModel")
    assert "down_blocks.0" in skip_units(cond) and "up_blocks.1.attentions.0" in skip_units(cond, fine=True)
    with pytest.raises(ConfigError, match="conditional"):
        skip_plan(cond, SkipConfig(steps=4, iterations=1, calib=1, batch_size=1), progress=False)
    with pytest.raises(ConfigError, match="needs a UNet"):
        skip_plan(dit, SkipConfig(method="deepcache", steps=4))


def test_deepcache_uniform_and_non_uniform_schedules():
    from slimfusion.skip.deepcache import full_steps

    assert full_steps(10, 3) == [0, 3, 6, 9]
    picks = full_steps(50, 5, uniform=False, center=15)
    assert len(picks) == 10 and picks[0] == 0 and picks == sorted(set(picks))
    gaps = [b - a for a, b in zip(picks, picks[1:], strict=False)]
    # densest around the center: the smallest gap touches step 15, and gaps grow with the distance from it
    smallest = gaps.index(min(gaps))
    assert 15 in (picks[smallest], picks[smallest + 1])
    middle = [(a + b) / 2 for a, b in zip(picks, picks[1:], strict=False)]
    farthest = max(range(len(gaps)), key=lambda i: abs(middle[i] - 15))
    assert gaps[farthest] > 2 * min(gaps)
    assert full_steps(50, 5, uniform=False, center=40) != picks  # the center moves the dense part


@pytest.mark.parametrize(("interval", "branch"), [(3, 0), (5, 1)])
def test_deepcache_plan_states_the_macs_share_that_runs(unet, interval, branch):
    """DeepCache's fine units nest inside blocks: the plan's share must still be what the meter sees run."""
    from slimfusion.skip.peers import MacsMeter

    plan = skip_plan(unet, SkipConfig(method="deepcache", steps=10, interval=interval, branch=branch))
    meter = MacsMeter(unet)
    with apply_plan(unet, plan), meter:
        sample(unet, SampleConfig(num=1, steps=10), progress=False)
    assert plan.macs_ratio < 0.9 and meter.ratio() == pytest.approx(plan.macs_ratio, abs=1e-4)


@pytest.mark.parametrize(("interval", "branch"), [(3, 0), (2, 1), (4, 3)])
def test_deepcache_plan_matches_the_reference_package(interval, branch):
    """A slimfusion DeepCache plan gives the same images as DeepCache's own helper on a Stable Diffusion pipeline."""
    import DeepCache as deepcache  # test dependency, installed by `make install` (no silent skip)

    pipe = tiny_sd_pipeline()
    steps = 7
    kwargs = dict(num_inference_steps=steps, guidance_scale=3.0, output_type="latent", height=64, width=64)

    def run():
        return pipe(["the digit 7", "a handwritten one"], generator=torch.Generator().manual_seed(3), **kwargs)[0]

    full = run()
    helper = deepcache.DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    reference = run()
    helper.disable()
    plan = skip_plan(pipe.unet, SkipConfig(method="deepcache", steps=steps, interval=interval, branch=branch))
    with apply_plan(pipe.unet, plan):
        ours = run()
    assert not torch.allclose(reference, full)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert plan.macs_ratio < 1


def test_cli_skip_plan_then_sample_with_it_and_refusals(tmp_path):
    import numpy as np
    from test_cli import run_cli

    import slimfusion

    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "unet")
    plan = tmp_path / "dc.json"
    carrying = tmp_path / "with-plan"
    made = run_cli(
        "skip-plan", str(model), "--method", "deepcache", "--steps", "6", "--interval", "3", "--out", str(plan),
        "--into", str(carrying),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert plan.exists() and plan.with_suffix(".png").exists() and "MACs kept" in made.stderr
    common = ("--num", "2", "--steps", "6")
    runs = {
        name: run_cli("sample", str(source), *common, *extra, "--out", str(tmp_path / name))
        for name, source, extra in (
            ("full", model, ()),
            ("cached", model, ("--plan", str(plan))),
            ("stored", carrying, ()),  # a plan saved with the model applies by default
            ("stored-off", carrying, ("--no-plan",)),
        )
    }
    assert all(r.returncode == 0 for r in runs.values()), [r.stderr for r in runs.values()]
    images = {n: np.load(tmp_path / n / "samples.npz")["images"] for n in runs}
    assert not np.array_equal(images["full"], images["cached"])
    assert np.array_equal(images["stored"], images["cached"]) and np.array_equal(images["stored-off"], images["full"])
    shown = run_cli("info", str(carrying))
    assert "skip plan" in shown.stdout and "deepcache, 6 ddim steps" in shown.stdout, shown.stdout
    for extra, message in [
        (("--steps", "8", "--plan", str(plan)), "6 sampling steps, not 8"),
        (("--steps", "6", "--plan", str(tmp_path / "missing.json")), "no such skip plan"),
    ]:
        refused = run_cli("sample", str(model), "--num", "1", *extra, "--out", str(tmp_path / "x"))
        assert refused.returncode == 2 and refused.stderr.strip().startswith("error:"), refused.stderr
        assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()
    again = run_cli("skip-plan", str(model), "--method", "deepcache", "--steps", "6", "--out", str(plan))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_plan_choice_of_sample_and_evaluate(unet, tmp_path):
    from slimfusion.models.meta import get_meta
    from slimfusion.skip.use import chosen_plan

    path = save_plan(_plan(unet, [[] for _ in range(STEPS)]), tmp_path / "plan.json")
    assert chosen_plan(unet, path, False, "ddim", STEPS).steps == STEPS
    with pytest.raises(ConfigError, match="made for the ddim scheduler, not ddpm"):
        chosen_plan(unet, path, False, "ddpm", STEPS)
    with pytest.raises(ConfigError, match="not dpm[+][+]2m"):
        chosen_plan(unet, path, False, "dpm++2m", STEPS)
    with pytest.raises(ConfigError, match="exclude each other"):
        chosen_plan(unet, path, True, "ddim", STEPS)
    assert chosen_plan(unet, None, False, "ddim", STEPS) is None
    get_meta(unet)["skip_plan"] = json.loads(path.read_text())  # a plan saved with the model is the default
    assert chosen_plan(unet, None, False, "ddim", STEPS) is not None
    assert chosen_plan(unet, None, True, "ddim", STEPS) is None
    with pytest.raises(ConfigError, match="--no-plan samples without it"):
        chosen_plan(unet, None, False, "ddim", STEPS + 1)


def test_evaluate_with_a_plan_counts_its_macs(unet, tmp_path):
    import slimfusion
    from slimfusion.evaluate import EvaluateConfig, evaluate

    folder = slimfusion.save(unet, tmp_path / "unet")
    reuse = [[]] + [["mid_block", "up_blocks.0"]] * (STEPS - 1)
    plan = _plan(unet, reuse)
    macs, total = unit_macs(unet, plan.units)  # the kept share by hand: 1 - saved / (total x steps)
    by_hand = 1 - (STEPS - 1) * (macs["mid_block"] + macs["up_blocks.0"]) / (total * STEPS)
    assert plan.macs_ratio == pytest.approx(by_hand) and by_hand < 0.95
    path = save_plan(plan, tmp_path / "plan.json")
    config = EvaluateConfig(num=4, steps=STEPS, plan=str(path), metrics=["ssim", "cost"])
    result = evaluate(str(folder), config, original=str(folder), progress=False)
    assert result["metrics"]["ssim"] < 1.0  # the target ran with the plan, the original without
    assert result["metrics"]["plan_macs_ratio"] == pytest.approx(by_hand)
    assert result["metrics"]["macs_per_step"] == pytest.approx(by_hand * result["metrics"]["macs"])
    edited = save_plan(plan.model_copy(update={"macs_ratio": 0.5}), tmp_path / "edited.json")
    with pytest.raises(ConfigError, match="states 0.500 of the MACs kept, but on this model it keeps"):
        evaluate(str(folder), config.model_copy(update={"plan": str(edited)}), progress=False)
    with pytest.raises(ConfigError, match="6 sampling steps, not 7"):
        evaluate(str(folder), EvaluateConfig(num=2, steps=7, plan=str(path)), progress=False)


def test_sample_and_evaluate_apply_the_plan_stored_in_the_model(unet, tmp_path):
    """The library, not the CLI, applies a plan saved with the model; no_plan switches it off."""
    import slimfusion
    from slimfusion.evaluate import EvaluateConfig, evaluate
    from slimfusion.skip import store_plan

    config = SampleConfig(num=3, steps=STEPS, batch_size=3)
    plain = sample(unet, config, progress=False)
    plan = _plan(unet, [[]] + [["mid_block", "up_blocks.0"]] * (STEPS - 1))
    with apply_plan(unet, plan):
        planned = sample(unet, config.model_copy(update={"no_plan": True}), progress=False)
    assert not torch.equal(plain, planned)
    store_plan(unet, plan)
    folder = slimfusion.save(unet, tmp_path / "with-plan")
    stored = slimfusion.load(folder)
    assert torch.equal(sample(stored, config, progress=False), planned)
    assert torch.equal(sample(stored, config.model_copy(update={"no_plan": True}), progress=False), plain)
    metrics = ["ssim", "cost"]
    applied = evaluate(str(folder), EvaluateConfig(num=3, steps=STEPS, metrics=metrics), original=str(folder))
    assert applied["metrics"]["plan_macs_ratio"] == pytest.approx(plan.macs_ratio)
    assert applied["sampling"]["plan"] == "stored in the model"
    off = evaluate(str(folder), EvaluateConfig(num=3, steps=STEPS, metrics=metrics, no_plan=True), original=str(folder))
    assert "plan_macs_ratio" not in off["metrics"] and off["metrics"]["ssim"] < 1.0  # original keeps its plan


def test_diffusers_caches_as_peers_measured_by_the_macs_meter():
    """The meter says 1.0 for the plain model and what a plan says for a plan; FirstBlockCache lowers it; the
    diffusers hooks come off cleanly (the same samples again)."""
    from conftest import tiny_dit_pipeline

    from slimfusion.skip.peers import MacsMeter, diffusers_cache

    pipe = tiny_dit_pipeline()
    model = pipe.transformer
    config = SampleConfig(num=2, steps=6, seed=0, class_labels=[0, 1], guidance=2.0)
    meter = MacsMeter(model)
    with meter:
        full = sample(pipe, config, progress=False)
    assert meter.ratio() == pytest.approx(1.0) and meter.forwards == 6
    reuse = [[]] + [["transformer_blocks.0"]] * 5
    plan = _plan(model, reuse, steps=6)
    meter = MacsMeter(model)
    with apply_plan(model, plan), meter:
        sample(pipe, config, progress=False)
    assert meter.ratio() == pytest.approx(plan.macs_ratio, abs=1e-6)  # the plan's stated share is what runs
    meter = MacsMeter(model)
    with diffusers_cache(model, "first-block-cache", threshold=10.0), meter:  # everything after step 0 cached
        cached = sample(pipe, config, progress=False)
    assert meter.ratio() < 0.9 and not torch.equal(cached, full)
    with diffusers_cache(model, "pyramid-attention-broadcast", skip_range=3, timestep_range=(-1, 1001)):
        sample(pipe, config, progress=False)
    assert torch.equal(sample(pipe, config, progress=False), full)
    with pytest.raises(ConfigError, match="unknown diffusers cache"), diffusers_cache(model, "teacache"):
        pass
