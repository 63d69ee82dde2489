"""What every family entry is made of: the depth-pruning knowledge types, and reading a config's sample size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def sample_side(config) -> int:
    size = config.sample_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)


@dataclass(frozen=True)
class DepthUnit:
    """One removable piece of a model's depth.

    Args:
        name (`str`): how users name it (`--remove`): "transformer_blocks.3", "mid_block", or a UNet layer pair
            "down_blocks.1.1+up_blocks.1.0" (a down block's resnet (+ attention) layer and the up-block layer that
            consumes its skip connection: removing one without the other would leave a skip tensor unconsumed).
        layers (`tuple[str, ...]`): the module lists items removed, e.g. ("down_blocks.1.resnets.1",
            "down_blocks.1.attentions.1", ...), or ("mid_block",).
        bypass (`tuple[tuple[str, str, int], ...]`): per removed layer (first module, last module, channels of the
            hidden state it passes on when bypassed): what an identity bypass hooks.
        valid (`bool`): whether bypassing it keeps every shape (a layer that changes channel counts cannot go).
        stage (`str`, optional): the down block whose layer count it lowers (a stage keeps at least one layer).
        why (`str`): for an invalid unit, why it cannot go.
    """

    name: str
    layers: tuple[str, ...]
    bypass: tuple[tuple[str, str, int], ...]
    valid: bool
    stage: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Depth:
    """What depth pruning must know about a family.

    Args:
        units (`Callable`): model -> the `DepthUnit`s depth pruning may choose from.
        stages (`Callable`): model -> {stage: layers it has}; each stage must keep at least one.
        config_changes (`Callable`): model -> the diffusers config entries that say its (new) depth.
        layer_counts (`Callable`): model -> its depth as the history records it.
        named_unit (`Callable`, optional): (model, name) -> a unit users may name beyond `units` (a UNet's
            down / up layer pair of any index), raising `ValueError` / `IndexError` for an unknown name.
    """

    units: Callable[[nn.Module], list[DepthUnit]]
    stages: Callable[[nn.Module], dict[str, int]]
    config_changes: Callable[[nn.Module], dict]
    layer_counts: Callable[[nn.Module], dict]
    named_unit: Callable[[nn.Module, str], DepthUnit] | None = None
