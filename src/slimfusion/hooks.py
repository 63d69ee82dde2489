"""Temporary hooks through diffusers' `HookRegistry`: named, removable, and visible to the other hooks on a module.

`tap(module, name, before=..., after=...)` registers one; `tapped([...])` registers several for a `with` block and
removes exactly those afterwards, whatever happens. `before(module, args, kwargs)` may return new (args, kwargs);
`after(module, output)` may return a new output. Hooks that must survive a `copy.deepcopy` of the model (the dtype
casts `quantize` installs for good) stay plain torch hooks: a registry's patched `forward` still calls the original
module's forward after a deep copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from diffusers.hooks import HookRegistry, ModelHook
from torch import nn

Before = Callable[[nn.Module, tuple, dict], tuple[tuple, dict] | None]
After = Callable[[nn.Module, Any], Any]


class _Tap(ModelHook):
    def __init__(self, before: Before | None, after: After | None):
        super().__init__()
        self.before, self.after = before, after

    def pre_forward(self, module, *args, **kwargs):
        if self.before is not None:
            changed = self.before(module, args, kwargs)
            if changed is not None:
                args, kwargs = changed
        return args, kwargs

    def post_forward(self, module, output):
        if self.after is None:
            return output
        changed = self.after(module, output)
        return output if changed is None else changed


def tap(module: nn.Module, name: str, before: Before | None = None, after: After | None = None) -> Callable[[], None]:
    """Register a named hook on `module`; returns the function that removes it."""
    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(_Tap(before, after), name)
    return lambda: registry.remove_hook(name, recurse=False)


@contextlib.contextmanager
def tapped(taps: Iterable[tuple[nn.Module, str, Before | None, After | None]]) -> Iterator[None]:
    """Register (module, name, before, after) hooks for the block; all of them are removed afterwards."""
    removers = []
    try:
        for module, name, before, after in taps:
            removers.append(tap(module, name, before, after))
        yield
    finally:
        for remove in reversed(removers):
            remove()
