"""Applying a skip plan with diffusers' hook system: the model is never copied or edited.

One hook on the denoiser counts sampling steps (one step = one call of its top-level forward, classifier-free
guidance batched in, as diffusers' pipelines call it); one hook per block either runs the block and keeps its output,
or returns the output it kept at an earlier step. Removing the hooks restores the original forward functions.
A call whose timestep is not below the previous one starts a new sampling run (step 0, caches cleared).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from slimfusion.errors import ConfigError
from slimfusion.skip.gate import ChangeGate
from slimfusion.skip.plan import SkipPlan, check_plan

STEP_HOOK = "slimfusion_skip_step"
BLOCK_HOOK = "slimfusion_skip_block"


class SkipState:
    """What the hooks share during one sampling run: the step index, each block's kept output, call counts.

    `decide(step, block)` says whether the block runs; with `gates` set (DiP-GO training), every block runs and its
    output is mixed with its previous output by the gate value instead (see `GateMix`).
    """

    def __init__(self, steps: int, decide: Callable[[int, str], bool], order: int = 0):
        self.steps = steps
        self.decide = decide
        self.order = order  # TaylorSeer: a reused output is forecast from the last `order` + 1 computations
        self.step = -1
        self.last_t: float | None = None
        self.cache: dict[str, Any] = {}
        self.history: dict[str, list[tuple[int, Any]]] = {}
        self.calls: dict[str, int] = {}
        self.mix: Callable[[str, Any], Any] | None = None
        self.leading: str | None = None
        self.gate: Any | None = None  # adaptive caching's run-time decision (skip/gate.py), fed its leader's output

    # The bookkeeping below runs outside torch.compile (`torch.compiler.disable`): traced, Dynamo would guard on the
    # step counter (a Python int) and recompile the model at every sampling step until its recompile limit.
    @torch.compiler.disable
    def kept(self, name: str) -> Any | None:
        """The output `name` kept at an earlier step when the plan reuses it at this one, else None (then it runs)."""
        if self.gate is not None and self.gate.leads(self.step, name):
            self.leading = name  # runs; its output decides for the other reused blocks (`keep`)
        elif self.step > 0 and not self.decide(self.step, name) and name in self.cache:
            if self.order and len(self.history.get(name, ())) > 1:
                return forecast(self.history[name], self.step)
            return self.cache[name]
        self.calls[name] = self.calls.get(name, 0) + 1
        return None

    @torch.compiler.disable
    def keep(self, name: str, out: Any) -> Any:
        """Keep the output `name` just computed (mixed with its previous one under DiP-GO's gates) and return it."""
        if self.mix is not None:
            out = self.mix(name, out)
        if self.gate is not None and name == self.leading:
            self.gate.observe(self.step, out)
            self.leading = None
        self.cache[name] = out
        if self.order:
            self.history[name] = [*self.history.get(name, [])[-self.order :], (self.step, out)]
        return out

    @torch.compiler.disable
    def begin_step(self, timestep: Any) -> None:
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        if self.last_t is None or t >= self.last_t:
            self.step, self.cache, self.history = 0, {}, {}
        else:
            self.step += 1
        self.last_t = t
        if self.step >= self.steps:
            raise ConfigError(f"the sampler ran more than the skip plan's {self.steps} steps")


def forecast(history: list[tuple[int, Any]], step: int) -> Any:
    """A block's output at `step` extrapolated from its computations at earlier steps (TaylorSeer, ICCV 2025).

    TaylorSeer expands the output in a Taylor series whose derivatives are finite differences of the last K + 1
    full computations. Written here in Newton's form of the same differences (the Lagrange polynomial through those
    points, at their actual step indices): identical to TaylorSeer's at K = 1, and exact for any trajectory that is a
    polynomial of degree <= K at K >= 2, where the i! / N^i Taylor form is only approximate. Hand-written: diffusers'
    TaylorSeer hook targets transformer attention / MLP outputs, not a UNet block's (tuple) outputs.
    """
    points = [s for s, _ in history]
    weights = []
    for j, sj in enumerate(points):
        w = 1.0
        for m, sm in enumerate(points):
            if m != j:
                w *= (step - sm) / (sj - sm)
        weights.append(w)
    leaves = [tree_flatten(out)[0] for _, out in history]
    spec = tree_flatten(history[-1][1])[1]
    mixed = [
        sum(w * leaf[i] for w, leaf in zip(weights, leaves, strict=True))
        if isinstance(leaves[-1][i], torch.Tensor)
        else leaves[-1][i]
        for i in range(len(leaves[-1]))
    ]
    return tree_unflatten(mixed, spec)


class _StepHook(ModelHook):
    def __init__(self, state: SkipState):
        super().__init__()
        self.state = state

    def pre_forward(self, module, *args, **kwargs):
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if timestep is None:
            raise ConfigError("a skip plan needs the denoiser to be called with its timestep")
        self.state.begin_step(timestep)
        return args, kwargs


class _BlockHook(ModelHook):
    def __init__(self, name: str, state: SkipState):
        super().__init__()
        self.name, self.state = name, state

    def new_forward(self, module, *args, **kwargs):
        reused = self.state.kept(self.name)
        if reused is not None:
            return reused
        return self.state.keep(self.name, self.fn_ref.original_forward(*args, **kwargs))


@contextlib.contextmanager
def hooked(model: nn.Module, units: list[str], state: SkipState, count_steps: bool = True) -> Iterator[SkipState]:
    """Install the step hook (unless the caller sets `state.step` itself) and one block hook per unit."""
    root = HookRegistry.check_if_exists_or_initialize(model)
    blocks = {name: HookRegistry.check_if_exists_or_initialize(model.get_submodule(name)) for name in units}
    if STEP_HOOK in root.hooks or any(BLOCK_HOOK in r.hooks for r in blocks.values()):
        raise ConfigError("a skip plan is already applied to this model")
    if count_steps:
        root.register_hook(_StepHook(state), STEP_HOOK)
    for name, registry in blocks.items():
        registry.register_hook(_BlockHook(name, state), BLOCK_HOOK)
    try:
        with _recompile_budget_per_block(len(blocks)):
            yield state
    finally:
        for registry in blocks.values():
            registry.remove_hook(BLOCK_HOOK, recurse=False)
        if count_steps:
            root.remove_hook(STEP_HOOK, recurse=False)


def _recompile_budget_per_block(hooked_blocks: int) -> contextlib.AbstractContextManager:
    """Dynamo's recompile limit, scaled by the hooked blocks while they are hooked.

    Under torch.compile each hook is a graph break, and every hooked block resumes in the same code (diffusers' hook
    wrapper, `_BlockHook.new_forward`): Dynamo counts its limit (8 variants) per code object, not per block, so past
    ~8 hooked blocks it ran the rest eagerly. Each block gets the budget a function of its own would have.
    """
    config = torch._dynamo.config
    limit = config.recompile_limit * (hooked_blocks + 1)
    return config.patch(
        recompile_limit=limit, accumulated_recompile_limit=max(limit, config.accumulated_recompile_limit)
    )


@contextlib.contextmanager
def apply_plan(model: nn.Module, plan: SkipPlan) -> Iterator[SkipState]:
    """`with apply_plan(unet, plan):` every sampling run of `unet` (alone or inside a pipeline) follows the plan.

    Yields the `SkipState`, whose `calls` count how often each block the plan reuses (see `hooked_units`) really ran
    (an adaptive plan's `state.gate.decisions`: whether the deep part ran, step by step, over every run).
    """
    check_plan(plan, model)
    reuse = [plan.reused_at(s) for s in range(plan.steps)]
    order = int(plan.settings.get("order", 0)) if plan.method == "taylorseer" else 0
    if plan.method == "adaptive":  # the plan names what may be reused; its gate decides at each step
        state = adaptive_state(plan.steps, hooked_units(plan), float(plan.settings["threshold"]))
    else:
        state = SkipState(plan.steps, lambda step, name: name not in reuse[step], order)
    with hooked(model, hooked_units(plan), state):
        yield state


def adaptive_state(steps: int, reused: list[str], threshold: float) -> SkipState:
    """The hooks' state of an adaptive plan: a block of `reused` returns its kept output when the gate says so."""
    gate = ChangeGate(threshold)
    blocks = set(reused)
    state = SkipState(steps, lambda step, name: name not in blocks or gate.run)
    state.gate = gate
    return state


def hooked_units(plan: SkipPlan) -> list[str]:
    """The blocks that need a hook: those the plan reuses at some step where it does not reuse a block around them.

    A block the plan never reuses runs as it is, and one inside a reused block does not run at that step; every hook
    is a graph break under torch.compile, so fewer hooks leave larger compiled graphs (same samples).
    """
    needed: set[str] = set()
    for step in range(plan.steps):
        reused = plan.reused_at(step)
        needed |= {u for u in reused if not any(u.startswith(f"{outer}.") for outer in reused)}
    return [u for u in plan.units if u in needed]


def gate_mix(gates: torch.Tensor, index: dict[str, int], state: SkipState) -> Callable[[str, Any], Any]:
    """DiP-GO's backup connection: output_t = g x block(x_t) + (1 - g) x output_{t-1} for every tensor of a block's
    output, with `gates[step, block]` in {0, 1} carrying straight-through gradients; step 0 always computes."""

    def mix(name: str, out: Any) -> Any:
        step = state.step
        previous = state.cache.get(name)
        if step == 0 or previous is None:
            return out
        g = gates[step, index[name]]
        return tree_map(
            lambda new, old: g * new + (1 - g) * old if isinstance(new, torch.Tensor) else new, out, previous
        )

    return mix
