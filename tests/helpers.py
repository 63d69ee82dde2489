"""Hand-shrinking helpers: change channel / head counts the way structural pruning does, without a pruner."""

from __future__ import annotations

import torch
from torch import nn


def _keep_rows(layer: nn.Module, name: str, idx: torch.Tensor, dim: int) -> None:
    tensor = getattr(layer, name)
    if tensor is not None:
        setattr(layer, name, nn.Parameter(tensor.detach().index_select(dim, idx).clone()))


def shrink_conv_out(conv: nn.Conv2d, idx: torch.Tensor) -> None:
    _keep_rows(conv, "weight", idx, 0)
    _keep_rows(conv, "bias", idx, 0)
    conv.out_channels = len(idx)


def shrink_conv_in(conv: nn.Conv2d, idx: torch.Tensor) -> None:
    _keep_rows(conv, "weight", idx, 1)
    conv.in_channels = len(idx)


def shrink_linear_out(linear: nn.Linear, idx: torch.Tensor) -> None:
    _keep_rows(linear, "weight", idx, 0)
    _keep_rows(linear, "bias", idx, 0)
    linear.out_features = len(idx)


def shrink_linear_in(linear: nn.Linear, idx: torch.Tensor) -> None:
    _keep_rows(linear, "weight", idx, 1)
    linear.in_features = len(idx)


def shrink_resnet(block: nn.Module, keep: int) -> None:
    """Keep the first `keep` hidden channels of a diffusers ResnetBlock2D (conv1 -> norm2 -> conv2)."""
    idx = torch.arange(keep)
    shrink_conv_out(block.conv1, idx)
    shrink_linear_out(block.time_emb_proj, idx)
    per_group = block.norm2.num_channels // block.norm2.num_groups
    block.norm2.num_groups = keep // per_group
    block.norm2.num_channels = keep
    _keep_rows(block.norm2, "weight", idx, 0)
    _keep_rows(block.norm2, "bias", idx, 0)
    shrink_conv_in(block.conv2, idx)


def shrink_attention_heads(attn: nn.Module, keep_heads: int) -> None:
    """Keep the first `keep_heads` heads of a diffusers Attention (q, k, v rows and to_out columns)."""
    head_dim = attn.inner_dim // attn.heads
    idx = torch.arange(keep_heads * head_dim)
    for proj in (attn.to_q, attn.to_k, attn.to_v):
        shrink_linear_out(proj, idx)
    shrink_linear_in(attn.to_out[0], idx)
    attn.heads = keep_heads
    attn.inner_dim = keep_heads * head_dim
    attn.inner_kv_dim = keep_heads * head_dim


def shrink_mlp(linear_in: nn.Linear, linear_out: nn.Linear, keep: int) -> None:
    idx = torch.arange(keep)
    shrink_linear_out(linear_in, idx)
    shrink_linear_in(linear_out, idx)


def shrink_any(model: nn.Module) -> None:
    """Shrink something in every family: a resnet and attention heads in UNets, MLPs and heads in transformers."""
    name = type(model).__name__
    if name == "UNet2DModel":
        shrink_resnet(model.down_blocks[0].resnets[0], 4)
        shrink_attention_heads(model.down_blocks[1].attentions[0], 2)
    elif name == "UNet2DConditionModel":
        shrink_resnet(model.down_blocks[0].resnets[0], 4)
        block = model.down_blocks[0].attentions[0].transformer_blocks[0]
        shrink_attention_heads(block.attn1, 2)
        shrink_attention_heads(block.attn2, 2)
    elif name == "DiTTransformer2DModel":
        block = model.transformer_blocks[0]
        shrink_attention_heads(block.attn1, 1)
        shrink_mlp(block.ff.net[0].proj, block.ff.net[2], 16)
    elif name == "CLIPTextModel":
        mlp = getattr(model, "text_model", model).encoder.layers[0].mlp  # transformers 5 flattened it
        shrink_mlp(mlp.fc1, mlp.fc2, 20)
    else:
        raise ValueError(name)
