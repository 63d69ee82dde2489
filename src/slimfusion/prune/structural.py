"""`prune(model, StructuralConfig(...))`: local structural pruning on Torch-Pruning's dependency graph.

Torch-Pruning builds the dependency graph, groups coupled layers, scores channels and removes them. The loop that
decides *how many* channels each group loses is ours (about 30 lines) because slimfusion offers two documented
rounding rules, Torch-Pruning 1.6's and the Diff-Pruning paper's (Torch-Pruning 1.3's), and reports every width.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.models.families import example_inputs, family_of
from slimfusion.models.meta import get_meta, record_step
from slimfusion.prune.calibration import accumulate_gradients, calibration_inputs
from slimfusion.prune.config import DepthConfig, StructuralConfig
from slimfusion.prune.depth import prune_depth
from slimfusion.prune.fixups import sync_attributes
from slimfusion.prune.importance import METHODS

ROOT_TYPES = (nn.Conv2d, nn.Linear)


def kept_per_group(channels: int, groups: int, config: StructuralConfig) -> int:
    """How many channels of each of `groups` equal sub-groups survive (see docs/pruning.md).

    "torch-pruning": each sub-group of size s keeps int(s x (1 - ratio)): removes at least `ratio`, more at small s.
    "paper": removes (channels - int(channels x (1 - ratio))) // groups per sub-group: at most `ratio`.
    """
    size = channels // groups
    if config.compat == "paper":
        keep = size - (channels - int(channels * (1 - config.ratio))) // groups
    else:
        keep = int(size * (1 - config.ratio))
    keep = max(1, keep)
    if config.round_to:
        multiple = config.round_to // math.gcd(config.round_to, groups)  # keep x groups must divide by round_to
        keep = max(multiple, keep - keep % multiple) if keep >= multiple else keep
    return min(size, keep)


def _channel_groups(group, subgroups: dict[nn.Module, int], graph: tp.DependencyGraph) -> int:
    """Sub-groups that must stay equal: GroupNorm groups, attention heads, GEGLU halves among the coupled layers."""
    result = 1
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, nn.GroupNorm):
            result = math.lcm(result, module.num_groups)
        if module in subgroups and graph.is_out_channel_pruning_fn(dep.handler):
            result = math.lcm(result, subgroups[module])
    return result


def _widths(model: nn.Module) -> dict[str, int]:
    return {
        name: (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, ROOT_TYPES)
    }


def _group_sizes(model: nn.Module) -> dict[str, int]:
    return {n: m.num_channels // m.num_groups for n, m in model.named_modules() if isinstance(m, nn.GroupNorm)}


def _keep_group_sizes(model: nn.Module, before: dict[str, int], minimum: int) -> dict[str, list[int]]:
    """Merge GroupNorm groups that pruning left with fewer than `minimum` channels (capped at the original size).

    A group of one channel normalises that channel on its own: its per-channel offset (where a ResNet block adds
    the timestep embedding) is removed, and the pruned model cannot learn it back (docs/pruning.md, measured on
    builtin:digits-t2i). The group count drops to the largest divisor of the channels that keeps groups this large.
    Returns {name: [groups before, groups after]} of the norms changed.
    """
    changed = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.GroupNorm) or name not in before:
            continue
        channels, want = module.num_channels, min(minimum, before[name])
        if channels // module.num_groups >= want:
            continue
        groups = max(d for d in range(1, channels + 1) if channels % d == 0 and channels // d >= want)
        changed[name] = [module.num_groups, groups]
        module.num_groups = groups
    return changed


def _reinitialise(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()


def prune(
    model: nn.Module,
    config: StructuralConfig | DepthConfig,
    data: torch.Tensor | None = None,
    progress: bool = True,
    conditions: torch.Tensor | None = None,
) -> nn.Module:
    """Prune `model` in place and record what was done in its history.

    Args:
        model (`nn.Module`): a supported denoiser (see `slimfusion.models.families`).
        config (`StructuralConfig`): method, ratio, threshold, rounding.
        data (`torch.Tensor`, optional): calibration images [N, C, H, W] in [-1, 1]; required by taylor and
            diff-pruning.
        progress (`bool`, defaults to True): progress bar during gradient accumulation.
        conditions (`torch.Tensor`, optional): per-image conditioning of conditional models (text-encoder states
            [N, L, D] or class labels [N]). With `data`, one per image; without, the model's own samples for these
            conditions become the calibration data (cycled to `batch_size` x `calib_batches` images).

    Returns:
        The same model object, pruned.

    A `DepthConfig` instead removes whole layers / blocks (`slimfusion.prune.depth.prune_depth`).
    """
    if isinstance(config, DepthConfig):
        return prune_depth(model, config, data=data, conditions=conditions, progress=progress)
    family = family_of(model)
    if family.pruning is None:
        raise ConfigError(f"structural pruning does not support {type(model).__name__}")
    method = METHODS[config.method]
    start = time.perf_counter()
    params_before, macs_before = count_params(model), count_macs(model)
    widths_before, group_sizes = _widths(model), _group_sizes(model)
    torch.manual_seed(config.seed)
    calibration: dict[str, Any] = {}
    self_sampled = data is None and conditions is not None
    if method.gradients != "none":
        data, conditions = calibration_inputs(model, config, data, conditions, progress)
        threshold = config.threshold if method.gradients == "threshold" else 0.0
        calibration = accumulate_gradients(
            model, data, threshold, config.calib_batches, config.batch_size, config.seed, progress, conditions
        )
        calibration["self_sampled"] = self_sampled
    ignored, subgroups = family.pruning.ignored_layers(model), family.pruning.subgroups(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs(model, 1), verbose=False)
    importance = method.importance()
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
        scores = importance(group)
        if scores is None:
            continue
        groups = _channel_groups(group, subgroups, graph)
        size = len(scores) // groups
        keep = kept_per_group(len(scores), groups, config)
        if keep >= size:
            continue
        order = torch.argsort(scores.view(groups, size).sum(0).cpu())[: size - keep]
        idxs = torch.cat([order + g * size for g in range(groups)]).tolist()
        plans.append((group[0].dep.target.module, group[0].dep.handler, idxs))
    refused = 0
    for module, handler, idxs in plans:
        pruning_group = graph.get_pruning_group(module, handler, idxs)
        if graph.check_pruning_group(pruning_group):
            pruning_group.prune()
        else:  # Torch-Pruning judged it unsafe (it would empty a layer); counted, not hidden
            refused += 1
    sync_attributes(model)
    regrouped = _keep_group_sizes(model, group_sizes, config.min_group_channels)
    if method.reinit:
        _reinitialise(model)
    model.zero_grad(set_to_none=True)
    model.eval()
    widths_after = _widths(model)
    effect = {
        "params_before": params_before,
        "params_after": count_params(model),
        "macs_before": macs_before,
        "macs_after": count_macs(model),
        "timesteps_used": calibration.get("timesteps_used"),
        "calib_images": calibration.get("calib_images"),
        "calib_self_sampled": calibration.get("self_sampled"),
        "groups_refused": refused,
        "widths": {k: [widths_before[k], v] for k, v in widths_after.items() if widths_before.get(k) != v},
        "norm_groups": regrouped,
        "wall_s": round(time.perf_counter() - start, 2),
        "pruned_from": get_meta(model).get("source"),
    }
    record_step(model, "prune", config.model_dump(), effect)
    return model
