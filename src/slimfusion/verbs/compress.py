"""Steps that change the model's weights or layers: prune, lowrank, quantize, sparsify."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import torch
from pydantic import Field, field_validator, model_validator

from slimfusion.data import load_images
from slimfusion.data.prompts import read_prompts
from slimfusion.errors import ConfigError
from slimfusion.export import ExportConfig, export_openvino
from slimfusion.lowrank import LowRankConfig, lowrank
from slimfusion.models.families import example_inputs, family_name
from slimfusion.models.families.pipeline import embed, is_text_pipeline
from slimfusion.models.io import STORAGES, load
from slimfusion.models.meta import get_meta, history
from slimfusion.models.openvino import cpu_has_bf16
from slimfusion.prune import DepthConfig, StructuralConfig, prune
from slimfusion.prune.conditioning import encode_prompts, parse_class_labels
from slimfusion.prune.importance import METHODS
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.registry import Build, Lever, config_of, register, register_lever
from slimfusion.sparsify import SparsityConfig, sparsify
from slimfusion.subject import Subject
from slimfusion.train import FinetuneConfig, finetune

DEPTH_METHODS = {"depth": "greedy", "depth-learned": "learned"}


def comma_list(value):
    """A YAML list or a command line's comma list -> list of stripped strings."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PruneOptions(StructuralConfig):
    """prune's options: StructuralConfig (its defaults), the depth methods' two settings, and the calibration inputs.

    `method` "depth" / "depth-learned" makes a `DepthConfig` (greedy / learned) from `target_macs` or `remove`.
    """

    method: str = Field(
        StructuralConfig.model_fields["method"].default,
        description="width: random | magnitude | taylor | diff-pruning | reinit; depth: depth | depth-learned",
    )
    target_macs: float | None = Field(None, description="depth: keep this share of the MACs, in (0, 1)")
    remove: list[str] | None = Field(
        None, description="depth: comma list of units, e.g. mid_block,down_blocks.1.1+up_blocks.1.0"
    )
    data: str | None = Field(None, description="calibration images: digits or a folder (taylor, diff-pruning)")
    prompts: Path | None = Field(
        None, description="text-to-image: calibrate on the model's own samples of these prompts"
    )
    class_labels: str | None = Field(
        None, description="class-conditional (DiT): calibrate on the model's own samples, e.g. 1,207"
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS and value not in DEPTH_METHODS:
            choices = ", ".join([*METHODS, *DEPTH_METHODS])
            raise ValueError(f"unknown method {value!r}; choose one of {choices}")
        return value

    _remove_list = field_validator("remove", mode="before")(classmethod(lambda cls, v: comma_list(v)))

    @model_validator(mode="after")
    def _consistent(self) -> PruneOptions:
        if self.method not in DEPTH_METHODS and (self.target_macs is not None or self.remove is not None):
            raise ValueError("--target-macs and --remove are for --method depth / depth-learned")
        if self.prompts is not None and self.class_labels is not None:
            raise ValueError("give --prompts (text-to-image) or --class-labels (class-conditional), not both")
        if self.data is not None and (self.prompts is not None or self.class_labels is not None):
            raise ValueError("--data and --prompts / --class-labels exclude each other (conditions come with samples)")
        self.technique()  # the technique config's own checks
        return self

    def technique(self) -> StructuralConfig | DepthConfig:
        if self.method in DEPTH_METHODS:
            return DepthConfig(
                method=DEPTH_METHODS[self.method],
                target_macs=self.target_macs,
                remove=self.remove,
                batch_size=min(self.batch_size, 32),
                calib_batches=self.calib_batches,
                calib_sample_steps=self.calib_sample_steps,
                seed=self.seed,
            )
        return config_of(self, StructuralConfig)


def calibration_conditions(subject: Subject, prompts: Path | None, class_labels: str | None):
    """Per-image conditioning from a prompts file (encoded by the pipeline's own text encoder) or class labels."""
    kind = family_name(subject.denoiser)
    if prompts is not None:
        if kind != "UNet2DConditionModel":
            raise ConfigError(f"--prompts is for text-to-image UNets, not {kind}")
        if subject.is_pipeline and is_text_pipeline(subject.obj):
            return embed(subject.obj, read_prompts(prompts))
        return encode_prompts(subject.source or "", read_prompts(prompts))  # a partial pipeline folder's own files
    if class_labels is not None:
        if kind not in ("DiTTransformer2DModel", "Transformer2DModel"):
            raise ConfigError(f"--class-labels is for class-conditional DiTs, not {kind}")
        return parse_class_labels(class_labels, subject.denoiser.config.num_embeds_ada_norm)
    return None


def calibration_images(subject: Subject, data: str | None) -> torch.Tensor | None:
    """The calibration images of `--data`, checked against the denoiser's input shape."""
    if data is None:
        return None
    denoiser = subject.denoiser
    images = load_images(data, size=denoiser.config.sample_size, channels=denoiser.config.in_channels)
    expected = tuple(next(iter(example_inputs(denoiser, 1).values())).shape[1:])
    if tuple(images.shape[1:]) != expected:
        raise ConfigError(f"--data gives samples of shape {tuple(images.shape[1:])}; the model takes {expected}")
    return images


@register("prune", PruneOptions, api={StructuralConfig: prune, DepthConfig: prune})
def run_prune(
    subject: Subject, options: PruneOptions, folder: Path | None = None, progress: bool = True, **context
) -> Subject:
    config = options.technique()
    conditions = calibration_conditions(subject, options.prompts, options.class_labels)
    images = calibration_images(subject, options.data)
    if isinstance(config, DepthConfig) and config.remove is None and images is None and conditions is None:
        raise ConfigError(
            "--target-macs scores layers on calibration data: give --data (or --prompts / --class-labels)"
        )
    prune(subject.denoiser, config, data=images, conditions=conditions, progress=progress)
    return subject


class LowRankOptions(LowRankConfig):
    """lowrank's options: LowRankConfig (`skip` also as a comma list)."""

    _skip_list = field_validator("skip", mode="before")(classmethod(lambda cls, v: comma_list(v) or []))


@register("lowrank", LowRankOptions, api={LowRankConfig: lowrank})
def run_lowrank(
    subject: Subject, options: LowRankOptions, folder: Path | None = None, progress: bool = True, **context
):
    lowrank(subject.denoiser, config_of(options, LowRankConfig))
    return subject


class QuantizeOptions(QuantizeConfig):
    """quantize's options: QuantizeConfig (`skip` also as a comma list)."""

    _skip_list = field_validator("skip", mode="before")(classmethod(lambda cls, v: comma_list(v) or []))


@register("quantize", QuantizeOptions, api={QuantizeConfig: quantize})
def run_quantize(
    subject: Subject, options: QuantizeOptions, folder: Path | None = None, progress: bool = True, **context
):
    quantize(subject.denoiser, config_of(options, QuantizeConfig))
    return subject


def _half(build: Build, knobs: dict) -> None:
    quantize(build.model, QuantizeConfig(scheme=knobs["scheme"]))


def _compile(build: Build, knobs: dict) -> None:
    quantize(build.model, QuantizeConfig(scheme="none", compile=True))


def _prune_and_recover(build: Build, knobs: dict) -> None:
    """Structural pruning at `ratio`, then recovery by fine-tuning with output distillation from the original."""
    data, method = build.inputs["data"], knobs["method"]
    extra = {"threshold": 0.05, "batch_size": 16} if method == "diff-pruning" else {}
    prune(build.model, StructuralConfig(method=method, ratio=knobs["ratio"], **extra), data=data, progress=False)
    finetune(build.model, data, FinetuneConfig(steps=knobs["recovery_steps"]), teacher=build.inputs["teacher"],
             progress=False)  # fmt: skip


def _prune_allowed(denoiser, knobs: dict, sampling: dict) -> str | None:
    if family_name(denoiser) != "UNet2DModel":
        return f"the prune lever recovers unconditional UNets from --data; {family_name(denoiser)}: prune by hand"
    return None


# prune's lever (trains): width pruning with its recovery, built once per setting and shared by every candidate on it
register_lever(
    Lever(
        "prune",
        "model",
        {"method": ("diff-pruning",), "ratio": (0.25,), "recovery_steps": (1200,)},
        _prune_and_recover,
        lambda k: f"{k['method']} {k['ratio']:g} + {k['recovery_steps']} recovery steps",
        allowed=_prune_allowed,
        stage=5,
        trains=True,
    )
)

# quantize's levers: half precision (pays only where the CPU has bf16 arithmetic: the optimizer measures it) and
# torch.compile, last of every model change (the graph is built over everything before it)
register_lever(Lever("precision", "model", {"scheme": ("bf16",)}, _half, lambda k: k["scheme"], stage=30))
register_lever(Lever("compile", "model", {}, _compile, lambda k: "compile", stage=40, exact=True))


def _engine(build: Build, knobs: dict) -> None:
    """The model so far, exported to OpenVINO at the search's batch (float32, or NNCF int8 calibrated on its own
    trajectories) and run on that runtime."""
    with tempfile.TemporaryDirectory() as tmp:
        precision = "bf16" if knobs["bf16"] else "float32"
        config = ExportConfig(batch=build.inputs["batch"], int8=knobs["int8"], precision=precision)
        build.model = load(export_openvino(build.model, config, Path(tmp) / "ov"))


def _engine_label(knobs: dict) -> str:
    return " ".join(["OpenVINO"] + ["int8"] * knobs["int8"] + ["bf16"] * knobs["bf16"])


def _engine_allowed(denoiser, knobs: dict, sampling: dict) -> str | None:
    if family_name(denoiser) != "UNet2DModel":
        return f"OpenVINO export takes an unconditional UNet2DModel, not {family_name(denoiser)}"
    if importlib.util.find_spec("openvino") is None or (knobs["int8"] and importlib.util.find_spec("nncf") is None):
        return "OpenVINO is not installed (pip install 'slimfusion[openvino]')"
    if knobs["bf16"] and not cpu_has_bf16():
        return "this CPU has no bf16 arithmetic"
    return None


# export's lever: the OpenVINO runtime instead of eager torch (its own precision: int8 and / or bf16 for the rest, on
# CPUs that have it; no torch bf16 / compile beside it, and a skip plan's hooks cannot reach inside its graph); its
# float32 IR samples torch's images up to float rounding (tested within 1e-4), as compile does, so it shares its
# setting's verdicts; int8 and bf16 are judged on their own images
register_lever(Lever("engine", "model", {"int8": (False, True), "bf16": (False, True)}, _engine, _engine_label,
                     allowed=_engine_allowed, stage=35,
                     excludes=("precision", "compile", "cache", "forecast", "adaptive"),
                     exact=lambda k: not (k["int8"] or k["bf16"])))  # fmt: skip


def read_conditions(values: dict, prompts_key: str, labels_key: str) -> dict:
    """A copy of `values` with a prompts file read into its prompts and "3,7" parsed into class labels."""
    values = dict(values)
    if isinstance(values.get(prompts_key), (str, Path)):
        values[prompts_key] = read_prompts(Path(values[prompts_key]))
    if isinstance(values.get(labels_key), str):
        values[labels_key] = parse_class_labels(values[labels_key], None).tolist()
    return values


def parse_sparsity(value) -> dict:
    """0.5 -> {"sparsity": 0.5}; "text_encoder=0.475,unet=0.35" or a mapping -> {"sparsities": {...}}."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {"sparsities": value}
    if isinstance(value, (int, float)):
        return {"sparsity": float(value)}
    try:
        if "=" not in str(value):
            return {"sparsity": float(value)}
        pairs = [part.split("=") for part in str(value).split(",") if part.strip()]
        return {"sparsities": {name.strip(): float(number) for name, number in pairs}}
    except ValueError as exc:
        raise ValueError(f"--sparsity {value!r}: expected a number or component=number pairs") from exc


class SparsifyOptions(SparsityConfig):
    """sparsify's options: SparsityConfig, with `sparsity` also as "component=value,..." pairs, `calib_prompts` a
    prompts file (or a list), `calib_class_labels` "3,7", and how the weights are stored."""

    sparsity: float | str | None = Field(
        None, description="fraction zeroed, in [0, 1); or per component, e.g. text_encoder=0.475,unet=0.35"
    )
    storage: str = Field("dense", description="dense (plain diffusers loads it) | compact (bitmask + values)")

    @model_validator(mode="before")
    @classmethod
    def _command_line_forms(cls, values):
        if not isinstance(values, dict):
            return values
        values = read_conditions(values, "calib_prompts", "calib_class_labels")
        if isinstance(values.get("sparsity"), (str, dict)):
            values |= parse_sparsity(values.pop("sparsity"))
        return values

    @field_validator("storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if value not in STORAGES:
            raise ValueError(f"--storage must be one of {', '.join(STORAGES)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _config_checks(self) -> SparsifyOptions:
        self.technique()  # the technique config's own field checks (the sparsity's range: its type is wider here)
        return self

    def technique(self) -> SparsityConfig:
        return config_of(self, SparsityConfig)


@register("sparsify", SparsifyOptions, api={SparsityConfig: sparsify})
def run_sparsify(
    subject: Subject, options: SparsifyOptions, folder: Path | None = None, progress: bool = True, **context
):
    sparsify(subject.obj, options.technique(), progress=progress)
    for model in sparsified_now(subject):
        get_meta(model)["storage"] = options.storage
    return subject


def sparsified_now(subject: Subject) -> list:
    """The models of the subject whose last history step is sparsify (what a sparsify step just changed)."""
    models = [subject.obj] if not subject.is_pipeline else list(subject.obj.components.values())
    return [m for m in models if isinstance(m, torch.nn.Module) and history(m) and history(m)[-1]["step"] == "sparsify"]
