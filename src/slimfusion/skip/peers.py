"""diffusers' own caches (FirstBlockCache, PyramidAttentionBroadcast) as peers of skip plans, and the kept MACs of any
of them measured by counting the layers that really ran.

Dynamic caches decide at run time what to skip, so their cost cannot be read off a plan: `MacsMeter` counts every call
of every layer that has MACs during sampling and weighs it by that layer's MACs (the same per-layer count as
`unit_macs`). Pipelines without diffusers' `cache_context` (DiTPipeline, StableDiffusionPipeline) get the context
those hooks need from `diffusers_cache`, one per denoiser call, with the call's timestep.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from diffusers.hooks import (
    FirstBlockCacheConfig,
    HookRegistry,
    PyramidAttentionBroadcastConfig,
    apply_first_block_cache,
    apply_pyramid_attention_broadcast,
)
from diffusers.hooks.hooks import CacheContext, _set_cache_context
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.hooks import tap
from slimfusion.models.families import example_inputs
from slimfusion.skip.graph import leaf_macs_per_call

PEERS = ("first-block-cache", "pyramid-attention-broadcast")


class MacsMeter:
    """`with MacsMeter(model) as meter:` ... `meter.ratio()`: kept share of the MACs over the denoiser calls made.

    A layer that did not run (its block was reused, its attention broadcast) counts nothing; one that ran counts its
    batch-1 MACs once per call, so the ratio is independent of the batch size. Make the meter before a cache or plan
    is applied: its reference is one plain forward.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.macs = leaf_macs_per_call(model)
        self.calls: Counter = Counter()
        self.forwards = 0
        self._removers: list = []
        with self, torch.no_grad():  # the reference: what one plain forward spends
            model(**example_inputs(model, 1))
        self.per_forward = self._spent()
        self.calls, self.forwards = Counter(), 0

    def __enter__(self) -> MacsMeter:
        def count(module, _args, _kwargs):
            self.calls[module] += 1

        def step(_module, _args, _kwargs):
            self.forwards += 1

        self._removers = [tap(m, "slimfusion_macs_meter", before=count) for m in self.macs]
        self._removers.append(tap(self.model, "slimfusion_macs_meter_forward", before=step))
        return self

    def __exit__(self, *exc: Any) -> None:
        for remove in reversed(self._removers):
            remove()

    def ratio(self) -> float:
        if not self.forwards:
            raise ConfigError("the MACs meter saw no denoiser call")
        return self._spent() / (self.per_forward * self.forwards)

    def _spent(self) -> int:
        return sum(self.macs[m] * n for m, n in self.calls.items())


@contextlib.contextmanager
def diffusers_cache(model: nn.Module, method: str, **settings: Any) -> Iterator[None]:
    """Apply one of diffusers' caches to a transformer denoiser for the block, then remove it.

    Args:
        method (`str`): "first-block-cache" (settings: `threshold`) or "pyramid-attention-broadcast" (settings:
            `skip_range`, the attention is computed every N-th call, and `timestep_range`, where it may be skipped).
    """
    before = {m: set(m._diffusers_hook.hooks) for m in model.modules() if hasattr(m, "_diffusers_hook")}

    state = {"t": 1000.0}  # the current call's timestep, for PAB's callback
    if method == "first-block-cache":
        apply_first_block_cache(model, FirstBlockCacheConfig(threshold=settings["threshold"]))
    elif method == "pyramid-attention-broadcast":
        config = PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=settings["skip_range"],
            spatial_attention_timestep_skip_range=settings.get("timestep_range", (100, 800)),
            current_timestep_callback=lambda: state["t"],
        )
        apply_pyramid_attention_broadcast(model, config)
    else:
        raise ConfigError(f"unknown diffusers cache {method!r}; choose from {', '.join(PEERS)}")

    registry = HookRegistry.check_if_exists_or_initialize(model)
    registry.invalidate_child_registries_cache()  # the cache just added registries below the model
    last = [float("inf")]

    def set_context(_module, args, kwargs):  # what a pipeline's `with transformer.cache_context("cond")` would do
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        t = float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t)
        if t >= last[0]:  # a timestep not below the last call's starts a new sampling run: nothing cached applies
            registry.reset_stateful_hooks(recurse=True)
        last[0] = state["t"] = t
        _set_cache_context(model, CacheContext(name="cond", timestep=t))

    remove = tap(model, "slimfusion_cache_context", before=set_context)
    try:
        yield
    finally:
        remove()
        _set_cache_context(model, None)
        for module in model.modules():  # only the hooks this block added (a skip plan's may be around it)
            if hasattr(module, "_diffusers_hook"):
                for name in set(module._diffusers_hook.hooks) - before.get(module, set()):
                    module._diffusers_hook.remove_hook(name, recurse=False)
        registry.invalidate_child_registries_cache()
