"""`slimfusion export --format openvino`: a denoiser as an OpenVINO IR, optionally int8 (NNCF post-training
quantization of weights and activations, calibrated on the model's own sampling trajectory).

Why OpenVINO: on CPUs it is the engine people ship diffusion models with (optimum-intel's pipelines); eager PyTorch
has no fast int8 there (slimfusion's int8-weight is for size). The IR has static shapes (`batch` x the model's
sample shape): the runtime then plans every kernel once. What runs: an unconditional UNet2DModel, dense, pruned,
sparse, depth-pruned, low-rank or step-distilled (its sampler travels in `openvino.json`); a skip plan runs as PyTorch
hooks and cannot, so a model that carries one is refused (export it with the plan dropped, see docs/deploy.md).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from slimfusion.errors import ConfigError, OutputError
from slimfusion.hooks import tapped
from slimfusion.models.families import family_name, family_of
from slimfusion.models.meta import get_meta
from slimfusion.models.openvino import cpu_has_bf16, openvino_runtime, write_folder
from slimfusion.models.transforms import transforms_of
from slimfusion.models.writing import atomic_folder
from slimfusion.sample import SampleConfig, sample
from slimfusion.version import __version__


class ExportConfig(BaseModel):
    """Settings of one export.

    Args:
        format (`str`, defaults to "openvino"): the engine; OpenVINO is the one there is.
        batch (`int`, defaults to 64): the IR's static batch; sampling pads a smaller last batch.
        int8 (`bool`, defaults to False): NNCF post-training int8 of weights and activations.
        int8_scope (`str`, defaults to "recommended"): int8: "recommended" keeps the family's sensitive modules in
            float (a UNet's time path, first and last convolutions) under NNCF's transformer scheme (SmoothQuant,
            int8 at the matrix products and convolutions), as optimum-intel does for diffusion UNets; "everything"
            is NNCF's default CNN scheme over the whole graph (ablation: far worse images, deploy_cpu.md).
        precision (`str`, defaults to "float32"): the runtime's precision for what is not int8: "float32" (samples
            torch's images up to rounding), or "bf16" (only on CPUs with bf16 arithmetic, e.g. AVX-512 BF16 / AMX;
            OpenVINO would pick it there by itself, so float32 is asked for explicitly).
        calib_num (`int`, defaults to 64): int8: images whose sampling trajectories give the calibration inputs
            (rounded up to whole batches).
        calib_steps (`int`, defaults to 25): int8: DDIM steps of each calibration trajectory (every step's
            denoiser input is one calibration item).
        seed (`int`, defaults to 0): seed of the calibration trajectories.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    format: Literal["openvino"] = Field("openvino", description="the engine: openvino")
    batch: int = Field(64, ge=1, description="static batch of the exported model")
    int8: bool = Field(False, description="NNCF post-training int8 of weights and activations")
    int8_scope: Literal["recommended", "everything"] = Field(
        "recommended", description="int8: recommended (time path, first / last convolutions in float) or everything"
    )
    precision: Literal["float32", "bf16"] = Field(
        "float32", description="float32, or bf16 (CPUs with bf16): precision of what is not int8"
    )
    calib_num: int = Field(64, ge=1, description="int8: images whose sampling trajectories calibrate it")
    calib_steps: int = Field(25, ge=1, description="int8: DDIM steps of each calibration trajectory")
    seed: int = Field(0, ge=0, description="seed of the calibration trajectories")


