"""`sparsify(model_or_pipeline, SparsityConfig(...))`: unstructured and N:M sparsity of a pipeline's components.

Implements the study *Efficient Pruning of Text-to-Image Models* (pruning Stable Diffusion 2): the text encoder and
the denoiser are pruned separately, by magnitude (per weight matrix or under one global threshold), Wanda or
SparseGPT, with uniform or OWL layer sparsities, or N:M. Every component's achieved sparsity, per layer and overall,
is measured and recorded in its history; `finetune` keeps the zeros of the layers listed there.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.families import family_name
from slimfusion.models.families.pipeline import (
    COMPONENTS,
    TEXT_ENCODER,
    denoiser_component,
    is_class_pipeline,
    is_text_pipeline,
)
from slimfusion.models.meta import get_meta, history, record_step
from slimfusion.pipelines import is_pipeline_object
from slimfusion.progress import progress_bar
from slimfusion.sparsify import calibration, masks
from slimfusion.sparsify.config import SparsityConfig
from slimfusion.sparsify.sparsegpt import sparsegpt_prune

__all__ = ["SparsityConfig", "keep_masks", "sparsify", "sparsity_of"]


def sparsify(subject, config: SparsityConfig, progress: bool = True):
    """Zero weights of `subject` in place and record what was done in each changed component's history.

    Args:
        subject (`nn.Module` or pipeline): a diffusers pipeline (see `slimfusion.load_pipeline`) whose
            `text_encoder` / `unet` / `transformer` are sparsified as `config` says, or a lone model (its own and
            only component; Wanda / SparseGPT calibrate an unconditional denoiser on its own sampling runs).
        config (`SparsityConfig`): method, sparsity, component(s), scope, allocation, calibration.
        progress (`bool`, defaults to True): progress bar over the layers.

    Returns:
        `subject`, sparsified.
    """
    components, conditions = _components(subject, config)
    for name, (model, fraction) in components.items():
        _sparsify_component(subject, name, model, fraction, config, conditions, progress)
    return subject


def _components(subject, config: SparsityConfig) -> tuple[dict[str, tuple[nn.Module, float]], dict]:
    """name -> (model, sparsity) to sparsify, and the calibration conditions; refuses what cannot be done."""
    if is_pipeline_object(subject):
        available = [n for n in COMPONENTS if isinstance(getattr(subject, n, None), nn.Module)]
        denoiser = denoiser_component(available)
        try:
            wanted = config.targets(available, denoiser)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        conditions = _conditions(subject, config, wanted)
        return {name: (getattr(subject, name), fraction) for name, fraction in wanted.items()}, conditions
    if config.sparsities is not None and len(config.sparsities) > 1:
        raise ConfigError("per-component sparsities need a pipeline; a lone model is one component")
    fraction = next(iter(config.sparsities.values())) if config.sparsities else config.targets(["x"], "x")["x"]
    if config.needs_calibration:
        if family_name(subject) != "UNet2DModel":
            raise ConfigError(
                f"{config.method}{' + owl' if config.allocation == 'owl' else ''} calibrates on the model's inputs: "
                f"pass the pipeline folder of this {family_name(subject)} (prompts, text encoder, VAE)"
            )
    return {"model": (subject, fraction)}, {}


def _conditions(pipe, config: SparsityConfig, wanted: dict[str, float]) -> dict:
    """Prompts / class labels of the calibration runs, checked against the pipeline before any work."""
    if not config.needs_calibration:
        return {}
    if is_text_pipeline(pipe):
        if config.calib_prompts is None:
            raise ConfigError(
                f"{config.method} on a text-to-image pipeline needs calibration prompts (--calib-prompts)"
            )
        return {"prompts": config.calib_prompts}
    if is_class_pipeline(pipe) and denoiser_component(wanted):
        if config.calib_class_labels is None:
            raise ConfigError(f"{config.method} on a class-conditional pipeline needs --calib-class-labels, e.g. 0,1,2")
        return {"class_labels": config.calib_class_labels}
    return {}


def _statistics(subject, name: str, model: nn.Module, layers: dict, config: SparsityConfig, conditions: dict) -> dict:
    """Per-layer input statistics for the component `name` (with Hessians for SparseGPT: every layer's at once)."""
    if not config.needs_calibration:
        return {}
    if name == TEXT_ENCODER:
        run = calibration.text_encoder_run(subject, config.calib_prompts)
    else:
        run = calibration.sampling_run(subject, config, conditions)
    return calibration.collect(layers, run, hessian=config.method == "sparsegpt")


def _sparsify_component(
    subject, name: str, model: nn.Module, fraction: float, config: SparsityConfig, conditions: dict, progress: bool
) -> None:
    start = time.perf_counter()
    layers = masks.prunable_layers(model, config.layers)
    if not layers:
        raise ConfigError(f"{name}: no {config.layers} layers to sparsify")
    stats = _statistics(subject, name, model, layers, config, conditions)
    uncalibrated = [n for n in layers if config.needs_calibration and n not in stats]
    layers = {n: layer for n, layer in layers.items() if n not in uncalibrated}  # never ran: nothing to measure
    score_of = {n: masks.scores(layer, stats[n].sq_norms if n in stats else None) for n, layer in layers.items()}
    targets = {n: fraction for n in layers}
    if config.allocation == "owl":
        targets = masks.owl_sparsities(score_of, fraction, config.owl_lambda, config.owl_m)
    keeps = masks.global_masks(score_of, fraction) if config.scope == "global" else {}
    per_layer: dict[str, float] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(f"sparsify {name}", total=len(layers), status="")
        for layer_name, layer in layers.items():
            keep = keeps.get(layer_name)
            if config.method == "sparsegpt":
                nm = config.nm_pair
                block = config.blocksize - config.blocksize % nm[1] if nm else config.blocksize
                hess = stats[layer_name].mean_hessian()
                keep = sparsegpt_prune(layer, hess, targets[layer_name], nm, max(block, 1), config.percdamp)
            elif keep is None:
                keep = _mask(config, score_of[layer_name], targets[layer_name])
            with torch.no_grad():
                matrix = masks.as_matrix(layer.weight.data)
                matrix.mul_(keep.to(matrix.dtype))
            per_layer[layer_name] = round(_zero_share(layer.weight), 6)
            bar.update(task, advance=1)
    _record(model, name, config, fraction, layers, per_layer, uncalibrated, time.perf_counter() - start)


def _mask(config: SparsityConfig, score: torch.Tensor, sparsity: float) -> torch.Tensor:
    if config.nm is not None:
        return masks.nm_mask(score, *config.nm_pair)
    if config.method == "wanda":
        return masks.row_mask(score, sparsity)
    return masks.layer_mask(score, sparsity)


def _zero_share(weight: torch.Tensor) -> float:
    return (weight == 0).float().mean().item()


def _record(model, name, config, fraction, layers, per_layer, uncalibrated, wall_s) -> None:
    sizes = {n: layers[n].weight.numel() for n in per_layer}
    total = sum(sizes.values())
    zeros = sum(per_layer[n] * sizes[n] for n in per_layer)
    all_params = sum(p.numel() for p in model.parameters())
    effect: dict[str, Any] = {
        "component": name,
        "target": fraction,
        "sparsity": round(zeros / total, 6),  # over the sparsified layers' weights
        "sparsity_of_params": round(zeros / all_params, 6),  # over all parameters of the component
        "zeroed": int(round(zeros)),
        "layers": per_layer,
        "uncalibrated_layers": uncalibrated,
        "wall_s": round(wall_s, 2),
        "sparsified_from": get_meta(model).get("source"),
    }
    record_step(model, "sparsify", config.model_dump(), effect)


def sparse_layers(model: nn.Module) -> list[str]:
    """Names of the layers that `sparsify` steps in the model's history zeroed weights in."""
    names: list[str] = []
    for step in history(model):
        if step.get("step") == "sparsify":
            names += [n for n in step["effect"].get("layers", {}) if n not in names]
    return names


def keep_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """parameter name -> keep-mask (weight != 0) of every sparsified layer, for training that must keep the zeros."""
    modules = dict(model.named_modules())
    return {f"{n}.weight": modules[n].weight.detach() != 0 for n in sparse_layers(model) if n in modules}


def sparsity_of(model: nn.Module) -> dict[str, float] | None:
    """Measured sparsity of a model's sparsified layers now (None when it was never sparsified)."""
    masks_now = keep_masks(model)
    if not masks_now:
        return None
    zeros = sum(int((~m).sum()) for m in masks_now.values())
    size = sum(m.numel() for m in masks_now.values())
    params = sum(p.numel() for p in model.parameters())
    return {"sparsity": round(zeros / size, 6), "sparsity_of_params": round(zeros / params, 6)}
