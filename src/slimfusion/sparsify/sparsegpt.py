"""SparseGPT (Frantar & Alistarh, 2023): prune a layer column block by column block and update the surviving
weights with the inverse Hessian of its inputs, so the layer's output on the calibration inputs changes least.

Follows the reference algorithm (adaptive mask per column block by w^2 / [H^-1]_jj^2, one OBS update per pruned
column, lazy block updates). Difference, stated: the Hessians come from one pass of the dense model rather than
layer by layer after earlier layers were pruned, because a diffusion UNet's inputs come from whole sampling runs.
"""

from __future__ import annotations

import torch

from slimfusion.sparsify.masks import PrunableLayer, as_matrix


@torch.no_grad()
def sparsegpt_prune(
    layer: PrunableLayer,
    hessian: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> torch.Tensor:
    """Prune `layer.weight` in place to `sparsity` (or N:M); returns the keep-mask [out, in]."""
    weight = as_matrix(layer.weight.data).clone().float()
    rows, cols = weight.shape
    h = hessian.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    weight[:, dead] = 0
    h += percdamp * torch.mean(torch.diag(h)) * torch.eye(cols)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = weight[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        pruned1 = torch.zeros_like(w1, dtype=torch.bool)
        if nm is None:
            saliency = w1**2 / torch.diag(hinv1).reshape(1, -1) ** 2
            count = round(saliency.numel() * sparsity)
            if count:
                pruned1.view(-1)[torch.argsort(saliency.flatten(), stable=True)[:count]] = True
        for i in range(i2 - i1):
            w = w1[:, i]
            d = hinv1[i, i]
            if nm is not None and i % nm[1] == 0 and i + nm[1] <= i2 - i1 and i1 + i + nm[1] <= cols:
                group = w1[:, i : i + nm[1]] ** 2 / torch.diag(hinv1)[i : i + nm[1]].reshape(1, -1) ** 2
                lowest = torch.topk(group, nm[0], dim=1, largest=False).indices
                pruned1.scatter_(1, i + lowest, True)
            q = w.clone()
            q[pruned1[:, i]] = 0
            q1[:, i] = q
            err = (w - q) / d
            w1[:, i:] -= err.unsqueeze(1).matmul(hinv1[i, i:].unsqueeze(0))
            err1[:, i] = err
        weight[:, i1:i2] = q1
        weight[:, i2:] -= err1.matmul(hinv[i1:i2, i2:])
        keep[:, i1:i2] = ~pruned1
    layer.weight.data.copy_(weight.reshape(layer.weight.shape).to(layer.weight.dtype))
    return keep
