"""Depth pruning: remove whole layers (BK-SDM) or transformer blocks (TinyFusion) instead of thinning them.

Removing a layer also removes its fixed per-layer overheads, which width pruning keeps (on a CPU, width pruning of
the digits DDPM buys 1.22x for 1.77x fewer MACs). Candidates come from the family table (`DepthUnit`s): the UNet's
mid block and its down / up layer pairs, a DiT's transformer blocks. Two ways to choose:

- "greedy": bypass each candidate alone (forward hooks make it an identity, which equals removing it) and measure
  the rise of the calibration loss (the DDPM loss on fixed noise at fixed timesteps); remove the candidate with the
  least rise per MACs saved; repeat until the MACs target is met.
- "learned" (in the spirit of TinyFusion): a gate per candidate, hard 0 / 1 in the forward with a straight-through
  sigmoid gradient, optimised for a short run on the distillation loss against the unpruned model plus a penalty on
  the expected kept MACs above the target; candidates are then removed in order of their gate logits.

The hand-written parts are the bypass hooks and the selection loop: no library removes diffusers blocks.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from slimfusion.diffusion import noise_scheduler, target_of
from slimfusion.errors import ConfigError
from slimfusion.hooks import tapped
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.models.families import Depth, DepthUnit, example_inputs, family_name, family_of
from slimfusion.models.io import FAMILIES, build, replay_removals
from slimfusion.models.meta import get_meta, record_step
from slimfusion.progress import progress_bar
from slimfusion.prune.calibration import calibration_inputs
from slimfusion.prune.config import DepthConfig
from slimfusion.skip.graph import unit_macs


def depth_knowledge(model: nn.Module) -> Depth:
    depth = family_of(model).depth
    if depth is None:
        raise ConfigError(f"depth pruning does not support {type(model).__name__}")
    return depth


def depth_units(model: nn.Module) -> list[DepthUnit]:
    return depth_knowledge(model).units(model)


# ------------------------------------------------------------------------------------------------------ bypass
@contextlib.contextmanager
def gated(model: nn.Module, gates: dict[str, torch.Tensor]) -> Iterator[None]:
    """While active, each unit's layers compute g x layer(h) + (1 - g) x h, h the hidden state entering the layer.

    g = 0 bypasses the unit (exactly what removing it gives); a differentiable g is the learned variant's mask.
    """
    by_name = {u.name: u for u in depth_units(model)}
    taps = []
    for name, gate in gates.items():
        for i, (first, last, channels) in enumerate(by_name[name].bypass):
            state: dict = {}

            def grab(_module, args, kwargs, state=state, channels=channels):
                hidden = args[0] if args else kwargs["hidden_states"]
                state["h"] = hidden[:, :channels] if hidden.ndim == 4 else hidden

            def mix(_module, output, state=state, gate=gate):
                if isinstance(output, tuple):
                    return (gate * output[0] + (1 - gate) * state["h"], *output[1:])
                if hasattr(output, "sample"):
                    output.sample = gate * output.sample + (1 - gate) * state["h"]
                    return output
                return gate * output + (1 - gate) * state["h"]

            taps.append((model.get_submodule(first), f"slimfusion_bypass_in:{name}:{i}", grab, None))
            taps.append((model.get_submodule(last), f"slimfusion_bypass_out:{name}:{i}", None, mix))
    with tapped(taps):
        yield


# ----------------------------------------------------------------------------------------------------- removal
def remove_units(model: nn.Module, names: list[str]) -> list[str]:
    """Remove the named units from `model` in place; returns the module-list items removed (original indices).

    Names are those of `depth_units` or any pair "down_blocks.B.J+up_blocks.U.K" (B's mirror U); a removal that
    would empty a stage, or leave shapes that do not fit, is refused before the model is changed.
    """
    units = {u.name: u for u in depth_units(model)}
    layers: list[str] = []
    for name in names:
        unit = units.get(name) or _pair_unit(model, name)
        if name in units and not unit.valid:
            raise ConfigError(f"{name} cannot be removed: {unit.why}")
        layers += unit.layers
    trial = copy.deepcopy(model)
    replay_removals(trial, [layers])
    _check_stages(trial, names)
    try:
        with torch.no_grad():
            trial(**example_inputs(trial, 1))
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"removing {', '.join(names)} leaves shapes that do not fit ({reason})") from exc
    replay_removals(model, [layers])
    _update_config(model)
    return layers


def _pair_unit(model: nn.Module, name: str) -> DepthUnit:
    known = ", ".join(u.name for u in depth_units(model))
    named = depth_knowledge(model).named_unit
    try:
        if named is None:
            raise ValueError(name)
        return named(model, name)
    except (ValueError, IndexError, AttributeError) as exc:
        raise ConfigError(f"the model has no depth unit {name!r}; it has: {known}") from exc


def _check_stages(model: nn.Module, names: list[str]) -> None:
    for stage, layers in depth_knowledge(model).stages(model).items():
        if layers == 0:
            raise ConfigError(f"removing {', '.join(names)} would remove every layer of {stage}")


def _update_config(model: nn.Module) -> None:
    """Say the new depth in the diffusers config where it can (num_layers, layers_per_block, mid_block_type)."""
    changed = depth_knowledge(model).config_changes(model)
    # diffusers' from_config ignores values listed as defaulted at construction: unlist what changed
    defaulted = model.config.get("_use_default_values")
    if defaulted:
        changed["_use_default_values"] = [k for k in defaulted if k not in changed]
    model.register_to_config(**changed)


# ----------------------------------------------------------------------------------------------------- scoring
class _Calibration:
    """Fixed (noisy input, t, condition, noise) batches: every candidate is judged on the same ones."""

    def __init__(self, model, data, conditions, config: DepthConfig):
        scheduler = noise_scheduler(model)
        gen = torch.Generator().manual_seed(config.seed)
        total = scheduler.config.num_train_timesteps
        self.batches = []
        for t in torch.linspace(0, total - 1, config.timesteps).long():
            idx = torch.randint(0, len(data), (config.batch_size,), generator=gen)
            x0 = data[idx]
            noise = torch.randn(x0.shape, generator=gen)
            ts = t.expand(len(x0))
            cond = None if conditions is None else conditions[idx]
            self.batches.append((scheduler.add_noise(x0, noise, ts), ts, cond, target_of(scheduler, x0, noise, ts)))
        self.denoise = family_of(model).denoise

    def loss(self, model: nn.Module, target: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Mean DDPM loss over the batches (or distance to `target` predictions, for distillation)."""
        losses = []
        for i, (noisy, t, cond, noise) in enumerate(self.batches):
            pred = self.denoise(model, noisy, t, cond)
            losses.append(F.mse_loss(pred, noise if target is None else target[i]))
        return torch.stack(losses).mean()


def _unit_macs(model: nn.Module, units: list[DepthUnit]) -> tuple[dict[str, int], int]:
    layer_macs, total = unit_macs(model, sorted({layer for u in units for layer in u.layers}))
    return {u.name: sum(layer_macs[layer] for layer in u.layers) for u in units}, total


def _choose(units, chosen, score, macs, kept, target_macs, tolerance, stage_sizes) -> DepthUnit | None:
    """The unit with the least score per MACs saved that does not undershoot the window or empty a stage."""
    taken = {u.name for u in chosen}
    per_stage: dict[str, int] = {}
    for u in chosen:
        per_stage[u.stage] = per_stage.get(u.stage, 0) + 1
    fits = [
        u
        for u in units
        if u.name not in taken
        and kept - macs[u.name] >= target_macs - tolerance
        and (u.stage is None or per_stage.get(u.stage, 0) + 1 < stage_sizes[u.stage])
    ]
    return min(fits, key=lambda u: score[u.name] / max(macs[u.name], 1), default=None)


def select(model, config: DepthConfig, target_macs: int, score_fn, progress: bool, label: str) -> list[DepthUnit]:
    """Choose units one by one (bypassing the chosen ones) until the kept MACs reach the target window.

    `score_fn(model, units, chosen)` -> {unit name: cost} for the still available units, with `chosen` bypassed.
    """
    units = [u for u in depth_units(model) if u.valid]
    macs, total = _unit_macs(model, units)
    tolerance = config.tolerance * total
    stage_sizes = depth_knowledge(model).stages(model)
    chosen: list[DepthUnit] = []
    kept = total
    with progress_bar(progress) as bar:
        task = bar.add_task(f"depth: {label}", total=None, status="")
        while kept > target_macs + tolerance:
            score = score_fn(model, units, chosen)
            unit = _choose(units, chosen, score, macs, kept, target_macs, tolerance, stage_sizes)
            if unit is None:
                break
            chosen.append(unit)
            kept -= macs[unit.name]
            bar.update(task, status=f"{unit.name}: kept {kept / total:.3f}")
    return chosen


def greedy_scores(calibration: _Calibration):
    """Cost of a unit: the rise of the calibration loss when it is bypassed too (the chosen ones stay bypassed)."""

    @torch.no_grad()
    def score(model, units, chosen):
        off = {u.name: torch.tensor(0.0) for u in chosen}
        with gated(model, off):
            base = calibration.loss(model).item()
        out = {}
        for unit in units:
            if unit in chosen:
                continue
            with gated(model, off | {unit.name: torch.tensor(0.0)}):
                out[unit.name] = max(calibration.loss(model).item() - base, 0.0)
        return out

    return score


def learn_gates(model, calibration: _Calibration, config: DepthConfig, target_macs: int, progress: bool) -> dict:
    """Learned gate logits per unit: hard 0 / 1 gates forward, sigmoid gradient back (straight-through), trained
    on the distillation loss to the unpruned model plus a penalty on expected kept MACs above the target."""
    units = [u for u in depth_units(model) if u.valid]
    macs, total = _unit_macs(model, units)
    with torch.no_grad():
        targets = [calibration.denoise(model, n, t, c) for n, t, c, _ in calibration.batches]
    logits = torch.full((len(units),), config.init_logit, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=config.learn_lr)
    shares = torch.tensor([macs[u.name] / total for u in units])
    model.requires_grad_(False)
    log = []
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task("depth: learning gates", total=config.learn_steps, status="")
            for step in range(config.learn_steps):
                soft = torch.sigmoid(logits)
                gates = (soft > 0.5).float() + soft - soft.detach()
                with gated(model, {u.name: gates[i] for i, u in enumerate(units)}):
                    distill = calibration.loss(model, targets)
                kept = 1 - (shares * (1 - soft)).sum()
                loss = distill + config.macs_weight * F.relu(kept - target_macs / total)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(task, advance=1, status=f"distill {distill.item():.4f} kept {kept.item():.3f}")
                if step % 10 == 0 or step == config.learn_steps - 1:
                    log.append({"step": step, "distill": round(distill.item(), 6), "kept": round(kept.item(), 4)})
    finally:
        model.requires_grad_(True)
    return {"logits": {u.name: round(logits[i].item(), 4) for i, u in enumerate(units)}, "log": log}


# ------------------------------------------------------------------------------------------------------- entry
def prune_depth(
    model: nn.Module,
    config: DepthConfig,
    data: torch.Tensor | None = None,
    conditions: torch.Tensor | None = None,
    progress: bool = True,
) -> nn.Module:
    """Remove whole layers / blocks of `model` in place and record the step in its history.

    Args:
        model (`nn.Module`): a UNet2DModel, UNet2DConditionModel or DiT.
        config (`DepthConfig`): `remove` (explicit unit names) or `target_macs` with `method` greedy | learned.
        data (`torch.Tensor`, optional): calibration images / latents for greedy and learned.
        conditions (`torch.Tensor`, optional): per-image conditioning; without `data`, the model's own samples for
            these conditions are the calibration set (as structural pruning does).
        progress (`bool`, defaults to True): progress bars.
    """
    start = time.perf_counter()
    params_before, macs_before = count_params(model), count_macs(model)
    layers_before = depth_knowledge(model).layer_counts(model)
    extra: dict = {}
    if config.remove:
        names = list(config.remove)
    else:
        data, conditions = calibration_inputs(model, config, data, conditions, progress)
        calibration = _Calibration(model, data, conditions, config)
        target = config.target_macs * macs_before
        if config.method == "greedy":
            chosen = select(model, config, target, greedy_scores(calibration), progress, "greedy")
        else:
            extra = learn_gates(model, calibration, config, target, progress)
            chosen = select(model, config, target, _by_logits(extra["logits"]), progress, "learned")
        names = [u.name for u in chosen]
        if not names:
            raise ConfigError(f"no layer can go without undershooting --target-macs {config.target_macs}")
    removed = remove_units(model, names)
    meta = get_meta(model)
    if _config_expresses(model):
        meta.pop("removed_modules", None)  # the config alone rebuilds the tree
    else:  # replayed in order on load, after building the config's tree
        meta["removed_modules"] = [*meta.get("removed_modules", []), removed]
    model.eval()
    effect = {
        "params_before": params_before,
        "params_after": count_params(model),
        "macs_before": macs_before,
        "macs_after": count_macs(model),
        "removed": names,
        "layers": {"before": layers_before, "after": depth_knowledge(model).layer_counts(model)},
        "diffusers_config": "removed_modules" not in meta,
        "wall_s": round(time.perf_counter() - start, 2),
        "pruned_from": meta.get("source"),
    } | {k: v for k, v in extra.items() if k in ("logits", "log")}
    if config.target_macs is not None:
        kept = effect["macs_after"] / macs_before
        effect["target_met"] = config.target_macs - config.tolerance <= kept <= config.target_macs + config.tolerance
    record_step(model, "prune-depth", config.model_dump(), effect)
    return model


def _by_logits(logits: dict[str, float]):
    """Learned order: the lowest gate probability first (cost per MACs = the probability)."""

    def score(model, units, chosen):
        macs, _ = _unit_macs(model, units)
        return {u.name: torch.sigmoid(torch.tensor(logits[u.name])).item() * macs[u.name] for u in units}

    return score


def _config_expresses(model: nn.Module) -> bool:
    """Whether a fresh build of the (updated) config has exactly the model's module tree."""
    with torch.device("meta"):
        fresh = build(FAMILIES[family_name(model)], family_of(model).config_dict(model))
    return [n for n, _ in fresh.named_modules()] == [n for n, _ in model.named_modules()]
