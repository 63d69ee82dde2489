"""Which weights to zero: layer selection, scores and masks (per layer, per row, global, N:M) and OWL's allocation.

Written here rather than taken from a library: torch.nn.utils.prune has magnitude masks only (no per-row Wanda
comparison, N:M or OWL), and the reference implementations of Wanda / OWL are research scripts for LLaMA, not
importable packages. Every mask is True where a weight is kept.
"""

from __future__ import annotations

import torch
from torch import nn

PrunableLayer = nn.Linear | nn.Conv2d


def prunable_layers(model: nn.Module, layers: str) -> dict[str, PrunableLayer]:
    """name -> layer of every nn.Linear (and, for "linear+conv", every ungrouped nn.Conv2d) in `model`."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or (
            layers == "linear+conv" and isinstance(module, nn.Conv2d) and module.groups == 1
        ):
            found[name] = module
    return found


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A weight as the [out, in] matrix its layer multiplies by (convolutions: [out, in x kh x kw], a view)."""
    return weight.reshape(weight.shape[0], -1)


def scores(layer: PrunableLayer, input_norms: torch.Tensor | None) -> torch.Tensor:
    """|W| (magnitude), or Wanda's |W_ij| x ||X_j||_2 when the squared input column norms are given; [out, in]."""
    magnitude = as_matrix(layer.weight.detach()).abs().float()
    if input_norms is None:
        return magnitude
    return magnitude * input_norms.float().sqrt().unsqueeze(0)


def _lowest(values: torch.Tensor, count: int) -> torch.Tensor:
    """A keep-mask of `values`' shape with its `count` lowest entries False (stable: ties go to the earlier)."""
    keep = torch.ones(values.numel(), dtype=torch.bool)
    if count > 0:
        keep[torch.argsort(values.flatten(), stable=True)[:count]] = False
    return keep.view(values.shape)


def layer_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the `sparsity` share of the whole matrix with the lowest scores (magnitude pruning per layer)."""
    return _lowest(score, round(sparsity * score.numel()))


def row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the lowest scores of every output row (Wanda's comparison group).

    The layer's count round(sparsity x numel) is spread over the rows (some rows one more than others), so a layer
    hits its sparsity within one weight even when a row is too short to.
    """
    rows, cols = score.shape
    total = round(sparsity * score.numel())
    base, extra = divmod(total, rows)
    order = torch.argsort(score, dim=1, stable=True)
    counts = torch.full((rows,), base)
    counts[:extra] += 1
    ranks = torch.arange(cols).expand(rows, cols)
    keep = torch.ones_like(score, dtype=torch.bool)
    keep.scatter_(1, order, ranks >= counts.unsqueeze(1))
    return keep


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M: the N lowest scores of every M consecutive inputs of a row are zeroed; a ragged tail stays dense."""
    rows, cols = score.shape
    full = cols - cols % m
    keep = torch.ones_like(score, dtype=torch.bool)
    groups = score[:, :full].reshape(rows, full // m, m)
    lowest = torch.topk(groups, n, dim=2, largest=False).indices
    grouped = torch.ones_like(groups, dtype=torch.bool)
    grouped.scatter_(2, lowest, False)
    keep[:, :full] = grouped.reshape(rows, full)
    return keep


def global_masks(score_of: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One threshold across all layers: the `sparsity` share of all weights with the lowest scores is zeroed."""
    flat = torch.cat([s.flatten() for s in score_of.values()])
    count = round(sparsity * flat.numel())
    keep = _lowest(flat, count)
    out, start = {}, 0
    for name, score in score_of.items():
        out[name] = keep[start : start + score.numel()].view(score.shape)
        start += score.numel()
    return out


def owl_sparsities(
    score_of: dict[str, torch.Tensor], sparsity: float, lam: float, outlier_m: float
) -> dict[str, float]:
    """OWL (Outlier Weighed Layerwise sparsity): layers with more outliers keep more weights.

    A layer's outlier ratio is the share of its Wanda scores above `outlier_m` x their mean. The ratios are mapped
    linearly onto keep-ratios spanning 2 x `lam`, shifted so the size-weighted mean sparsity is the target (OWL's
    reference averages over equal-sized LLaMA layers; diffusion layers differ in size, so the mean is weighted).
    """
    names = list(score_of)
    ratios = torch.tensor([(s > outlier_m * s.mean()).float().mean().item() for s in score_of.values()])
    sizes = torch.tensor([float(score_of[n].numel()) for n in names])
    span = (ratios.max() - ratios.min()).item()
    keep = (ratios - ratios.min()) / span * 2 * lam if span > 0 else torch.zeros_like(ratios)
    keep = keep - (keep * sizes).sum() / sizes.sum() + (1 - sparsity)
    out = (1 - keep).clamp(0.0, 0.99)
    return {n: float(v) for n, v in zip(names, out.tolist(), strict=True)}


def achieved(keep: torch.Tensor) -> float:
    """The share of zeroed entries of a keep-mask."""
    return 1.0 - keep.float().mean().item()


def nm_groups_ok(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether every full group of M consecutive inputs of every row holds at least N zeros."""
    matrix = as_matrix(weight)
    full = matrix.shape[1] - matrix.shape[1] % m
    if full == 0:
        return True
    zeros = (matrix[:, :full].reshape(matrix.shape[0], -1, m) == 0).sum(2)
    return bool((zeros >= n).all())
