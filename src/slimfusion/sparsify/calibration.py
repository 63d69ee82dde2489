"""Input statistics of the layers to sparsify, collected by forward pre-hooks while the model does its real work.

Wanda needs each layer's squared input column norms, SparseGPT the input Hessian X^T X (both over every token /
spatial position; convolutions see their unfolded input patches). The text encoder is run on the calibration
prompts; a denoiser is observed over every timestep of sampling runs, since its inputs change along the chain.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimfusion.hooks import tapped
from slimfusion.models.families.pipeline import embed
from slimfusion.sample import SampleConfig, sample
from slimfusion.sparsify.masks import PrunableLayer


def input_columns(layer: PrunableLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as [tokens, in] rows matching its weight matrix's columns."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # [B, C*kh*kw, L]
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return x.reshape(-1, x.shape[-1])


class InputStats:
    """Accumulates squared column norms (and optionally the Hessian) of one layer's inputs, in float64."""

    def __init__(self, layer: PrunableLayer, hessian: bool):
        columns = layer.weight[0].numel()
        self.layer = layer
        self.tokens = 0
        self.sq_norms = torch.zeros(columns, dtype=torch.float64)
        self.hessian = torch.zeros(columns, columns, dtype=torch.float64) if hessian else None

    def __call__(self, module: nn.Module, args: tuple) -> None:
        rows = input_columns(self.layer, args[0].detach()).to(torch.float64)
        self.tokens += rows.shape[0]
        self.sq_norms += (rows * rows).sum(0)
        if self.hessian is not None:
            self.hessian += rows.T @ rows

    def mean_hessian(self) -> torch.Tensor:
        """2 X^T X / tokens, as SparseGPT scales it (float32)."""
        return (2 * self.hessian / max(1, self.tokens)).float()


def _observer(stats: InputStats):
    return lambda module, args, kwargs: stats(module, args)


def collect(layers: dict[str, PrunableLayer], run: Callable[[], None], hessian: bool) -> dict[str, InputStats]:
    """Run `run()` with a statistics hook on every layer; the hooks are removed afterwards, whatever happens."""
    stats = {name: InputStats(layer, hessian) for name, layer in layers.items()}
    taps = [(layer, "slimfusion_input_stats", _observer(stats[name]), None) for name, layer in layers.items()]
    with tapped(taps), torch.no_grad():
        run()
    return {name: s for name, s in stats.items() if s.tokens}  # a layer that never ran has nothing to measure


def text_encoder_run(pipe, prompts: list[str]) -> Callable[[], None]:
    """Calibration run of a pipeline's text encoder: its own tokenizer on the prompts, as the pipeline encodes them."""

    def run() -> None:
        embed(pipe, prompts)

    return run


def sampling_run(subject, config, conditions: dict) -> Callable[[], None]:
    """Calibration run of a denoiser: `calib_samples` seeded DDIM runs (a pipeline's, with guidance and the given
    prompts / class labels, or an unconditional model's own sampling), so the hooks see every timestep's inputs."""

    def run() -> None:
        settings = SampleConfig(
            num=config.calib_samples,
            steps=config.calib_steps,
            seed=config.seed,
            guidance=config.guidance,
            batch_size=config.calib_samples,
            **conditions,
        )
        sample(subject, settings, progress=False)

    return run
