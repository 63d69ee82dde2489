"""Building a model from its config: sized on the meta device first, so an absurd config.json cannot exhaust memory."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from slimfusion.errors import NotAModelError

MAX_PARAMS = int(float(os.environ.get("SLIMFUSION_MAX_PARAMS", "2e10")))  # bigger configs are refused (see build)


def build(family: Any, config: dict[str, Any]) -> nn.Module:
    """Instantiate a family's class (`family`: a `models.families.Family`) from a config dict, freshly initialised.

    The config is first built on the meta device (no memory) and refused if it has more than `MAX_PARAMS` parameters
    (environment SLIMFUSION_MAX_PARAMS, default 2e10), so a config.json with absurd widths cannot exhaust memory.
    """
    with torch.device("meta"):
        probe = _construct(family, config)
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_PARAMS:
        raise NotAModelError(
            f"config describes a {_name(family)} of {count:.3g} parameters, above the limit {MAX_PARAMS:.3g}"
            " (raise SLIMFUSION_MAX_PARAMS if that is really meant)"
        )
    return _construct(family, config)


def _construct(family: Any, config: dict[str, Any]) -> nn.Module:
    cls = family.load_class()
    try:
        if family.library == "transformers":
            return cls(cls.config_class.from_dict(config))
        return cls.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # diffusers' / transformers' bad-config errors
        raise NotAModelError(f"config.json does not describe a valid {_name(family)}: {exc}") from exc


def _name(family: Any) -> str:
    return family.class_path.rsplit(":", 1)[-1]
