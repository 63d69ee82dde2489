"""Bring diffusers' bookkeeping attributes in line with the pruned tensors (Torch-Pruning changes only tensors)."""

from __future__ import annotations

from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import Downsample2D, Upsample2D
from torch import nn


def sync_attributes(model: nn.Module) -> None:
    """Update channel / width attributes that diffusers modules read in forward or on save."""
    for module in model.modules():
        if isinstance(module, (Upsample2D, Downsample2D)):
            conv = getattr(module, "conv", None)
            if isinstance(conv, nn.Conv2d):
                module.channels = conv.in_channels
                module.out_channels = conv.out_channels
        elif isinstance(module, Attention):
            module.inner_dim = module.to_q.out_features
            module.inner_kv_dim = module.to_k.out_features
            module.query_dim = module.to_q.in_features
            module.out_dim = module.to_out[0].out_features
