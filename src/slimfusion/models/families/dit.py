"""The DiT family (DiTTransformer2DModel): its inputs, block layout and depth units.

Everything slimfusion knows about diffusers' DiT attribute names (transformer_blocks, proj_out_1 / proj_out_2)
lives here.
"""

from __future__ import annotations

import torch
from torch import nn

from slimfusion.models.families.parts import Depth, DepthUnit, sample_side


def inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    side = sample_side(model.config)
    return {
        "hidden_states": torch.randn(batch, model.config.in_channels, side, side),
        "timestep": torch.full((batch,), 10, dtype=torch.long),
        "class_labels": torch.zeros(batch, dtype=torch.long),
    }


def denoise(model: nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """`cond`: class labels [N]; None means class 0."""
    labels = torch.zeros(len(noisy), dtype=torch.long) if cond is None else cond
    out = model(noisy, timestep=t, class_labels=labels).sample
    return out[:, : noisy.shape[1]]  # DiT also predicts the variance in its extra channels


def ignored(model: nn.Module) -> list[nn.Module]:
    # proj_out_1 makes the final shift / scale of the residual stream, proj_out_2 the patch pixels: both fixed widths
    return [model.proj_out_1, model.proj_out_2]


def feature_blocks(model: nn.Module) -> list[str]:
    """Block outputs a DiT student is taught to match: the last block of each quarter of the stack."""
    count = len(model.transformer_blocks)
    step = max(1, count // 4)
    return [f"transformer_blocks.{i}" for i in range(count) if (i + 1) % step == 0 or i == count - 1]


def skip_units(model: nn.Module, fine: bool = False) -> list[str]:
    """Blocks a skip plan may reuse: every transformer block (there is no finer branch)."""
    return [f"transformer_blocks.{i}" for i in range(len(model.transformer_blocks))]


def depth_units(model: nn.Module) -> list[DepthUnit]:
    """Every transformer block but the first: diffusers' DiT takes the output layer's timestep / class conditioning
    from `transformer_blocks[0].norm1.emb`, so removing block 0 would change more than one block."""
    width = getattr(model, "inner_dim", 0)
    first = "its norm embeds the timestep and class for the output layer too"
    return [
        DepthUnit(
            f"transformer_blocks.{i}",
            (f"transformer_blocks.{i}",),
            ((f"transformer_blocks.{i}",) * 2 + (width,),),
            i > 0,
            why="" if i > 0 else first,
        )
        for i in range(len(model.transformer_blocks))
    ]


def stages(model: nn.Module) -> dict[str, int]:
    """The stack is one stage: at least one block stays."""
    return {"transformer_blocks": len(model.transformer_blocks)}


def config_changes(model: nn.Module) -> dict:
    return {"num_layers": len(model.transformer_blocks)}


def layer_counts(model: nn.Module) -> dict:
    return {"transformer_blocks": len(model.transformer_blocks)}


DEPTH = Depth(depth_units, stages, config_changes, layer_counts)
