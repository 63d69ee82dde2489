"""The technique registry: one registration per verb, `apply` dispatching on a config, defaults in one place."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from pydantic import BaseModel, Field

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.lowrank import LowRankConfig
from slimfusion.pipelines import denoiser_of
from slimfusion.prune import StructuralConfig
from slimfusion.quantize import QuantizeConfig
from slimfusion.registry import STEPS, register, technique_configs
from slimfusion.sample import SampleConfig
from slimfusion.skip import SkipConfig


def test_every_recipe_verb_is_registered_and_every_technique_config_is_versioned():
    assert {"prune", "lowrank", "quantize", "sparsify", "skip-plan", "finetune", "evaluate", "report"} <= set(STEPS)
    for cls in [*technique_configs(), slimfusion.EvaluateConfig, SampleConfig]:
        assert cls.model_fields["version"].default == 1, cls.__name__


def test_apply_dispatches_on_the_config():
    unet = tiny_model("UNet2DModel")
    before = sum(p.numel() for p in unet.parameters())
    slimfusion.apply(unet, StructuralConfig(method="magnitude", ratio=0.25))
    assert sum(p.numel() for p in unet.parameters()) < before
    slimfusion.apply(unet, QuantizeConfig(scheme="bf16"))
    plan = slimfusion.apply(unet, SkipConfig(method="deepcache", steps=4, interval=2))
    assert slimfusion.models.meta.get_meta(unet)["skip_plan"]["macs_ratio"] == plan.macs_ratio
    with pytest.raises(ConfigError, match="no technique is registered for SampleConfig"):
        slimfusion.apply(unet, SampleConfig())


def test_command_defaults_come_from_the_config_classes():
    from typer.main import get_command

    from slimfusion.cli.app import app

    commands = get_command(app).commands
    prune = {p.name: p for p in commands["prune"].params}
    lowrank = {p.name: p for p in commands["lowrank"].params}
    assert prune["ratio"].default == StructuralConfig().ratio
    assert lowrank["layers"].default == LowRankConfig.model_fields["layers"].default


class ToyScaleConfig(BaseModel):
    """Settings of the toy technique: scale the first convolution's weights."""

    factor: float = Field(2.0, gt=0, description="multiply conv_in's weights by this")


def _toy_scale(model, config: ToyScaleConfig, **inputs):
    with torch.no_grad():
        denoiser_of(model).conv_in.weight.mul_(config.factor)
    return model


def _run_toy(subject, options: ToyScaleConfig, folder=None, progress=True, **context):
    """Scale conv_in (a toy technique registered by a test)."""
    _toy_scale(subject.denoiser, options)
    return subject


def test_a_technique_registered_in_one_module_reaches_the_cli_recipes_and_apply(tmp_path):
    from typer.testing import CliRunner

    from slimfusion.cli import app
    from slimfusion.cli.derived import derive_registered
    from slimfusion.recipe import run_recipe

    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "unet")
    weight = slimfusion.load(model).conv_in.weight.detach().clone()
    register("toy-scale", ToyScaleConfig, api={ToyScaleConfig: _toy_scale})(_run_toy)
    try:
        assert derive_registered() == ["toy-scale"]
        shown = CliRunner().invoke(app, ["toy-scale", "--help"], terminal_width=200)
        assert "--factor" in shown.output and "multiply conv_in's weights" in shown.output
        done = CliRunner().invoke(app, ["toy-scale", str(model), "--factor", "3", "--out", str(tmp_path / "cli")])
        assert done.exit_code == 0, done.output
        assert torch.allclose(slimfusion.load(tmp_path / "cli").conv_in.weight, 3 * weight)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model: {model}\nsteps:\n  - toy-scale: {{factor: 3}}\n")
        final = run_recipe(recipe, tmp_path / "run", echo=lambda *_: None)
        assert torch.allclose(slimfusion.load(final).conv_in.weight, 3 * weight)
        applied = slimfusion.apply(slimfusion.load(model), ToyScaleConfig(factor=3))
        assert torch.allclose(applied.conv_in.weight, 3 * weight)
    finally:
        STEPS.pop("toy-scale", None)
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "toy-scale"]
