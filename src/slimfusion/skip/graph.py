"""What skipping a block saves and what it implies: per-block MACs, who consumes whose output, cascaded reuse.

A block whose outputs feed only blocks that are reused at a step need not run at that step either; the consumer
relation is read from one traced forward (which block's input tensors are which block's output tensors), so no
family needs it written down.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable

import torch
import torch_pruning as tp
from torch import nn
from torch.utils._pytree import tree_leaves

from slimfusion.errors import ConfigError
from slimfusion.hooks import tapped
from slimfusion.models.families import example_inputs, family_name, family_of


def skip_units(model: nn.Module, fine: bool = False) -> list[str]:
    """Names of the blocks a plan may reuse (top-level blocks, plus DeepCache's branches when `fine`)."""
    units = family_of(model).skip_units
    if units is None:
        raise ConfigError(f"block skipping does not support {family_name(model)}")
    return units(model, fine)


def top_level(units: Iterable[str]) -> list[str]:
    """Units not nested inside another unit of the list."""
    units = list(units)
    return [u for u in units if not any(u.startswith(f"{o}.") for o in units if o != u)]


@torch.no_grad()
@torch.no_grad()
def leaf_macs_per_call(model: nn.Module) -> dict[nn.Module, float]:
    """Batch-1 MACs of one call of each leaf layer. Torch-Pruning sums a layer's calls within a forward; a layer
    called twice (DiT's first timestep embedder also feeds the output norm) is divided by its calls here."""
    with contextlib.redirect_stdout(io.StringIO()):  # Torch-Pruning prints warnings to stdout
        _, _, per_module, _ = tp.utils.count_ops_and_params(model, example_inputs(model, 1), layer_wise=True)
    leaves = [m for m, v in per_module.items() if v and not any(True for _ in m.children())]
    calls = dict.fromkeys(leaves, 0)

    def count(module, _args, _kwargs):
        calls[module] += 1

    with tapped((m, "slimfusion_count_calls", count, None) for m in leaves):
        model(**example_inputs(model, 1))
    return {m: int(per_module[m]) / max(calls[m], 1) for m in leaves}


@torch.no_grad()
def unit_macs(model: nn.Module, units: list[str]) -> tuple[dict[str, int], int]:
    """(MACs a unit's own forward spends, MACs of the whole model) for one forward at batch 1, counted as
    `count_macs` counts. A layer call counts for the units running when it is called (a block and its nested
    fine units alike): a layer of one unit that the model also calls from outside it (DiT's output norm reads
    block 0's embedder) still runs when that unit is reused, so those calls are not credited to the unit."""
    per_call = leaf_macs_per_call(model)
    modules = {u: model.get_submodule(u) for u in units}
    spent = dict.fromkeys(units, 0.0)
    running: list[str] = []
    total = 0.0

    def leaf(module, _args, _kwargs):
        nonlocal total
        total += per_call[module]
        for unit in set(running):  # every unit running now: a fine unit's layers count for its block too
            spent[unit] += per_call[module]

    def enter(name):
        return lambda _m, _a, _k: running.append(name) and None

    def leave(_module, _output):
        running.pop()

    taps = [(m, "slimfusion_unit_leaf", leaf, None) for m in per_call]
    taps += [(m, "slimfusion_unit_scope", enter(u), leave) for u, m in modules.items()]
    with tapped(taps):
        model(**example_inputs(model, 1))
    return {u: int(round(v)) for u, v in spent.items()}, int(round(total))


@torch.no_grad()
def consumers(model: nn.Module, units: list[str]) -> dict[str, set[str] | None]:
    """For each top-level unit: the units that read its outputs, or None when some output leaves the units
    (is read by the model's own code, e.g. the last up block's output feeds the output convolution)."""
    units = top_level(units)
    modules = {u: model.get_submodule(u) for u in units}
    produced: dict[int, str] = {}
    read: dict[str, set[int]] = {u: set() for u in units}
    keep_alive: list[torch.Tensor] = []

    def on_input(name):
        def hook(_module, args, kwargs):
            read[name] |= {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}

        return hook

    def on_output(name):
        def hook(_module, output):
            for t in tree_leaves(output):
                if isinstance(t, torch.Tensor):
                    produced.setdefault(id(t), name)
                    keep_alive.append(t)

        return hook

    with tapped((m, "slimfusion_consumers", on_input(n), on_output(n)) for n, m in modules.items()):
        model(**example_inputs(model, 1))
    result: dict[str, set[str] | None] = {u: set() for u in units}
    read_anywhere = set().union(*read.values())
    for tensor_id, producer in produced.items():
        if tensor_id not in read_anywhere:
            result[producer] = None
    for reader, ids in read.items():
        for tensor_id in ids:
            producer = produced.get(tensor_id)
            if producer is not None and producer != reader and result[producer] is not None:
                result[producer].add(reader)
    return result


def cascade(reused: set[str], graph: dict[str, set[str] | None]) -> set[str]:
    """`reused` plus every block all of whose consumers are reused (repeated until nothing changes)."""
    reused = set(reused)
    changed = True
    while changed:
        changed = False
        for block, readers in graph.items():
            if block not in reused and readers and readers <= reused:
                reused.add(block)
                changed = True
    return reused


def kept_macs_ratio(reuse: list[list[str]], macs: dict[str, int], total: int) -> float:
    """Kept share of the MACs of a sampling run in which step s skips the blocks `reuse[s]`."""
    saved = sum(macs[u] for step in reuse for u in top_level(step))
    return 1.0 - saved / (total * len(reuse))
