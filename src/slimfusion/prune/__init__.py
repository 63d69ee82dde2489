"""Structural pruning (channels, head dims) on Torch-Pruning's dependency graph: Diff-Pruning and its baselines."""

from slimfusion.prune.config import StructuralConfig
from slimfusion.prune.importance import METHODS
from slimfusion.prune.structural import prune

__all__ = ["METHODS", "StructuralConfig", "prune"]
