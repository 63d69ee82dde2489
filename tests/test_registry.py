"""The technique registry: one registration per verb, `apply` dispatching on a config, defaults in one place."""

from __future__ import annotations

import pytest
from conftest import tiny_model

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.lowrank import LowRankConfig
from slimfusion.prune import StructuralConfig
from slimfusion.quantize import QuantizeConfig
from slimfusion.sample import SampleConfig
from slimfusion.skip import SkipConfig
from slimfusion.steps import STEPS, technique_configs


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
    from slimfusion.cli.compression import PRUNE
    from slimfusion.cli.deploy import LOWRANK

    assert (
        PRUNE["ratio"] == StructuralConfig().ratio and LOWRANK["layers"] == LowRankConfig.model_fields["layers"].default
    )
