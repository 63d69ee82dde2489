"""What a model costs: parameters, MACs, bytes on disk, CPU latency."""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimfusion.models.families import example_inputs
from slimfusion.models.transforms import replace_module


def count_params(model: nn.Module) -> int:
    """Number of parameters (every element of every parameter tensor, int8-quantized weights included)."""
    quantized = sum(b.numel() for name, b in model.named_buffers() if name.endswith("qweight"))
    return sum(p.numel() for p in model.parameters()) + quantized


@torch.no_grad()
def count_macs(model: nn.Module, batch: int = 1) -> int:
    """MACs of one forward as Torch-Pruning counts them (convs, linears, norms; not attention's matmuls).

    This is the figure the Diff-Pruning paper reports (6.1G for the CIFAR-10 DDPM).
    """
    with contextlib.redirect_stdout(io.StringIO()):  # it prints warnings to stdout, which `info --json` owns
        macs, _ = tp.utils.count_ops_and_params(float_view(model), example_inputs(model, batch))
    return int(macs)


@torch.no_grad()
def count_macs_all(model: nn.Module, batch: int = 1) -> int:
    """MACs of every matmul and convolution in one forward, attention included (torch's FLOP counter / 2)."""
    with FlopCounterMode(display=False) as counter:
        model(**example_inputs(model, batch))
    return int(counter.get_total_flops() // 2)


def weights_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers in memory."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def folder_bytes(path: str | Path) -> int:
    """Bytes of the safetensors files of a saved model folder (0 when none)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*.safetensors"))


@torch.no_grad()
def latency_runs(model: nn.Module, batch: int = 1, repeats: int = 10, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of `repeats` forwards at `batch`, after `warmup` untimed ones."""
    inputs = example_inputs(model, batch)
    for _ in range(warmup):
        model(**inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(**inputs)
        times.append(time.perf_counter() - start)
    return times


def cost_summary(model: nn.Module, batch: int = 1) -> dict[str, Any]:
    """params, macs, macs_all and in-memory weight bytes of one forward at `batch`."""
    return {
        "params": count_params(model),
        "macs": count_macs(model, batch),
        "macs_all": count_macs_all(model, batch),
        "weights_bytes": weights_bytes(model),
    }


@torch.no_grad()
def interleaved_latency(models: dict[str, nn.Module], batch: int = 1, repeats: int = 10) -> dict[str, float]:
    """Median forward seconds of several models measured in alternation, so machine noise hits them alike.

    Ratios of these medians are the only latency comparison slimfusion reports (never two separate runs).
    """
    inputs = {name: example_inputs(model, batch) for name, model in models.items()}
    for name, model in models.items():  # warm-up
        model(**inputs[name])
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(**inputs[name])
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def float_view(model: nn.Module) -> nn.Module:
    """`model` itself, or a copy with every layer that has a float form (`as_float`, e.g. int8 weights) in that
    form: MAC counters know only nn.Linear / nn.Conv2d."""
    names = [n for n, m in model.named_modules() if hasattr(m, "as_float")]
    if not names:
        return model
    view = copy.deepcopy(model)
    for name in names:
        replace_module(view, name, view.get_submodule(name).as_float())
    return view
