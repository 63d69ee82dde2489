"""Low-rank factorisation: truncated SVD of Linear and Conv2d weights into two thinner layers, only where it pays.

A Linear [out, in] of rank r becomes Linear(in -> r) then Linear(r -> out); a Conv2d [out, in, k, k] becomes a
k x k conv (in -> r, the original stride / padding) then a 1 x 1 conv (r -> out), i.e. the SVD of the weight viewed
as [out, in * k * k]. A layer is factorised only when r * (in * k * k + out) < out * in * k * k: fewer params and
fewer MACs. Written by hand: no maintained library factorises diffusers models in place and saves them again
(torch.svd_lowrank / linalg.svd do the maths).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.models.families import family_of
from slimfusion.models.meta import record_step
from slimfusion.models.transforms import add_transform, replace_module


class LowRankConfig(BaseModel):
    """Settings of one factorisation.

    Args:
        rank_ratio (`float`, optional): keep this share of each layer's full rank min(out, in * k * k), in (0, 1].
        energy (`float`, optional): keep the fewest singular values holding this share of the squared spectrum, in
            (0, 1]. Exactly one of `rank_ratio` and `energy`.
        layers (`str`, defaults to "linear+conv"): "linear" or "linear+conv" (convs of any kernel, groups = 1).
        skip (`list[str]`, defaults to none): module-name prefixes left alone (e.g. the output conv).
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    rank_ratio: float | None = Field(None, gt=0, le=1, description="keep this share of each layer's rank, in (0, 1]")
    energy: float | None = Field(
        None, gt=0, le=1, description="keep the singular values holding this share of the spectrum, in (0, 1]"
    )
    layers: str = Field("linear+conv", pattern="^(linear|linear\\+conv)$", description="linear | linear+conv")
    skip: list[str] = Field(default_factory=list, description="comma list of module-name prefixes to leave alone")

    @model_validator(mode="after")
    def _one_rule(self) -> LowRankConfig:
        if (self.rank_ratio is None) == (self.energy is None):
            raise ValueError("give exactly one of rank_ratio (--rank-ratio) and energy (--energy)")
        return self


class LowRank(nn.Sequential):
    """Two layers standing for one: `first` projects to the rank, `second` maps back to the original outputs."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__(first, second)
        self.rank = first.out_features if isinstance(first, nn.Linear) else first.out_channels

    @property
    def weight(self) -> torch.Tensor:
        """The product weight (for code that reads a layer's dtype / device / shape; not used in forward)."""
        first, second = self[0], self[1]
        w = second.weight.flatten(1) @ first.weight.flatten(1)
        return w.view(second.weight.shape[0], *first.weight.shape[1:])

    @property
    def bias(self) -> torch.Tensor | None:
        return self[1].bias


def _matrix(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().flatten(1).float()


def full_rank(layer: nn.Module) -> int:
    out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
    return min(out, fan_in)


def pays(layer: nn.Module, rank: int) -> bool:
    """True when the factorised pair has fewer params (and MACs) than the layer."""
    out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
    return rank * (fan_in + out) < out * fan_in


def empty_pair(layer: nn.Module, rank: int) -> LowRank:
    """The factorised pair's shapes for `layer` at `rank` (weights uninitialised: filled by `factorize` or a load)."""
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features, bias=bias)
    else:
        first = nn.Conv2d(
            layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding, layer.dilation, bias=False
        )
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=bias)
    pair = LowRank(first, second)
    return pair.to(dtype=layer.weight.dtype, device=layer.weight.device)


def factorize(layer: nn.Module, rank: int) -> LowRank:
    """`layer` as two layers through its rank-`rank` truncated SVD (exact at full rank, up to float rounding)."""
    u, s, vh = torch.linalg.svd(_matrix(layer), full_matrices=False)
    root = s[:rank].sqrt()
    pair = empty_pair(layer, rank)
    with torch.no_grad():
        pair[0].weight.copy_((root[:, None] * vh[:rank]).view_as(pair[0].weight))
        pair[1].weight.copy_((u[:, :rank] * root[None, :]).view_as(pair[1].weight))
        if layer.bias is not None:
            pair[1].bias.copy_(layer.bias)
    return pair


def choose_rank(layer: nn.Module, config: LowRankConfig) -> int:
    full = full_rank(layer)
    if config.rank_ratio is not None:
        return max(1, math.ceil(config.rank_ratio * full))
    energy = torch.linalg.svdvals(_matrix(layer)).square()
    share = energy.cumsum(0) / energy.sum().clamp_min(1e-30)
    return min(full, int((share < config.energy - 1e-9).sum()) + 1)


def candidates(model: nn.Module, config: LowRankConfig) -> dict[str, nn.Module]:
    kinds = (nn.Linear, nn.Conv2d) if config.layers == "linear+conv" else (nn.Linear,)
    out = {}
    for name, module in model.named_modules():
        if type(module) not in kinds or any(name.startswith(p) for p in config.skip):
            continue
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            continue
        out[name] = module
    return out


def lowrank(model: nn.Module, config: LowRankConfig) -> nn.Module:
    """Factorise `model`'s layers in place where it pays; records a "lowrank" step (ranks, params, MACs)."""
    family_of(model)  # refuse unsupported classes first
    if any(isinstance(m, LowRank) for m in model.modules()):
        raise ConfigError("model is already low-rank factorised; factorise the original instead")
    before = {"params": count_params(model), "macs": count_macs(model)}
    ranks = {}
    for name, layer in candidates(model, config).items():
        rank = choose_rank(layer, config)
        if pays(layer, rank):
            replace_module(model, name, factorize(layer, rank))
            ranks[name] = rank
    if not ranks:
        raise ConfigError("no layer gets cheaper at that rank; lower --rank-ratio / --energy")
    add_transform(model, {"kind": "lowrank", "ranks": ranks})
    after = {"params": count_params(model), "macs": count_macs(model)}
    effect = {"layers_factorised": len(ranks), "params_before": before["params"], "params_after": after["params"]}
    effect |= {"macs_before": before["macs"], "macs_after": after["macs"]}
    record_step(model, "lowrank", config.model_dump(), effect)
    return model


def rebuild(model: nn.Module, entry: dict) -> None:
    """Give a freshly built model the factorised layers a saved one has (weights come from the file)."""
    modules = dict(model.named_modules())
    for name, rank in entry["ranks"].items():
        layer = modules.get(name)
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            raise ConfigError(f"low-rank layer {name!r} is not a Linear / Conv2d of this architecture")
        replace_module(model, name, empty_pair(layer, int(rank)))
