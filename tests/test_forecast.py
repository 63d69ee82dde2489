"""Forecasting caches: TaylorSeer's extrapolation of reused block outputs on DeepCache's schedule."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from slimfusion.diffusion import calibration_noise, make_scheduler, predictor, run_chain
from slimfusion.errors import ConfigError
from slimfusion.sample import SampleConfig, sample
from slimfusion.skip import SkipConfig, SkipState, apply_plan, skip_plan
from slimfusion.skip.adaptive import measured_kept
from slimfusion.skip.hooks import forecast

STEPS = 8


@pytest.fixture
def unet():
    return tiny_model("UNet2DModel")


def _images(model, plan) -> torch.Tensor:
    with apply_plan(model, plan):
        return sample(model, SampleConfig(num=2, steps=STEPS, batch_size=2, seed=3), progress=False)


def test_order_zero_gives_deepcaches_samples_exactly(unet):
    deepcache = skip_plan(unet, SkipConfig(method="deepcache", steps=STEPS, interval=2))
    reuse = skip_plan(unet, SkipConfig(method="taylorseer", steps=STEPS, interval=2, order=0))
    assert reuse.reuse == deepcache.reuse and reuse.macs_ratio == deepcache.macs_ratio
    assert torch.equal(_images(unet, reuse), _images(unet, deepcache))


def test_forecasting_changes_the_samples_but_not_the_kept_macs(unet):
    deepcache = skip_plan(unet, SkipConfig(method="deepcache", steps=STEPS, interval=2))
    linear = skip_plan(unet, SkipConfig(method="taylorseer", steps=STEPS, interval=2, order=1))
    assert linear.macs_ratio == deepcache.macs_ratio and linear.settings["order"] == 1
    assert not torch.equal(_images(unet, linear), _images(unet, deepcache))


@pytest.mark.parametrize("degree, order", [(0, 0), (1, 1), (2, 2), (1, 2), (3, 3)])
def test_a_polynomial_trajectory_is_predicted_exactly_at_an_order_at_least_its_degree(degree, order):
    coefficients = [torch.randn(2, 3, dtype=torch.float64) for _ in range(degree + 1)]

    def feature(step: int) -> tuple:
        value = sum(c * step**i for i, c in enumerate(coefficients))
        return value, (2 * value, "a non-tensor leaf")

    state = SkipState(steps=20, decide=lambda step, name: step % 3 == 0, order=order)
    for step in range(13):
        state.step = step
        if state.kept("block") is None:
            state.keep("block", feature(step))
    state.step = 14  # after full steps 3, 6, 9, 12: order + 1 of them are kept
    predicted = state.kept("block")
    expected = feature(14)
    assert torch.allclose(predicted[0], expected[0]) and torch.allclose(predicted[1][0], expected[1][0])
    assert predicted[1][1] == "a non-tensor leaf"


def test_a_lower_order_than_the_degree_is_not_exact():
    history = [(s, torch.tensor([float(s**2)])) for s in (0, 3, 6)]
    assert not torch.allclose(forecast(history[-2:], 7), torch.tensor([49.0]))
    assert torch.allclose(forecast(history, 7), torch.tensor([49.0]))


def test_a_taylorseer_plan_is_refused_on_a_model_it_was_not_made_for(unet):
    plan = skip_plan(unet, SkipConfig(method="taylorseer", steps=STEPS, interval=2))
    other = tiny_model("UNet2DModel", seed=1)
    other.conv_in = torch.nn.Conv2d(other.conv_in.in_channels, other.conv_in.out_channels * 2, 3, padding=1)
    with pytest.raises(ConfigError), apply_plan(other, plan):
        pass


@pytest.mark.parametrize("target", [0.6])
def test_the_adaptive_threshold_meets_its_kept_macs_target_on_calibration_noises(unet, target):
    plan = skip_plan(unet, SkipConfig(method="adaptive", steps=50, target=target, calib=4, batch_size=1))
    assert abs(plan.macs_ratio - target) <= 0.02 and plan.settings["threshold"] > 0
    # the calibration noises again, through apply_plan: the decisions it records keep what the plan states
    with torch.no_grad(), apply_plan(unet, plan) as state:
        for noise in calibration_noise(unet, 4, 0).split(1):
            run_chain(make_scheduler(unet, "ddim", 50), noise, predictor(unet))
    decisions = state.gate.decisions
    assert len(decisions) == 200 and decisions[0] and not all(decisions)
    assert abs(measured_kept(unet, plan, state.gate) - plan.macs_ratio) < 1e-6


def test_an_adaptive_gate_that_never_closes_samples_the_full_model_and_one_that_never_opens_reuses(unet):
    plan = skip_plan(unet, SkipConfig(method="adaptive", steps=STEPS, target=0.5, calib=2))
    full = sample(unet, SampleConfig(num=2, steps=STEPS, batch_size=2, seed=3), progress=False)
    never = plan.model_copy(update={"settings": plan.settings | {"threshold": 0.0}})
    assert torch.equal(_images(unet, never), full)
    always = plan.model_copy(update={"settings": plan.settings | {"threshold": 1e9}})
    with apply_plan(unet, always) as state:
        sample(unet, SampleConfig(num=2, steps=STEPS, batch_size=2, seed=3), progress=False)
    assert state.gate.decisions == [True] + [False] * (STEPS - 1)


def test_an_adaptive_plan_stating_fewer_macs_than_its_floor_is_refused(unet):
    plan = skip_plan(unet, SkipConfig(method="adaptive", steps=STEPS, target=0.5, calib=2))
    edited = plan.model_copy(update={"macs_ratio": 0.01})
    with pytest.raises(ConfigError, match="adaptive skip plan"), apply_plan(unet, edited):
        pass
