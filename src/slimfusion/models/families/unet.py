"""UNet families (UNet2DModel, UNet2DConditionModel): their inputs, block layout, depth units and DeepCache's branches.

Everything slimfusion knows about diffusers' UNet attribute names (down_blocks / mid_block / up_blocks, resnets,
attentions, samplers) lives here.
"""

from __future__ import annotations

import torch
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.families.parts import Depth, DepthUnit, sample_side


def inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    side = sample_side(model.config)
    return {
        "sample": torch.randn(batch, model.config.in_channels, side, side),
        "timestep": torch.full((batch,), 10, dtype=torch.long),
    }


def condition_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    kwargs = inputs(model, batch)
    cross_dim = model.config.cross_attention_dim
    cross_dim = cross_dim[0] if isinstance(cross_dim, (tuple, list)) else cross_dim
    kwargs["encoder_hidden_states"] = torch.randn(batch, 77, cross_dim)
    return kwargs


def denoise(model: nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    return model(noisy, t).sample


def condition_denoise(
    model: nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """`cond`: text-encoder hidden states [N, L, D]; None means null conditioning (zeros)."""
    if cond is None:
        cond = condition_inputs(model, len(noisy))["encoder_hidden_states"].zero_()
    return model(noisy, t, encoder_hidden_states=cond).sample


def ignored(model: nn.Module) -> list[nn.Module]:
    return [model.conv_out]  # its width is the image's channel count


def feature_blocks(model: nn.Module) -> list[str]:
    """Block outputs a thinner UNet student is taught to match: the middle block and every up block."""
    return ["mid_block"] + [f"up_blocks.{i}" for i in range(len(model.up_blocks))]


def skip_units(model: nn.Module, fine: bool = False) -> list[str]:
    """Blocks a skip plan may reuse: every down block (with its residuals), the mid block, every up block.

    `fine` adds DeepCache's skip branches: each block's resnets, attentions and down / up samplers.
    """
    names = [f"down_blocks.{i}" for i in range(len(model.down_blocks))] + ["mid_block"]
    names += [f"up_blocks.{i}" for i in range(len(model.up_blocks))]
    if not fine:
        return names
    layers = []
    for name in names:
        block = model.get_submodule(name)
        for part in ("resnets", "attentions", "downsamplers", "upsamplers"):
            layers += [f"{name}.{part}.{j}" for j in range(len(getattr(block, part, None) or []))]
    return names + layers


def _layer_modules(block: nn.Module, path: str, index: int) -> tuple[list[str], str]:
    names = [f"{path}.resnets.{index}"]
    attentions = getattr(block, "attentions", None)
    if attentions is not None and len(attentions) > index:
        names.append(f"{path}.attentions.{index}")
    return names, names[-1]


def depth_units(model: nn.Module) -> list[DepthUnit]:
    """The mid block, and per stage each down layer paired with the up layer that consumes its skip tensor.

    Up layer i of a stage's up block consumes the skip tensor of down layer L - 1 - i (diffusers pops them from the
    end), so down layer j pairs with up layer L - 1 - j; removing both keeps every other pairing as it was.
    """
    units = []
    if model.mid_block is not None:
        channels = model.mid_block.resnets[0].in_channels
        units.append(DepthUnit("mid_block", ("mid_block",), (("mid_block", "mid_block", channels),), True))
    count = len(model.down_blocks)
    for b, down in enumerate(model.down_blocks):
        up, u = model.up_blocks[count - 1 - b], count - 1 - b
        layers = len(down.resnets)
        if len(up.resnets) != layers + 1:
            continue
        for j in range(layers):
            k = layers - 1 - j
            down_names, down_last = _layer_modules(down, f"down_blocks.{b}", j)
            up_names, up_last = _layer_modules(up, f"up_blocks.{u}", k)
            resnet_down, resnet_up = down.resnets[j], up.resnets[k]
            hidden_up = resnet_up.in_channels - resnet_down.out_channels
            valid = resnet_down.in_channels == resnet_down.out_channels and hidden_up == resnet_up.out_channels
            units.append(
                DepthUnit(
                    f"down_blocks.{b}.{j}+up_blocks.{u}.{k}",
                    tuple(down_names + up_names),
                    ((down_names[0], down_last, resnet_down.in_channels), (up_names[0], up_last, hidden_up)),
                    valid,
                    stage=f"down_blocks.{b}",
                    why="" if valid else "one of its layers changes the channel count, so nothing can take its place",
                )
            )
    return units


def pair_unit(model: nn.Module, name: str) -> DepthUnit:
    """Any down / up layer pair "down_blocks.B.J+up_blocks.U.K" (U the mirror of B), also those `depth_units` does
    not offer (a pairing other than the skip tensor's); raises ValueError / IndexError for anything else."""
    down_part, up_part = name.split("+")
    _, b, j = down_part.rsplit(".", 2)
    _, u, k = up_part.rsplit(".", 2)
    b, j, u, k = int(b), int(j), int(u), int(k)
    if not (down_part.startswith("down_blocks.") and up_part.startswith("up_blocks.")):
        raise ValueError(name)
    down, up = model.down_blocks[b], model.up_blocks[u]
    if u != len(model.down_blocks) - 1 - b or j >= len(down.resnets) or k >= len(up.resnets) - 1:
        raise IndexError(name)
    layers = [f"down_blocks.{b}.resnets.{j}", f"up_blocks.{u}.resnets.{k}"]
    layers += [f"down_blocks.{b}.attentions.{j}"] if getattr(down, "attentions", None) else []
    layers += [f"up_blocks.{u}.attentions.{k}"] if getattr(up, "attentions", None) else []
    return DepthUnit(name, tuple(layers), (), False, stage=f"down_blocks.{b}")


def stages(model: nn.Module) -> dict[str, int]:
    """Layers per down block: each keeps at least one."""
    return {f"down_blocks.{b}": len(block.resnets) for b, block in enumerate(model.down_blocks)}


def config_changes(model: nn.Module) -> dict:
    """mid_block_type None without a mid block; layers_per_block as one count or (UNet2DConditionModel) a list."""
    changed: dict = {}
    if model.mid_block is None:
        changed["mid_block_type"] = None
    counts = [len(block.resnets) for block in model.down_blocks]
    if len(set(counts)) == 1:
        changed["layers_per_block"] = counts[0]
    elif type(model).__name__ == "UNet2DConditionModel":  # UNet2DModel takes one count for every block
        changed["layers_per_block"] = counts
    return changed


def layer_counts(model: nn.Module) -> dict:
    return {
        "down": [len(b.resnets) for b in model.down_blocks],
        "up": [len(b.resnets) for b in model.up_blocks],
        "mid": model.mid_block is not None,
    }


DEPTH = Depth(depth_units, stages, config_changes, layer_counts, named_unit=pair_unit)


def cache_branch(model: nn.Module, branch: int) -> list[str]:
    """The blocks DeepCache reuses at a cached step for skip branch `branch` (its `cache_branch_id`).

    As the reference `DeepCacheSDHelper`: branch b means block b // 3, layer b % 3; down-path layers from that layer
    on and up-path layers after it are reused, as are the mid block and every deeper block; the up path is numbered
    from the output end.
    """
    cache_block, cache_layer = divmod(branch, 3)
    if cache_block >= len(model.down_blocks):
        raise ConfigError(f"branch {branch} is deeper than the UNet's {len(model.down_blocks)} blocks x 3 layers")

    def skip(block: int, layer: int, kind: str) -> bool:
        if block > cache_block or kind == "mid":
            return True
        if block < cache_block:
            return False
        return layer >= cache_layer if kind == "down" else layer > cache_layer

    reused = ["mid_block"]
    for i, block in enumerate(model.down_blocks):
        resnets = len(block.resnets)
        parts = [("attentions", j, j) for j in range(len(getattr(block, "attentions", None) or []))]
        parts += [("resnets", j, j) for j in range(resnets)]
        parts += [("downsamplers", j, resnets) for j in range(len(block.downsamplers or []))]
        reused += [f"down_blocks.{i}.{p}.{j}" for p, j, layer in parts if skip(i, layer, "down")]
        if skip(i, 0, "down"):
            reused.append(f"down_blocks.{i}")
    count = len(model.up_blocks)
    for k, block in enumerate(model.up_blocks):
        i, layers = count - k - 1, len(block.resnets)
        parts = [("attentions", j, layers - j - 1) for j in range(len(getattr(block, "attentions", None) or []))]
        parts += [("resnets", j, layers - j - 1) for j in range(layers)]
        parts += [("upsamplers", j, 0) for j in range(len(block.upsamplers or []))]
        reused += [f"up_blocks.{k}.{p}.{j}" for p, j, layer in parts if skip(i, layer, "up")]
        if skip(i, 0, "up"):
            reused.append(f"up_blocks.{k}")
    return sorted(reused)


# kept in float by an int8 export: the timestep's path (sinusoids, their MLP, each resnet's projection of it: int8
# steps of a range spanning t = 0..999 blur the time the network sees) and the first / last convolutions (raw pixels
# in, the noise out); measured on digits-ddpm: the per-step error of the noise prediction 0.153 -> 0.068, and 0.018
# with NNCF's transformer scheme beside it (benchmarks/results/deploy_cpu.md)
INT8_FLOAT = ("time_proj", "time_embedding", "time_emb_proj", "conv_in", "conv_out")
