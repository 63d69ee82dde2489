"""Structural pruning: every method on every family, saved and reloaded, Diff-Pruning's threshold, ratio rules."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import TINY_CONFIGS, tiny_model
from safetensors.torch import save_file

import slimfusion
from slimfusion.data import load_digits_split
from slimfusion.errors import ConfigError
from slimfusion.models.families import FAMILIES, example_inputs
from slimfusion.models.meta import get_meta, history
from slimfusion.prune import METHODS, StructuralConfig, prune
from slimfusion.prune.structural import kept_per_group

PRUNABLE = sorted(name for name in TINY_CONFIGS if FAMILIES[name].pruning is not None)


def _calibration(model: torch.nn.Module) -> torch.Tensor:
    inputs = example_inputs(model, 4)
    return next(iter(inputs.values())).clamp(-1, 1)


def _first_output(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(5)
    with torch.no_grad():
        return model(**example_inputs(model, 2))[0]


@pytest.fixture(scope="module")
def short_schedule():
    """A 20-step training schedule, so gradient methods finish in a blink on tiny models."""
    from slimfusion.train.diffusion import default_scheduler_config

    return default_scheduler_config(num_train_timesteps=20)


@pytest.mark.parametrize("family", PRUNABLE)
def test_every_method_prunes_runs_saves_and_reloads_in_fresh_process(family, short_schedule, tmp_path):
    expected = {}
    for method in METHODS:
        model = tiny_model(family)
        get_meta(model)["scheduler"] = short_schedule
        before = sum(p.numel() for p in model.parameters())
        data = _calibration(model) if METHODS[method].gradients != "none" else None
        prune(model, StructuralConfig(method=method, ratio=0.5, batch_size=4), data=data, progress=False)
        effect = history(model)[-1]["effect"]
        assert effect["params_after"] < before == effect["params_before"]
        assert effect["macs_after"] < effect["macs_before"]
        assert effect["widths"], "per-layer widths are recorded"
        assert all(p.grad is None for p in model.parameters())
        slimfusion.save(model, tmp_path / method)
        expected[method] = _first_output(model)
    save_file(expected, tmp_path / "expected.safetensors")
    script = textwrap.dedent(
        f"""
        import sys, torch
        torch.set_num_threads({torch.get_num_threads()})
        sys.path.insert(0, {str(tmp_path.parent)!r})
        from safetensors.torch import load_file
        import slimfusion
        from slimfusion.models.families import example_inputs
        expected = load_file({str(tmp_path / "expected.safetensors")!r})
        for method, want in expected.items():
            model = slimfusion.load({str(tmp_path)!r} + "/" + method)
            torch.manual_seed(5)
            with torch.no_grad():
                got = model(**example_inputs(model, 2))[0]
            if not torch.equal(got, want):
                sys.exit(f"{{method}} differs after reload")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def digits_model():
    return slimfusion.load("builtin:digits-ddpm")


def test_diff_pruning_timestep_count_responds_to_threshold(digits_model):
    images = load_digits_split("train")[0][:4]
    used = []
    for threshold in (0.5, 0.3, 0.2):
        model = copy.deepcopy(digits_model)
        prune(
            model, StructuralConfig(method="diff-pruning", ratio=0.3, threshold=threshold, batch_size=4), images, False
        )
        used.append(history(model)[-1]["effect"]["timesteps_used"])
    assert 1 < used[0] < used[1] < used[2] < 1000, used


def test_threshold_zero_and_taylor_use_every_timestep(short_schedule):
    for method, threshold in (("diff-pruning", 0.0), ("taylor", 0.5)):
        model = tiny_model("UNet2DModel")
        get_meta(model)["scheduler"] = short_schedule
        config = StructuralConfig(method=method, ratio=0.3, threshold=threshold, batch_size=2)
        prune(model, config, _calibration(model), progress=False)
        assert history(model)[-1]["effect"]["timesteps_used"] == 20


def test_importance_differs_between_methods(digits_model):
    images = load_digits_split("train")[:1][0][:8]
    kept = {}
    for method in ("random", "magnitude", "taylor", "diff-pruning"):
        model = copy.deepcopy(digits_model)
        get_meta(model)["scheduler"] = None if method != "taylor" else get_meta(model)["scheduler"]
        config = StructuralConfig(method=method, ratio=0.3, batch_size=8, threshold=0.3)
        if method == "taylor":  # all 1000 timesteps would take a while: Taylor over a 50-step schedule
            from slimfusion.train.diffusion import default_scheduler_config

            get_meta(model)["scheduler"] = default_scheduler_config(50)
        prune(model, config, images, progress=False)
        # all surviving weights: one small layer has few choices (4 channels per GroupNorm group) and may agree
        kept[method] = torch.cat([p.detach().flatten() for p in model.parameters()])
    names = list(kept)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert kept[a].shape == kept[b].shape
            assert not torch.equal(kept[a], kept[b]), f"{a} and {b} kept the same channels"


def test_reinit_changes_weights_and_random_keeps_them(digits_model):
    pruned = {}
    for method in ("random", "reinit"):
        model = copy.deepcopy(digits_model)
        prune(model, StructuralConfig(method=method, ratio=0.3, seed=1), progress=False)
        pruned[method] = model.conv_in.weight.detach()
    original = digits_model.conv_in.weight.detach()
    assert torch.isin(pruned["random"].flatten(), original.flatten()).all()  # surviving channels keep their weights
    assert not torch.isin(pruned["reinit"].flatten(), original.flatten()).all()


