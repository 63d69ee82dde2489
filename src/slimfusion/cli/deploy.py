"""Verbs that change how a model's numbers are stored and run: lowrank, quantize, export (derived options)."""

from __future__ import annotations

from pathlib import Path

from slimfusion.cli.common import refuse_existing
from slimfusion.cli.derived import SAVED, derived_command
from slimfusion.export import ExportConfig, check_exportable, export_openvino
from slimfusion.models.meta import history
from slimfusion.progress import console
from slimfusion.subject import Subject
from slimfusion.verbs.compress import LowRankOptions, QuantizeOptions, run_lowrank, run_quantize


def _lowrank(model: str, options: LowRankOptions, out: Path, overwrite: bool) -> None:
    refuse_existing(out, overwrite)
    subject = run_lowrank(Subject.load(model), options)
    subject.save(out, overwrite=overwrite)
    denoiser = subject.denoiser
    effect = history(denoiser)[-1]["effect"]
    console.print(
        f"factorised {effect['layers_factorised']} layers: params {effect['params_before'] / 1e6:.3f} M ->"
        f" {effect['params_after'] / 1e6:.3f} M, MACs {effect['macs_before'] / 1e6:.1f} M ->"
        f" {effect['macs_after'] / 1e6:.1f} M ({effect['macs_after'] / effect['macs_before']:.0%}); saved {out}"
    )


def _quantize(model: str, options: QuantizeOptions, out: Path, overwrite: bool) -> None:
    refuse_existing(out, overwrite)
    subject = run_quantize(Subject.load(model), options)
    subject.save(out, overwrite=overwrite)
    denoiser = subject.denoiser
    effect = history(denoiser)[-1]["effect"]
    console.print(
        f"{options.scheme}{' + compile' if options.compile else ''}: weights"
        f" {effect['weight_bytes_before'] / 1e6:.2f} MB -> {effect['weight_bytes'] / 1e6:.2f} MB; saved {out}"
    )


derived_command(
    "lowrank",
    LowRankOptions,
    _lowrank,
    SAVED,
    doc="Truncated-SVD factorisation of Linear and Conv2d layers into two thinner ones, where that saves MACs.\n\n"
    "Recover quality afterwards with `slimfusion finetune` as after pruning. MODEL may be a pipeline folder (its"
    " denoiser is factorised).",
)
derived_command(
    "quantize",
    QuantizeOptions,
    _quantize,
    SAVED,
    doc="Half precision (bf16 pays on AVX-512 BF16 CPUs), int8 weights (for size), and/or torch.compile at load.\n\n"
    "MODEL may be a pipeline folder (its denoiser is quantized; the rest stays float32).",
)


def _export(model: str, options: ExportConfig, out: Path, overwrite: bool) -> None:
    refuse_existing(out, overwrite)
    denoiser = Subject.load(model).denoiser
    check_exportable(denoiser)  # before a model is converted: the refusal costs nothing
    export_openvino(denoiser, options, out, overwrite=overwrite)
    kind = "int8 (NNCF, calibrated on its own sampling)" if options.int8 else options.precision
    kind += f", the rest in {options.precision}" if options.int8 else ""
    console.print(f"OpenVINO {kind} at batch {options.batch}; saved {out} (sample, evaluate and compare load it)")


derived_command(
    "export",
    ExportConfig,
    _export,
    SAVED,
    doc="The denoiser as an OpenVINO IR (static batch), optionally int8 in weights and activations.\n\n"
    "Needs the openvino extra (pip install 'slimfusion[openvino]'). `slimfusion sample / evaluate / compare` take the"
    " exported folder and run it on the OpenVINO runtime, so its quality is measured by the same verdicts.",
)
