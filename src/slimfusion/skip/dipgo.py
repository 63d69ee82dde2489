"""DiP-GO (NeurIPS 2024): learn which block may reuse its previous-step output at which step, in a few gradient steps.

A pruner network turns T x N learnable queries (one per step and block) through one transformer encoder layer into a
keep / reuse decision each; the decisions are hard one-hot gates whose gradients pass straight through their soft
probabilities. The gated sampler (every block mixed with its previous output by its gate, the "backup connection")
must end at the full model's image from the same noise (SSIM, L1 or L2), while a MACs-weighted sparsity term pushes
gates to "reuse" until the kept-MACs target is met. Afterwards a threshold on the keep scores is bisected until the
plan's kept MACs are within `tolerance` of the target. Written here because no library implements it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from slimfusion.diffusion import Predict, run_chain
from slimfusion.metrics.consistency import ssim_index
from slimfusion.progress import progress_bar
from slimfusion.skip.graph import cascade, kept_macs_ratio
from slimfusion.skip.hooks import SkipState, gate_mix, hooked

Predictors = Callable[[torch.Tensor], Predict]  # calibration-noise indices -> the batch's (guided) prediction


LOGIT_BOUND = 6.0


class PrunerNet(nn.Module):
    """T x N queries -> one encoder layer -> a 2-way (keep, reuse) head of its own per (step, block).

    Heads of their own, as the reference's block-wise heads: a shared head's bias would collect the sparsity push of
    every gate and flip them all at once. Heads start at zero weights and bias (keep 1, reuse 0): keep prob 0.73.
    """

    def __init__(self, steps: int, blocks: int, dim: int = 64, heads: int = 4):
        super().__init__()
        self.steps, self.blocks = steps, blocks
        self.queries = nn.Parameter(torch.randn(steps * blocks, dim) * 0.02)
        self.encoder = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True)
        self.weight = nn.Parameter(torch.zeros(steps * blocks, dim, 2))
        self.bias = nn.Parameter(torch.tensor([1.0, 0.0]).repeat(steps * blocks, 1))

    def forward(self) -> torch.Tensor:
        """Keep probabilities [T, N]."""
        # / sqrt(dim): unit-norm features, so the head weights move the logits no faster than their biases
        features = self.encoder(self.queries.unsqueeze(0))[0] / math.sqrt(self.queries.shape[1])
        logits = torch.einsum("gd,gdk->gk", features, self.weight) + self.bias
        logits = LOGIT_BOUND * torch.tanh(logits / LOGIT_BOUND)  # never so saturated that a gate cannot come back
        return logits.softmax(-1)[:, 0].view(self.steps, self.blocks)


def with_cascades(reused: list[set[str]], graph: dict) -> list[list[str]]:
    """Per step: the reused blocks plus those their reuse makes unnecessary, sorted (the plan's lists)."""
    return [sorted(cascade(step, graph)) if step else [] for step in reused]


def hard_gates(keep: torch.Tensor) -> torch.Tensor:
    """1 (keep) / 0 (reuse) with straight-through gradients; step 0 always keeps (nothing to reuse yet)."""
    hard = (keep > 0.5).to(keep.dtype)
    gates = hard + keep - keep.detach()
    return torch.cat([torch.ones_like(gates[:1]), gates[1:]])


def consistency_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "l2":
        return F.mse_loss(pred, target)

    side = min(pred.shape[-2:])
    kernel = min(11, side - (1 - side % 2))  # the largest odd window that fits
    return 1 - ssim_index(pred, target, kernel)


def gated_chain(
    scheduler,
    x: torch.Tensor,
    predict: Predict,
    state: SkipState,
    use_checkpoint: bool = True,
) -> torch.Tensor:
    """The sampler's final sample with the gates mixing every block (hooks installed by the caller).

    Each step is one checkpointed function of (x, the previous outputs): its state is rebuilt from its inputs, so
    recomputation in the backward pass is exact and memory stays flat in the step count.
    """
    previous: dict = {}

    def around(one, x: torch.Tensor, i: int) -> torch.Tensor:
        nonlocal previous

        def step(x, previous):
            state.step, state.cache = i, dict(previous)
            return one(x), dict(state.cache)

        x, previous = checkpoint(step, x, previous, use_reentrant=False) if use_checkpoint else step(x, previous)
        return x

    return run_chain(scheduler, x, predict, around=around)


def plan_from_scores(
    keep: torch.Tensor,
    names: list[str],
    graph: dict,
    macs: dict[str, int],
    total: int,
    target: float,
    tolerance: float,
) -> tuple[list[list[str]], float, float]:
    """Reuse the lowest-scoring (step, block) gates, the threshold bisected until the kept MACs are within
    `tolerance` of `target`.

    The bisection runs over the gates in score order (ties broken by step, then block), so equal scores cannot stall
    it. When one coarse gate jumps across the whole window (reusing the last block reuses everything its inputs
    needed), the later gates that still fit are added in score order. Returns (per-step reused blocks with their
    cascades, kept MACs ratio, score threshold).
    """
    steps = keep.shape[0]
    order = sorted(((float(keep[s, b]), s, b) for s in range(1, steps) for b in range(len(names))), key=lambda g: g[:3])

    def reuse_of(gates) -> list[list[str]]:
        chosen: list[set[str]] = [set() for _ in range(steps)]
        for _, s, b in gates:
            chosen[s].add(names[b])
        return with_cascades(chosen, graph)

    def ratio_of(gates) -> float:
        return kept_macs_ratio(reuse_of(gates), macs, total)

    low, high = 0, len(order)  # smallest count of reused gates whose kept ratio is <= target + tolerance
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if ratio_of(order[:mid]) > target + tolerance else (low, mid)
    chosen = order[:low]
    if ratio_of(chosen) < target - tolerance and low > 0:
        chosen = order[: low - 1]
        for gate in order[low:]:
            if ratio_of([*chosen, gate]) >= target - tolerance:
                chosen.append(gate)
            if ratio_of(chosen) <= target + tolerance:
                break
    threshold = chosen[-1][0] if chosen else 0.0
    return reuse_of(chosen), ratio_of(chosen), threshold


def train_pruner(
    model: nn.Module,
    scheduler,
    noise: torch.Tensor,
    predictors: Predictors,
    names: list[str],
    weights: torch.Tensor,
    graph: dict,
    macs: dict[str, int],
    total: int,
    config,
    progress: bool = True,
) -> tuple[torch.Tensor, list[dict]]:
    """Optimise the pruner; returns the final keep probabilities [T, N] and a loss log every 10 iterations."""
    torch.manual_seed(config.seed)
    net = PrunerNet(len(scheduler.timesteps), len(names)).to(noise.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: 0.5 * (1 + math.cos(math.pi * it / config.iterations))
    )
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        order = torch.arange(len(noise))
        targets = torch.cat(
            [
                run_chain(scheduler, chunk, predictors(idx))
                for chunk, idx in zip(noise.split(config.batch_size), order.split(config.batch_size), strict=True)
            ]
        )
    index = {n: i for i, n in enumerate(names)}
    state = SkipState(len(scheduler.timesteps), lambda step, name: True)
    gen = torch.Generator().manual_seed(config.seed)
    log: list[dict] = []
    with hooked(model, names, state, count_steps=False), progress_bar(progress) as bar:
        task = bar.add_task("dipgo", total=config.iterations, status="")
        for it in range(config.iterations):
            pick = torch.randperm(len(noise), generator=gen)[: config.batch_size]
            keep = net()
            gates = hard_gates(keep)
            state.mix = gate_mix(gates, index, state)
            final = gated_chain(scheduler, noise[pick], predictors(pick), state, config.checkpoint)
            consistency = consistency_loss(config.loss, final, targets[pick])
            reused = [{n for n, g in zip(names, row.tolist(), strict=True) if g < 0.5} for row in gates.detach()]
            kept = kept_macs_ratio(with_cascades(reused, graph), macs, total)
            sparsity = (gates[1:] * weights).sum()  # summed, so a gate's push does not shrink with the steps
            loss = consistency + (config.sparsity_weight * sparsity if kept > config.target else 0.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            state.mix = None
            if it % 10 == 0 or it == config.iterations - 1:
                log.append({"iteration": it, "consistency": round(consistency.item(), 5), "kept": round(kept, 4)})
            bar.update(task, advance=1, status=f"loss {consistency.item():.4f} kept {kept:.3f}")
    with torch.no_grad():
        return net(), log
