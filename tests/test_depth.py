"""Depth pruning: bypass equals removal, greedy meets its target, plain diffusers reloads, composes with width."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_CONFIGS, tiny_model

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.metrics.cost import count_macs
from slimfusion.models.families import FAMILIES, example_inputs
from slimfusion.models.io import build
from slimfusion.models.meta import history
from slimfusion.prune import DepthConfig, StructuralConfig, prune
from slimfusion.prune.depth import depth_units, gated, remove_units

# two layers per block, so a stage can lose one (tiny configs of the real classes)
UNET = TINY_CONFIGS["UNet2DModel"] | {"layers_per_block": 2, "block_out_channels": [8, 8]}
UNET_COND = TINY_CONFIGS["UNet2DConditionModel"] | {"layers_per_block": 2, "block_out_channels": [8, 8]}
DIT = TINY_CONFIGS["DiTTransformer2DModel"] | {"num_layers": 4}


def _model(name: str, config: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(FAMILIES[name], config).eval()


CASES = [("UNet2DModel", UNET), ("UNet2DConditionModel", UNET_COND), ("DiTTransformer2DModel", DIT)]


def _denoise(model, inputs):
    with torch.no_grad():
        return model(**inputs).sample


@pytest.mark.parametrize("name, config", CASES)
def test_bypassing_a_candidate_keeps_outputs_shaped_finite_and_equal_to_removing_it(name, config):
    model = _model(name, config)
    inputs = example_inputs(model, 2)
    full = _denoise(model, inputs)
    units = [u for u in depth_units(model) if u.valid]
    assert units
    for unit in units:
        with gated(model, {unit.name: torch.tensor(0.0)}):
            bypassed = _denoise(model, inputs)
        assert bypassed.shape == full.shape and torch.isfinite(bypassed).all()
        assert not torch.equal(bypassed, full), unit.name
        removed = copy.deepcopy(model)
        remove_units(removed, [unit.name])
        assert torch.allclose(_denoise(removed, inputs), bypassed, atol=1e-6), unit.name
    assert torch.equal(_denoise(model, inputs), full), "the hooks come off"


@pytest.mark.parametrize("method", ["greedy", "learned"])
def test_depth_pruning_meets_the_macs_target_within_two_points(method):
    model = _model("DiTTransformer2DModel", DIT)
    before = count_macs(model)
    data = torch.randn(16, 4, 8, 8)
    prune(model, DepthConfig(method=method, target_macs=0.55, learn_steps=5, batch_size=8), data=data, progress=False)
    kept = count_macs(model) / before
    assert abs(kept - 0.55) <= 0.02 + 1e-9, kept
    effect = history(model)[-1]["effect"]
    assert effect["target_met"] and effect["removed"] and len(model.transformer_blocks) < 4


@pytest.mark.parametrize("name, config", [CASES[1], CASES[2]])
def test_depth_pruned_models_reload_in_plain_diffusers_with_identical_outputs(name, config, tmp_path):
    model = _model(name, config)
    units = [u.name for u in depth_units(model) if u.valid]
    prune(model, DepthConfig(remove=units[:2]), progress=False)
    assert history(model)[-1]["effect"]["diffusers_config"]
    folder = slimfusion.save(model, tmp_path / "m")
    plain = FAMILIES[name].load_class().from_pretrained(str(folder)).eval()
    ours = slimfusion.load(folder)
    inputs = example_inputs(model, 2)
    assert torch.equal(_denoise(plain, inputs), _denoise(ours, inputs))
    assert torch.equal(_denoise(ours, inputs), _denoise(model, inputs))


def test_a_depth_the_config_cannot_say_reloads_through_slimfusion(tmp_path):
    model = _model("UNet2DModel", UNET)  # UNet2DModel has one layers_per_block for every block
    pair = next(u.name for u in depth_units(model) if u.valid and u.stage)
    prune(model, DepthConfig(remove=[pair]), progress=False)
    assert not history(model)[-1]["effect"]["diffusers_config"]
    again = slimfusion.load(slimfusion.save(model, tmp_path / "m"))
    inputs = example_inputs(model, 2)
    assert torch.equal(_denoise(again, inputs), _denoise(model, inputs))


def test_depth_then_width_and_width_then_depth_reload(tmp_path):
    inputs = None
    for order in (("depth", "width"), ("width", "depth")):
        model = _model("UNet2DConditionModel", UNET_COND)
        inputs = inputs or example_inputs(model, 2)
        for step in order:
            if step == "depth":
                prune(model, DepthConfig(remove=["mid_block"]), progress=False)
            else:
                prune(model, StructuralConfig(method="magnitude", ratio=0.5), progress=False)
        assert [h["step"] for h in history(model)] == ["prune-depth" if s == "depth" else "prune" for s in order]
        again = slimfusion.load(slimfusion.save(model, tmp_path / "-".join(order)))
        assert again.mid_block is None
        assert torch.equal(_denoise(again, inputs), _denoise(model, inputs))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"target_macs": 1.0}, "less than 1"),
        ({"target_macs": 0.0}, "greater than 0"),
        ({}, "--target-macs R or --remove"),
    ],
)
def test_bad_depth_configs_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        DepthConfig(**values)


def test_removing_unknown_units_or_a_whole_stage_is_refused_unchanged():
    model = _model("UNet2DConditionModel", UNET_COND)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="no depth unit 'down_blocks.7.0"):
        prune(model, DepthConfig(remove=["down_blocks.7.0+up_blocks.0.0"]), progress=False)
    stage = [u.name for u in depth_units(model) if u.stage == "down_blocks.1"]
    with pytest.raises(ConfigError, match="every layer of down_blocks.1"):
        prune(model, DepthConfig(remove=stage), progress=False)
    assert model.state_dict().keys() == state.keys() and not history(model)


def test_prune_depth_cli_one_line_errors_write_nothing(tmp_path):
    from test_cli import run_cli

    folder = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "m")
    for args, message in [
        (["--target-macs", "1.5", "--data", "digits"], "--target-macs"),
        (["--remove", "nothing.here"], "no depth unit"),
        (["--target-macs", "0.5"], "calibration data"),
    ]:
        out = tmp_path / "never"
        result = run_cli("prune", str(folder), "--method", "depth", *args, "--out", str(out))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert not out.exists()
