"""Verbs that change how a model's numbers are stored and run: lowrank, quantize."""

from __future__ import annotations

from typing import Annotated

import typer

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, OutOpt, make_config, refuse_existing, save_like_source
from slimfusion.models.io import load
from slimfusion.models.meta import history
from slimfusion.progress import console
from slimfusion.steps import Subject, option_defaults
from slimfusion.steps.compress import LowRankOptions, QuantizeOptions, run_lowrank, run_quantize

LOWRANK, QUANTIZE = option_defaults(LowRankOptions), option_defaults(QuantizeOptions)


@app.command("lowrank")
def lowrank_command(
    model: ModelArg,
    out: OutOpt,
    rank_ratio: Annotated[float | None, typer.Option(help="keep this share of each layer's rank, in (0, 1]")] = None,
    energy: Annotated[
        float | None, typer.Option(help="keep the singular values holding this share of the spectrum, in (0, 1]")
    ] = None,
    layers: Annotated[str, typer.Option(help="linear | linear+conv")] = LOWRANK["layers"],
    skip: Annotated[str | None, typer.Option(help="comma list of module-name prefixes to leave alone")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Truncated-SVD factorisation of Linear and Conv2d layers into two thinner ones, where that saves MACs.

    Recover quality afterwards with `slimfusion finetune` as after pruning. MODEL may be a pipeline folder (its
    denoiser is factorised).
    """
    options = make_config(LowRankOptions, rank_ratio=rank_ratio, energy=energy, layers=layers, skip=skip)
    refuse_existing(out, overwrite)
    denoiser = run_lowrank(Subject(load(model), model), options).denoiser
    save_like_source(model, denoiser, out, overwrite)
    effect = history(denoiser)[-1]["effect"]
    console.print(
        f"factorised {effect['layers_factorised']} layers: params {effect['params_before'] / 1e6:.3f} M ->"
        f" {effect['params_after'] / 1e6:.3f} M, MACs {effect['macs_before'] / 1e6:.1f} M ->"
        f" {effect['macs_after'] / 1e6:.1f} M ({effect['macs_after'] / effect['macs_before']:.0%}); saved {out}"
    )


@app.command("quantize")
def quantize_command(
    model: ModelArg,
    out: OutOpt,
    scheme: Annotated[str, typer.Option(help="bf16 | fp16 | int8-weight | none")] = QUANTIZE["scheme"],
    compile: Annotated[bool, typer.Option(help="torch.compile the model whenever it is loaded")] = False,
    layers: Annotated[str, typer.Option(help="int8-weight: linear | linear+conv")] = QUANTIZE["layers"],
    skip: Annotated[str | None, typer.Option(help="int8-weight: comma list of module-name prefixes kept float")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Half precision (bf16 pays on AVX-512 BF16 CPUs), int8 weights (for size), and/or torch.compile at load.

    MODEL may be a pipeline folder (its denoiser is quantized; the rest stays float32).
    """
    options = make_config(QuantizeOptions, scheme=scheme, compile=compile, layers=layers, skip=skip)
    refuse_existing(out, overwrite)
    denoiser = run_quantize(Subject(load(model), model), options).denoiser
    save_like_source(model, denoiser, out, overwrite)
    effect = history(denoiser)[-1]["effect"]
    console.print(
        f"{scheme}{' + compile' if compile else ''}: weights {effect['weight_bytes_before'] / 1e6:.2f} MB ->"
        f" {effect['weight_bytes'] / 1e6:.2f} MB; saved {out}"
    )