class _Prediction(nn.Module):
    """The denoiser as a plain (sample, timestep) -> noise function, the signature the IR gets."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.model(sample, timestep).sample


def check_exportable(model: nn.Module) -> None:
    """One-line refusals for what the IR cannot hold, before anything is converted or written."""
    family = family_name(model)
    if family != "UNet2DModel":
        raise ConfigError(f"OpenVINO export takes an unconditional UNet2DModel, not {family} (pipelines: not yet)")
    if get_meta(model).get("skip_plan"):
        raise ConfigError("the model carries a skip plan, which runs as PyTorch hooks: export it without the plan")
    schemes = {t.get("scheme") for t in transforms_of(model) if t["kind"] == "quantize"} - {"none"}
    if schemes:
        raise ConfigError(
            f"export the float32 model, not one quantized in PyTorch ({', '.join(sorted(schemes))}): OpenVINO picks"
            " its own precision (int8 with --int8)"
        )


def calibration_inputs(model: nn.Module, config: ExportConfig) -> list[list]:
    """The denoiser's inputs (sample, timestep) at every step of seeded DDIM trajectories, as numpy, batch-sized."""
    seen: list[list] = []

    def keep(module, args, kwargs):
        x, t = args[0], args[1]
        if len(x) == config.batch:
            t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(len(x))
            seen.append([x.detach().float().numpy().copy(), t.numpy().copy()])

    num = -(-config.calib_num // config.batch) * config.batch
    settings = SampleConfig(num=num, steps=config.calib_steps, seed=config.seed, batch_size=config.batch, no_plan=True)
    with torch.no_grad(), tapped([(model, "slimfusion.export.calibration", keep, None)]):
        sample(model, settings, progress=False)
    return seen


def export_openvino(model: nn.Module, config: ExportConfig, out: str | Path, overwrite: bool = False) -> Path:
    """Write `model` as an OpenVINO IR into `out` (built beside it, moved into place complete: an existing `out`
    is replaced only with `overwrite`, and only once the export succeeded); returns `out`."""
    check_exportable(model)
    ov = openvino_runtime()
    if config.precision == "bf16" and not cpu_has_bf16():
        raise ConfigError("--precision bf16: this CPU has no bf16 arithmetic (OpenVINO would emulate it, slowly)")
    target = Path(out)
    if target.exists() and not overwrite:
        raise OutputError(f"{target} already exists")
    model = model.eval()
    side = model.config.sample_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    example = (torch.randn(config.batch, model.config.in_channels, side, side), torch.full((config.batch,), 500.0))
    # diffusers' shape asserts are constants at the static shapes traced here: their TracerWarnings say nothing
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        ir = ov.convert_model(_Prediction(model), example_input=example, input=[tuple(e.shape) for e in example])
    if config.int8:
        kept = family_of(model).int8_float if config.int8_scope == "recommended" else None
        ir = _int8(ir, calibration_inputs(model, config), kept)
    meta = copy.deepcopy(get_meta(model))
    meta.setdefault("history", []).append({"step": "export", "config": config.model_dump(), "version": __version__})
    with atomic_folder(target) as tmp:
        tmp.mkdir(parents=True)
        settings = {
            "batch": config.batch,
            "int8": config.int8,
            "precision": config.precision,
            "openvino": ov.__version__,
        }
        write_folder(tmp, ir, dict(model.config), meta, settings)
    return target


def _int8(ir, items: list[list], kept: tuple[str, ...] | None):
    """NNCF post-training int8 (weights and activations) of the IR, its ranges from `items`; `kept`: the modules
    left in float under the transformer scheme, or None for NNCF's default scheme everywhere."""
    try:
        import nncf  # lazy: part of the optional openvino extra
    except ImportError as exc:
        raise ConfigError("int8 export needs NNCF: pip install 'slimfusion[openvino]'") from exc
    settings = {"subset_size": len(items), "preset": nncf.QuantizationPreset.MIXED}
    if kept is not None:  # the IR's op names carry the torch module path: "__module.model.conv_in/aten::..."
        patterns = [rf".*\.{name}[./].*" for name in kept]
        scope = nncf.IgnoredScope(patterns=patterns, validate=False)  # a family's name a model lacks: nothing kept
        settings |= {"model_type": nncf.ModelType.TRANSFORMER, "ignored_scope": scope}
    return nncf.quantize(ir, nncf.Dataset(items), **settings)
