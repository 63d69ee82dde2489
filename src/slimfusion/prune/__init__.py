"""Structural pruning: width (channels, head dims) on Torch-Pruning's dependency graph, Diff-Pruning and its
baselines; depth (whole layers / blocks, `DepthConfig`). `prune(model, config)` takes either config."""

from slimfusion.prune.config import DepthConfig, StructuralConfig
from slimfusion.prune.importance import METHODS
from slimfusion.prune.structural import prune

__all__ = ["METHODS", "DepthConfig", "StructuralConfig", "prune"]
