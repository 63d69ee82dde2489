"""Low-rank factorisation and quantization: exactness, MACs, tolerances, pickle-free reload, refusals."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from test_cli import run_cli
from torch import nn

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.lowrank import LowRank, LowRankConfig, factorize, lowrank
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.models.families import example_inputs
from slimfusion.models.meta import history
from slimfusion.quantize import QuantizeConfig, quantize


def _out(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    if isinstance(out, tuple):
        return out[0]
    return out.sample if hasattr(out, "sample") else out.last_hidden_state


@pytest.mark.parametrize(
    "layer", [nn.Linear(24, 40), nn.Conv2d(6, 10, 1), nn.Conv2d(6, 10, 3, stride=2, padding=1)], ids=str
)
def test_full_rank_reproduces_the_layer(layer):
    x = torch.randn(3, 24) if isinstance(layer, nn.Linear) else torch.randn(2, 6, 9, 9)
    full = min(layer.weight.shape[0], layer.weight[0].numel())
    with torch.no_grad():
        assert torch.allclose(factorize(layer, full)(x), layer(x), atol=1e-5)
        low = factorize(layer, 2)(x)
    assert not torch.allclose(low, layer(x), atol=1e-3)  # truncation changes something


def test_lower_rank_reduces_macs_and_reloads(family_model, tmp_path):
    inputs = example_inputs(family_model, 2)
    before_macs, before_params = count_macs(family_model), count_params(family_model)
    lowrank(family_model, LowRankConfig(rank_ratio=0.25))
    assert count_macs(family_model) < before_macs and count_params(family_model) < before_params
    effect = history(family_model)[-1]["effect"]
    assert effect["layers_factorised"] > 0 and effect["macs_after"] < effect["macs_before"]
    out = _out(family_model, inputs)
    assert torch.isfinite(out).all()
    again = slimfusion.load(slimfusion.save(family_model, tmp_path / "lr"))
    assert torch.equal(_out(again, inputs), out)


def test_energy_rule_and_only_where_it_pays():
    model = tiny_model("UNet2DModel")
    lowrank(model, LowRankConfig(energy=0.5))
    ranks = history(model)[-1]["config"]
    assert ranks["energy"] == 0.5
    for module in model.modules():  # every factorised pair is cheaper than the layer it replaced
        if isinstance(module, LowRank):
            first, second = module[0].weight, module[1].weight
            assert first.numel() + second.numel() < second.shape[0] * first[0].numel()
    with pytest.raises(ConfigError, match="already"):
        lowrank(model, LowRankConfig(rank_ratio=0.5))


def test_lowrank_model_fine_tunes(tmp_path):
    from slimfusion.train import FinetuneConfig, finetune

    teacher = tiny_model("UNet2DModel")
    model = lowrank(tiny_model("UNet2DModel"), LowRankConfig(rank_ratio=0.3))
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    finetune(model, images, FinetuneConfig(steps=3, batch_size=8, distill=0.5), teacher=teacher, progress=False)
    assert [h["step"] for h in history(model)][-2:] == ["lowrank", "finetune"]
    assert torch.isfinite(
        _out(slimfusion.load(slimfusion.save(model, tmp_path / "ft")), example_inputs(model, 1))
    ).all()


@pytest.mark.parametrize("scheme,tolerance", [("bf16", 0.08), ("fp16", 0.01), ("int8-weight", 0.05)])
def test_quantized_output_within_tolerance_and_reload_identical(scheme, tolerance, tmp_path):
    """On the trained built-in: max |error| of the noise prediction relative to its largest value."""
    model = slimfusion.load("builtin:digits-ddpm")
    inputs = example_inputs(model, 8)
    inputs["timestep"] = torch.tensor([10, 100, 300, 500, 700, 800, 900, 999])
    reference = _out(model, inputs)
    quantize(model, QuantizeConfig(scheme=scheme))
    out = _out(model, inputs)
    assert out.dtype == torch.float32
    assert (out - reference).abs().max() / reference.abs().max() < tolerance
    assert not torch.equal(out, reference)
    folder = slimfusion.save(model, tmp_path / scheme)
    again = slimfusion.load(folder)
    assert torch.equal(_out(again, inputs), out)
    assert count_macs(again) == count_macs(slimfusion.load("builtin:digits-ddpm"))
    if scheme == "int8-weight":
        weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        float_weights = sum(
            f.stat().st_size for f in slimfusion.models.io.builtin_path("digits-ddpm").glob("*.safetensors")
        )
        assert weights < 0.3 * float_weights


def test_half_precision_pipeline_denoiser_samples(sd_folder, tmp_path):
    from slimfusion.pipelines import load_pipeline

    result = run_cli("quantize", str(sd_folder), "--out", str(tmp_path / "q"), "--scheme", "bf16")
    assert result.returncode == 0, result.stderr
    pipe = load_pipeline(tmp_path / "q")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.float32
    images = pipe(["the digit 7"], num_inference_steps=2, output_type="pt").images
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


def test_compile_is_recorded_and_rebuilt_on_load(tmp_path):
    model = tiny_model("UNet2DModel")
    inputs = example_inputs(model, 2)
    eager = _out(model, inputs)
    quantize(model, QuantizeConfig(scheme="none", compile=True))
    again = slimfusion.load(slimfusion.save(model, tmp_path / "c"))
    assert again._compiled_call_impl is not None
    assert torch.allclose(_out(again, inputs), eager, atol=1e-5)


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    cases = [
        ("lowrank", "builtin:digits-ddpm", "--rank-ratio", "1.5"),
        ("lowrank", "builtin:digits-ddpm"),
        ("quantize", "builtin:digits-ddpm", "--scheme", "int4"),
        ("quantize", "builtin:digits-ddpm", "--scheme", "none"),
        ("quantize", str(tmp_path / "missing"), "--scheme", "bf16"),
    ]
    for args in cases:
        result = run_cli(*args, "--out", str(tmp_path / "x"))
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:"), result.stderr
        assert not (tmp_path / "x").exists()
    model = quantize(tiny_model("UNet2DModel"), QuantizeConfig(scheme="bf16"))
    with pytest.raises(ConfigError, match="already quantized"):
        quantize(model, QuantizeConfig(scheme="int8-weight"))
