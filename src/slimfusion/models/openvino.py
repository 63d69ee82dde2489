"""An exported OpenVINO denoiser: the IR files plus `openvino.json`, loaded as a module the sampling runtime calls.

The folder holds `denoiser.xml` / `denoiser.bin` (static shapes: `batch` x the model's sample shape) and
`openvino.json` (the source model's diffusers config, its slimfusion metadata - history, scheduler, a student's
sampler - and the export settings: batch, int8, the runtime precision of the rest). `OpenVINODenoiser` answers like
a `UNet2DModel` (`config`, `forward(sample, timestep).sample`), so `sample`, `evaluate`, `compare` and `optimize`
measure it with the same verdicts; a smaller last batch is padded to the static batch and cut back.
openvino is an optional extra, imported only here.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import FrozenDict
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from slimfusion.errors import ConfigError, CorruptFileError
from slimfusion.models.meta import get_meta, set_meta

RECORD = "openvino.json"
KEPT_META = ("history", "scheduler", "sampler")  # what an exported folder keeps of the model's record
IR = "denoiser.xml"
FORMAT_VERSION = 1


def openvino_runtime():
    """The openvino module, or a one-line error naming the extra that installs it."""
    try:
        import openvino  # lazy: an optional extra of ~100 MB, needed only by exported folders
    except ImportError as exc:
        raise ConfigError("OpenVINO is not installed: pip install 'slimfusion[openvino]'") from exc
    return openvino


@functools.cache  # a property of the machine: asked per engine candidate, a Core built once
def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has native bf16 here (it then runs float32 IRs in bf16 unless told not to)."""
    return "BF16" in openvino_runtime().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def is_openvino_folder(path: Path) -> bool:
    return (path / RECORD).exists()


class OpenVINODenoiser(nn.Module):
    """A compiled OpenVINO denoiser behind a UNet2DModel's calling convention (float32 in and out, on the CPU)."""

    def __init__(self, ir: Any, compiled: Any, config: dict, record: dict):
        super().__init__()
        self.ir, self.compiled, self.record = ir, compiled, record
        self.config = FrozenDict(config)
        self.batch = int(record["batch"])
        # no weights live in torch: a zero-size buffer gives the module a device and dtype for the runtime's checks
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, return_dict: bool = True):
        n = len(sample)
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(n)
        outputs = []
        for first in range(0, n, self.batch):
            x, s = sample[first : first + self.batch].float(), t[first : first + self.batch]
            short = self.batch - len(x)
            if short:  # static shapes: pad the last batch, keep its own rows
                x = torch.cat([x, x[:1].expand(short, *x.shape[1:])])
                s = torch.cat([s, s[:1].expand(short)])
            result = self.compiled([x.detach().numpy(), s.numpy()])[0]
            outputs.append(torch.from_numpy(np.ascontiguousarray(result[: self.batch - short])))
        out = torch.cat(outputs)
        return UNet2DOutput(sample=out) if return_dict else (out,)


def write_folder(folder: Path, ir: Any, config: dict, meta: dict, settings: dict) -> None:
    """The IR (float32 weights as converted: no fp16 compression) and `openvino.json` into an existing folder."""
    openvino_runtime().save_model(ir, folder / IR, compress_to_fp16=False)
    kept = {k: copy.deepcopy(v) for k, v in meta.items() if k in KEPT_META}
    record = {"format_version": FORMAT_VERSION, "config": config, "meta": kept} | settings
    (folder / RECORD).write_text(json.dumps(record, indent=2, default=str))


def write_denoiser(model: OpenVINODenoiser, folder: Path) -> None:
    """A loaded exported denoiser written again, with its metadata as it is now (an optimizer's sampler)."""
    settings = {k: v for k, v in model.record.items() if k not in ("format_version", "config", "meta")}
    write_folder(folder, model.ir, dict(model.config), get_meta(model), settings)


def load_openvino(folder: Path) -> OpenVINODenoiser:
    """The exported denoiser of `folder`, compiled for this CPU, with the source model's metadata."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{folder / RECORD}: unreadable ({exc})") from exc
    if record.get("format_version") != FORMAT_VERSION or "config" not in record:
        raise CorruptFileError(f"{folder / RECORD}: not an OpenVINO export of this slimfusion version")
    if not (folder / IR).exists() or not (folder / IR).with_suffix(".bin").exists():
        raise CorruptFileError(f"{folder}: {IR} or its .bin is missing")
    ov = openvino_runtime()
    try:
        ir = ov.Core().read_model(folder / IR)
        # the export's precision, explicitly: on a bf16 CPU the plugin's default would run a float32 IR in bf16
        precision = ov.Type.bf16 if record.get("precision") == "bf16" and cpu_has_bf16() else ov.Type.f32
        compiled = ov.compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    except RuntimeError as exc:
        raise CorruptFileError(f"{folder / IR}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from exc
    model = OpenVINODenoiser(ir, compiled, record["config"], record)
    meta = dict(record.get("meta") or {})
    meta["source"] = str(folder)
    set_meta(model, {"history": [], "scheduler": None} | meta)
    return model.eval()
