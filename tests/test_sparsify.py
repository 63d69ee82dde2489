"""Unstructured / N:M sparsity: methods reach their targets, calibration matters, components stay apart, storage."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model, tiny_sd_pipeline
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.meta import history
from slimfusion.sparsify import SparsityConfig, keep_masks, sparsify, sparsity_of
from slimfusion.sparsify import masks as masks_mod
from slimfusion.sparsify.calibration import InputStats
from slimfusion.sparsify.sparsegpt import sparsegpt_prune

PROMPTS = ["a handwritten seven", "the digit 3", "a bold slanted digit"]
CALIB = {"calib_prompts": PROMPTS, "calib_samples": 2, "calib_steps": 2}


def _zeros(weight: torch.Tensor) -> float:
    return (weight == 0).float().mean().item()


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("fraction", [0.35, 0.6])
def test_each_method_reaches_the_sparsity_of_every_layer(method, fraction):
    pipe = tiny_sd_pipeline()
    sparsify(pipe, SparsityConfig(method=method, sparsity=fraction, component="all", **CALIB), progress=False)
    for component in (pipe.unet, pipe.text_encoder):
        effect = history(component)[-1]["effect"]
        assert effect["layers"], "layers were sparsified"
        for name, module in component.named_modules():
            if name in effect["layers"]:
                assert abs(_zeros(module.weight) - fraction) <= 0.005 + 1 / module.weight.numel(), name
        assert abs(effect["sparsity"] - fraction) < 0.005


def test_global_and_owl_reach_the_sparsity_overall_but_not_per_layer():
    pipe = tiny_sd_pipeline()
    sparsify(pipe, SparsityConfig(sparsity=0.5, scope="global"), progress=False)
    effect = history(pipe.unet)[-1]["effect"]
    assert abs(effect["sparsity"] - 0.5) < 0.005
    assert max(effect["layers"].values()) - min(effect["layers"].values()) > 0.05
    pipe = tiny_sd_pipeline()
    sparsify(pipe, SparsityConfig(method="wanda", sparsity=0.5, allocation="owl", **CALIB), progress=False)
    effect = history(pipe.unet)[-1]["effect"]
    assert abs(effect["sparsity"] - 0.5) < 0.005
    spread = max(effect["layers"].values()) - min(effect["layers"].values())
    assert 0.05 < spread <= 2 * 0.08 + 0.01  # OWL keeps layers within +-lambda of the target


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_nm_masks_have_exactly_n_zeros_in_every_group_of_m(method):
    pipe = tiny_sd_pipeline()
    sparsify(pipe, SparsityConfig(method=method, nm="2:4", component="text_encoder", **CALIB), progress=False)
    checked = 0
    for name in history(pipe.text_encoder)[-1]["effect"]["layers"]:
        weight = pipe.text_encoder.get_submodule(name).weight
        groups = masks_mod.as_matrix(weight).reshape(weight.shape[0], -1, 4)
        assert ((groups == 0).sum(2) == 2).all(), name
        checked += 1
    assert checked


def test_wanda_differs_from_magnitude_when_input_norms_differ():
    torch.manual_seed(0)
    layer = nn.Linear(8, 4)
    norms = torch.tensor([1e6, 1, 1, 1, 1, 1, 1, 1e-6])  # squared input column norms
    magnitude = masks_mod.row_mask(masks_mod.scores(layer, None), 0.5)
    wanda = masks_mod.row_mask(masks_mod.scores(layer, norms), 0.5)
    assert not torch.equal(magnitude, wanda)
    assert wanda[:, 0].all() and not wanda[:, 7].any()  # the loud input is kept, the silent one pruned


def test_sparsegpt_output_error_is_lower_than_magnitude_on_a_fixed_layer():
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    x = torch.randn(512, 64) * torch.linspace(0.1, 3, 64)  # inputs of unequal scale, as real activations
    stats = InputStats(layer, hessian=True)
    stats(layer, (x,))
    dense = layer(x)
    magnitude = nn.Linear(64, 32)
    magnitude.load_state_dict(layer.state_dict())
    with torch.no_grad():
        magnitude.weight.mul_(masks_mod.layer_mask(magnitude.weight.abs(), 0.5))
    sparsegpt_prune(layer, stats.mean_hessian(), 0.5)
    assert abs(_zeros(layer.weight) - 0.5) < 0.005
    err_sparsegpt = (layer(x) - dense).pow(2).mean()
    err_magnitude = (magnitude(x) - dense).pow(2).mean()
    assert err_sparsegpt < 0.8 * err_magnitude


def test_pruning_one_component_leaves_the_others_bit_for_bit_unchanged():
    pipe, before = tiny_sd_pipeline(), tiny_sd_pipeline()
    sparsify(pipe, SparsityConfig(method="wanda", sparsity=0.5, component="text_encoder", **CALIB), progress=False)
    for name in ("unet", "vae"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(before, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert not history(pipe.unet) and history(pipe.text_encoder)[-1]["step"] == "sparsify"


def test_per_component_sparsities_in_one_call():
    pipe = tiny_sd_pipeline()
    sparsify(pipe, SparsityConfig(sparsities={"text_encoder": 0.475, "unet": 0.35}), progress=False)
    assert abs(sparsity_of(pipe.text_encoder)["sparsity"] - 0.475) < 0.005
    assert abs(sparsity_of(pipe.unet)["sparsity"] - 0.35) < 0.005


def test_lone_unconditional_model_calibrates_on_its_own_sampling():
    model = tiny_model("UNet2DModel")
    sparsify(model, SparsityConfig(method="wanda", sparsity=0.5, calib_samples=2, calib_steps=2), progress=False)
    assert abs(sparsity_of(model)["sparsity"] - 0.5) < 0.005
    assert not history(model)[-1]["effect"]["uncalibrated_layers"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"sparsity": 1.0}, "less than 1"),
        ({"sparsity": -0.1}, "greater than or equal to 0"),
        ({"nm": "4:4"}, "0 < N < M"),
        ({"nm": "2:4", "sparsity": 0.3}, "fixes the sparsity"),
        ({"method": "wanda", "sparsity": 0.5, "scope": "global"}, "magnitude"),
        ({}, "give --sparsity"),
    ],
)
def test_bad_configs_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        SparsityConfig(**values)


def test_missing_component_and_missing_calibration_are_refused_before_any_change():
    pipe = tiny_sd_pipeline()
    with pytest.raises(ConfigError, match="no component 'transformer'"):
        sparsify(pipe, SparsityConfig(sparsity=0.5, component="transformer"), progress=False)
    with pytest.raises(ConfigError, match="--calib-prompts"):
        sparsify(pipe, SparsityConfig(method="wanda", sparsity=0.5), progress=False)
    assert sparsity_of(pipe.unet) is None and _zeros(pipe.unet.conv_in.weight) == 0


def test_compact_storage_shrinks_and_reloads_identically(tmp_path):
    from slimfusion.metrics.cost import folder_bytes
    from slimfusion.models.io import load, save

    model = tiny_model("UNet2DModel")
    sparsify(model, SparsityConfig(sparsity=0.5), progress=False)
    dense = save(model, tmp_path / "dense")
    compact = save(model, tmp_path / "compact", storage="compact")
    assert folder_bytes(compact) < 0.75 * folder_bytes(dense)
    again = load(compact)
    ours, theirs = again.state_dict(), model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert sparsity_of(again) == sparsity_of(model)
    resaved = save(again, tmp_path / "resaved")  # stays compact: the storage travels with the model
    assert (resaved / "slimfusion_sparse.safetensors").exists()


def test_finetune_keeps_the_zeros():
    from slimfusion.train import FinetuneConfig, finetune

    model = tiny_model("UNet2DModel")
    teacher = tiny_model("UNet2DModel")
    sparsify(model, SparsityConfig(sparsity=0.5), progress=False)
    before = {k: v.clone() for k, v in keep_masks(model).items()}
    images = torch.rand(8, 1, 8, 8) * 2 - 1
    finetune(model, images, FinetuneConfig(steps=3, batch_size=4, lr=1e-2, distill=0.5), teacher, progress=False)
    after = keep_masks(model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    dense_layer = model.get_submodule(next(iter(history(model)[0]["effect"]["layers"])))
    assert dense_layer.weight.ne(0).any()


def test_dit_pipelines_sparsify_their_transformer_with_class_label_calibration():
    from conftest import tiny_dit_pipeline

    pipe = tiny_dit_pipeline()
    with pytest.raises(ConfigError, match="--calib-class-labels"):
        sparsify(pipe, SparsityConfig(method="wanda", sparsity=0.5), progress=False)
    config = SparsityConfig(method="wanda", sparsity=0.5, calib_class_labels=[1, 2], calib_samples=2, calib_steps=2)
    sparsify(pipe, config, progress=False)
    effect = history(pipe.transformer)[-1]["effect"]
    assert effect["component"] == "transformer" and abs(effect["sparsity"] - 0.5) < 0.005
    assert not effect["uncalibrated_layers"]
