"""Reduced precision and weight quantization for CPU deployment, plus `torch.compile` as a deploy step.

Schemes (chosen by measurement on the AVX-512 BF16 / VNNI CPU this project runs on, see docs/quantization.md):
- "bf16" / "fp16": weights and activations in half precision (PyTorch's own kernels; bf16 is the one that pays on a
  CPU with AVX-512 BF16). Inputs are cast on the way in and the output back to float32, so samplers, schedulers and
  other pipeline components stay in float32. Timesteps (0-d / 1-d tensors) are not cast: bf16 holds 999 as 1000.
- "int8-weight": weights stored as int8 with one float scale per output channel (symmetric, max |w| / 127),
  Linear and Conv2d alike; computed in float after dequantizing. It buys memory and file size (~1/4 of float32
  weights), not speed. No activation quantization, so nothing needs calibration over timesteps.
- "none": leave the numbers alone (use with `compile`).
`compile` wraps the model in `torch.compile` (Inductor) when it is loaded or quantized: this removes the per-layer
Python overheads that keep small pruned models slower than their MACs say. It is recorded, not serialised: the
graph is rebuilt at load. Everything saves as safetensors + JSON (int8 weights and scales as tensors).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.metrics.cost import count_params
from slimfusion.models.families import family_of
from slimfusion.models.meta import record_step
from slimfusion.models.transforms import add_transform, replace_module, transforms_of

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


class QuantizeConfig(BaseModel):
    """Settings of one quantization.

    Args:
        scheme (`str`, defaults to "bf16"): "bf16", "fp16", "int8-weight" or "none".
        compile (`bool`, defaults to False): `torch.compile` the model now and whenever it is loaded.
        layers (`str`, defaults to "linear+conv"): int8-weight only: "linear" or "linear+conv".
        skip (`list[str]`, defaults to none): int8-weight only: module-name prefixes kept in float.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    scheme: Literal["bf16", "fp16", "int8-weight", "none"] = Field(
        "bf16", description="bf16 | fp16 | int8-weight | none"
    )
    compile: bool = Field(False, description="torch.compile the model whenever it is loaded")
    layers: Literal["linear", "linear+conv"] = Field("linear+conv", description="int8-weight: linear | linear+conv")
    skip: list[str] = Field([], description="int8-weight: comma list of module-name prefixes kept float")


def _per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = weight.detach().float().flatten(1)
    scale = (flat.abs().amax(1) / 127).clamp_min(1e-12)
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.view_as(weight), scale


class Int8WeightLinear(nn.Module):
    """A Linear whose weight lives as int8 + per-output-channel scale and is dequantized at each call."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self._store(layer)

    def _store(self, layer: nn.Module) -> None:
        q, scale = _per_channel_int8(layer.weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().float().clone())

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.view(-1, *[1] * (self.qweight.ndim - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def as_float(self) -> nn.Module:
        """The float layer these int8 weights stand for (what MAC counters and exports understand)."""
        return _as_float(self)


class Int8WeightConv2d(Int8WeightLinear):
    """A Conv2d with int8 weights (see `Int8WeightLinear`); stride, padding, dilation and groups as the original."""

    def __init__(self, layer: nn.Conv2d):
        nn.Module.__init__(self)
        for key in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
            setattr(self, key, getattr(layer, key))
        self._store(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.weight.to(x.dtype), bias, self.stride, self.padding, self.dilation, self.groups)


def _int8_layers(model: nn.Module, layers: str, skip: list[str]) -> dict[str, nn.Module]:
    kinds = (nn.Linear, nn.Conv2d) if layers == "linear+conv" else (nn.Linear,)
    return {
        name: m
        for name, m in model.named_modules()
        if type(m) in kinds
        and not any(name.startswith(p) for p in skip)
        and not (isinstance(m, nn.Conv2d) and m.padding_mode != "zeros")
    }


def _cast(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.ndim >= 2:
        return value.to(dtype)
    return value


def _attach_casts(model: nn.Module, dtype: torch.dtype) -> None:
    """Half-precision inputs in, float32 outputs out (tensors, tuples, diffusers / transformers output objects)."""

    def pre(_module, args, kwargs):
        return tuple(_cast(a, dtype) for a in args), {k: _cast(v, dtype) for k, v in kwargs.items()}

    def post(_module, _args, output):
        if isinstance(output, torch.Tensor):
            return _cast(output, torch.float32)
        if isinstance(output, tuple):
            return tuple(_cast(o, torch.float32) for o in output)
        if isinstance(output, dict):  # BaseOutput / ModelOutput: item assignment keeps the attributes in step
            for key in list(output.keys()):
                output[key] = _cast(output[key], torch.float32)
        return output

    # plain torch hooks, not HookRegistry: these stay for the model's life and must survive copy.deepcopy
    model.register_forward_pre_hook(pre, with_kwargs=True)
    model.register_forward_hook(post)


def quantize(model: nn.Module, config: QuantizeConfig) -> nn.Module:
    """Quantize `model` in place (see the module docstring for the schemes); records a "quantize" step."""
    family_of(model)
    previous = [t for t in transforms_of(model) if t["kind"] == "quantize"]
    if previous and (config.scheme != "none" or any(t["compile"] for t in previous)):  # compile may follow a scheme
        raise ConfigError("model is already quantized; quantize the float model instead")
    if config.scheme == "none" and not config.compile:
        raise ConfigError("scheme none without --compile changes nothing")
    bytes_before = _weight_bytes(model)
    entry = {"kind": "quantize", "scheme": config.scheme, "compile": config.compile}
    if config.scheme == "int8-weight":
        entry["layers"] = list(_int8_layers(model, config.layers, config.skip))
    add_transform(model, entry)
    rebuild(model, entry)
    finish(model, entry)
    effect = {"params": count_params(model), "weight_bytes_before": bytes_before, "weight_bytes": _weight_bytes(model)}
    record_step(model, "quantize", config.model_dump(), effect)
    return model


def _as_float(layer: Int8WeightLinear) -> nn.Module:
    bias = layer.bias is not None
    if isinstance(layer, Int8WeightConv2d):
        out = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias=bias,
        )
    else:
        out = nn.Linear(layer.in_features, layer.out_features, bias=bias)
    with torch.no_grad():
        out.weight.copy_(layer.weight)
        if bias:
            out.bias.copy_(layer.bias)
    return out


def _weight_bytes(model: nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def rebuild(model: nn.Module, entry: dict) -> None:
    """The saved model's layers and dtype on a fresh build (weights come from the file)."""
    if entry["scheme"] in HALF:
        nn.Module.to(model, HALF[entry["scheme"]])  # diffusers' own .to() warns about keep-in-fp32 lists
    if entry["scheme"] == "int8-weight":
        modules = dict(model.named_modules())
        for name in entry["layers"]:
            layer = modules[name]
            if not isinstance(layer, (nn.Linear, nn.Conv2d)):
                raise ValueError(f"int8 layer {name!r} is not a Linear / Conv2d of this architecture")
            replace_module(
                model, name, Int8WeightConv2d(layer) if isinstance(layer, nn.Conv2d) else Int8WeightLinear(layer)
            )


def finish(model: nn.Module, entry: dict) -> None:
    """Run-time parts: dtype casts around half-precision models, and compilation."""
    if entry["scheme"] in HALF:
        _attach_casts(model, HALF[entry["scheme"]])
    if entry.get("compile"):
        model.compile()