def test_gradient_methods_need_data():
    with pytest.raises(ConfigError, match="needs calibration data"):
        prune(tiny_model("UNet2DModel"), StructuralConfig(method="taylor"), progress=False)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_ratio_out_of_range_rejected(ratio):
    with pytest.raises(ValueError, match="ratio"):
        StructuralConfig(ratio=ratio)


def test_unknown_method_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        StructuralConfig(method="lottery")


@pytest.mark.parametrize(
    "channels, groups, ratio, compat, round_to, kept",
    [
        (128, 32, 0.3, "torch-pruning", None, 2),  # 4 per group: int(4 * 0.7) = 2 -> removes 50%
        (128, 32, 0.3, "paper", None, 3),  # (128 - 89) // 32 = 1 removed per group -> removes 25%
        (256, 32, 0.3, "paper", None, 6),  # (256 - 179) // 32 = 2 removed per group
        (512, 1, 0.3, "paper", None, 358),  # int(512 * 0.7) = 358
        (512, 1, 0.3, "torch-pruning", 8, 352),  # int(512 * 0.7) = 358 -> rounded down to a multiple of 8
        (64, 1, 0.99, "torch-pruning", None, 1),  # never prunes a layer away
    ],
)
def test_kept_channels_rule(channels, groups, ratio, compat, round_to, kept):
    config = StructuralConfig(ratio=ratio, compat=compat, round_to=round_to)
    assert kept_per_group(channels, groups, config) == kept


# Diff-Pruning, Table 1 / 2 (ratio 0.3 in the reference scripts): params and MACs before -> after pruning.
PAPER_ARCHITECTURES = {
    "ddpm-cifar10": ((35.7e6, 6.1e9), (19.85e6, 3.39e9)),
    "ddpm-celeba64": ((78.7e6, 23.9e9), (43.7e6, 13.3e9)),
    "ddpm-lsun256": ((113.7e6, 248.7e9), (63.2e6, 138.8e9)),
}


@pytest.mark.parametrize(
    "name",
    ["ddpm-cifar10", "ddpm-celeba64", pytest.param("ddpm-lsun256", marks=pytest.mark.slow)],  # LSUN: ~2-6 min
)
def test_paper_compat_reproduces_diff_pruning_architectures(name):
    model = slimfusion.load(f"builtin:{name}")
    prune(model, StructuralConfig(method="magnitude", ratio=0.3, compat="paper"), progress=False)
    effect = history(model)[-1]["effect"]
    (params_before, macs_before), (params_after, macs_after) = PAPER_ARCHITECTURES[name]
    assert abs(effect["params_before"] / params_before - 1) < 0.01
    assert abs(effect["macs_before"] / macs_before - 1) < 0.01
    assert abs(effect["params_after"] / params_after - 1) < 0.01
    assert abs(effect["macs_after"] / macs_after - 1) < 0.01


def test_geglu_value_and_gate_halves_stay_paired():
    from diffusers.models.activations import GEGLU

    model = tiny_model("UNet2DConditionModel")
    gegl = next(m for m in model.modules() if isinstance(m, GEGLU))
    hidden = gegl.proj.out_features // 2
    with torch.no_grad():  # tag unit i: value half bias i, gate half bias i + 0.5
        gegl.proj.bias.copy_(torch.cat([torch.arange(hidden) * 1.0, torch.arange(hidden) + 0.5]))
        gegl.proj.weight.normal_()  # make magnitudes differ between units
    prune(model, StructuralConfig(method="magnitude", ratio=0.5), progress=False)
    kept = gegl.proj.out_features // 2
    assert kept < hidden
    value, gate = gegl.proj.bias[:kept], gegl.proj.bias[kept:]
    assert torch.equal(gate, value + 0.5), (value, gate)


def test_latent_model_calibrates_on_user_latents(tmp_path, short_schedule):
    from slimfusion.data import load_images

    torch.manual_seed(0)
    save_file({"latents": torch.randn(4, 4, 8, 8)}, tmp_path / "latents.safetensors")
    latents = load_images(str(tmp_path / "latents.safetensors"))
    model = tiny_model("UNet2DConditionModel")
    get_meta(model)["scheduler"] = short_schedule
    prune(
        model,
        StructuralConfig(method="diff-pruning", ratio=0.3, threshold=0.0, batch_size=2, calib_batches=2),
        latents,
        False,
    )
    effect = history(model)[-1]["effect"]
    assert effect["timesteps_used"] == 20 and effect["calib_images"] == 4


def test_cli_rejects_calibration_data_of_the_wrong_shape(tmp_path, monkeypatch, capsys):
    from slimfusion import cli

    save_file({"latents": torch.randn(2, 4, 16, 16)}, tmp_path / "latents.safetensors")
    model = slimfusion.save(tiny_model("UNet2DConditionModel"), tmp_path / "unet")
    argv = ["slimfusion", "prune", str(model), "--data", str(tmp_path / "latents.safetensors"), "--out", "x"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "--data gives samples of shape (4, 16, 16); the model takes (4, 8, 8)" in capsys.readouterr().err
