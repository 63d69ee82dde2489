"""Per model family knowledge, in one place: which class, which library saves it, example inputs, block layout.

Techniques ask this table instead of testing `isinstance` or naming a model's attributes themselves; a new family is
one new `Family` entry. The UNet, DiT and CLIP-text specifics (attribute names, depth units, DeepCache's branches,
prompt encoding) live in the modules beside this one; nothing outside this package names them.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from diffusers.models.activations import GEGLU
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import LabelEmbedding
from torch import nn

from slimfusion.errors import NotAModelError
from slimfusion.models.families import dit, text, unet
from slimfusion.models.families.parts import Depth, DepthUnit, sample_side  # noqa: F401  (DepthUnit re-exported)

ExampleInputs = Callable[[nn.Module, int], dict[str, torch.Tensor]]


def _vae_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    side = sample_side(model.config)
    return {"sample": torch.randn(batch, model.config.in_channels, side, side)}


def _image_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    return {"images": torch.randn(batch, model.config.in_channels, 16, 16)}


@contextlib.contextmanager
def no_label_dropout(model: nn.Module) -> Iterator[None]:
    """Switch off the label dropout that diffusers' label embeddings apply in training mode (DiT), for the run.

    slimfusion drops conditions itself, from the run's seeded generator (`TrainSet.drop`), so runs resume exactly;
    the embedding's own dropout would draw from torch's global generator instead.
    """
    saved = [(m, m.dropout_prob) for m in model.modules() if isinstance(m, LabelEmbedding)]
    for module, _ in saved:
        module.dropout_prob = 0.0
    try:
        yield
    finally:
        for module, prob in saved:
            module.dropout_prob = prob


def _equal_subgroups(model: nn.Module) -> dict[nn.Module, int]:
    """Layers whose output splits into equal parts that must shrink alike, -> number of parts.

    q / k / v projections of every diffusers Attention split into heads (so every head keeps the same head dim);
    a GEGLU projection splits into value and gate halves (so the pairs stay aligned).
    """
    parts: dict[nn.Module, int] = {}
    for module in model.modules():
        if isinstance(module, Attention):
            for proj in (module.to_q, module.to_k, module.to_v):
                parts[proj] = module.heads
        elif isinstance(module, GEGLU):
            parts[module.proj] = 2
    return parts


@dataclass(frozen=True)
class Pruning:
    """What structural pruning must know about a family.

    Args:
        ignored_layers (`Callable`): layers whose output width is never changed.
        subgroups (`Callable`): layer -> number of equal parts of its output (attention heads, GEGLU halves) that
            must lose the same channels.
    """

    ignored_layers: Callable[[nn.Module], list[nn.Module]]
    subgroups: Callable[[nn.Module], dict[nn.Module, int]]


@dataclass(frozen=True)
class Family:
    """How slimfusion handles one model class.

    Args:
        class_path (`str`): "module:ClassName" to import the class from.
        library (`str`): "diffusers" or "transformers": whose save format and config handling it uses.
        example_inputs (`Callable`): builds keyword inputs for one forward at a given batch size.
        denoise (`Callable`, optional): (model, noisy, t, cond=None) -> predicted noise, for denoisers; `cond` is the
            family's per-image conditioning (text-encoder states, class labels) or None.
        pruning (`Pruning`, optional): structural pruning knowledge; None where it is not supported yet.
        feature_blocks (`Callable`, optional): names of the blocks whose outputs feature distillation matches;
            None where fine-tuning is not supported yet (it needs the family's training conditioning).
        skip_units (`Callable`, optional): (model, fine) -> names of the blocks a timestep-wise skip plan may reuse.
        depth (`Depth`, optional): depth pruning knowledge (units, stages, how the config says the depth).
        cache_branch (`Callable`, optional): (model, branch) -> the blocks DeepCache reuses for that skip branch;
            None where the model has no U-shaped shallow branch.
        int8_float (`tuple`, defaults to ()): names of the modules an int8 export keeps in float (those whose
            activations one int8 range per tensor over all timesteps hurts most).
    """

    class_path: str
    library: str
    example_inputs: ExampleInputs
    denoise: Callable[..., torch.Tensor] | None = None
    pruning: Pruning | None = None
    feature_blocks: Callable[[nn.Module], list[str]] | None = None
    skip_units: Callable[..., list[str]] | None = None
    depth: Depth | None = None
    cache_branch: Callable[[nn.Module, int], list[str]] | None = None
    int8_float: tuple[str, ...] = ()

    @property
    def denoiser(self) -> bool:
        """Whether it predicts noise (can be trained, calibrated and sampled)."""
        return self.denoise is not None

    def config_dict(self, model: nn.Module) -> dict:
        """The model's config as a plain dict (what `build` takes)."""
        return model.config.to_dict() if self.library == "transformers" else dict(model.config)

    def load_class(self) -> type[nn.Module]:
        module, _, name = self.class_path.partition(":")
        return getattr(importlib.import_module(module), name)


def _unet_family(name: str, inputs: ExampleInputs, denoise: Callable[..., torch.Tensor]) -> Family:
    """A diffusers UNet class: the UNet layout (blocks, depth, DeepCache's branches) with its own inputs."""
    return Family(
        f"diffusers:{name}",
        "diffusers",
        inputs,
        denoise,
        pruning=Pruning(unet.ignored, _equal_subgroups),
        feature_blocks=unet.feature_blocks,
        skip_units=unet.skip_units,
        depth=unet.DEPTH,
        cache_branch=unet.cache_branch,
        int8_float=unet.INT8_FLOAT,
    )


FAMILIES: dict[str, Family] = {
    "UNet2DModel": _unet_family("UNet2DModel", unet.inputs, unet.denoise),
    "UNet2DConditionModel": _unet_family("UNet2DConditionModel", unet.condition_inputs, unet.condition_denoise),
    "DiTTransformer2DModel": Family(
        "diffusers:DiTTransformer2DModel",
        "diffusers",
        dit.inputs,
        dit.denoise,
        pruning=Pruning(dit.ignored, _equal_subgroups),
        feature_blocks=dit.feature_blocks,
        skip_units=dit.skip_units,
        depth=dit.DEPTH,
    ),
    # Older DiT checkpoints (facebook/DiT-XL-2-256) name the generic class; diffusers maps it to the DiT class.
    "Transformer2DModel": Family("diffusers:DiTTransformer2DModel", "diffusers", dit.inputs, dit.denoise),
    "AutoencoderKL": Family("diffusers:AutoencoderKL", "diffusers", _vae_inputs),
    "CLIPTextModel": Family("transformers:CLIPTextModel", "transformers", text.inputs),
    "DigitClassifier": Family("slimfusion.models.classifier:DigitClassifier", "diffusers", _image_inputs),
    # an exported OpenVINO UNet2DModel (models/openvino.py): sampled and measured, never trained or pruned
    "OpenVINODenoiser": Family("slimfusion.models.openvino:OpenVINODenoiser", "openvino", unet.inputs, unet.denoise),
}
UNCONDITIONAL = ("UNet2DModel", "OpenVINODenoiser")  # the denoisers sampled without a pipeline


def family_name(model: nn.Module) -> str:
    """The FAMILIES key of a model instance (its class name, or the class diffusers remapped it from)."""
    name = type(model).__name__
    if name in FAMILIES:
        return name
    raise NotAModelError(f"unsupported model class {name}; supported: {', '.join(FAMILIES)}")


def family_of(model: nn.Module) -> Family:
    return FAMILIES[family_name(model)]


def example_inputs(model: nn.Module, batch: int = 1) -> dict[str, torch.Tensor]:
    """Keyword inputs for one forward pass of `model` at batch size `batch` and the model's own sample size, on the
    model's device."""
    held = next(model.parameters(), None)  # an OpenVINO denoiser holds no torch weights: the CPU
    device = held.device if held is not None else torch.device("cpu")
    return {k: v.to(device) for k, v in family_of(model).example_inputs(model, batch).items()}


def distill_blocks(model: nn.Module) -> list[str]:
    """Names of the blocks whose outputs feature distillation compares (student and teacher share them)."""
    blocks = family_of(model).feature_blocks
    if blocks is None:
        trainable = ", ".join(k for k, f in FAMILIES.items() if f.feature_blocks is not None)
        raise NotAModelError(f"fine-tuning supports {trainable}, not {family_name(model)}")
    return blocks(model)


def check_trainable(model: nn.Module) -> None:
    """Fail early, in one line, for families slimfusion cannot train yet."""
    distill_blocks(model)


from slimfusion.models.build import MAX_PARAMS, build  # noqa: E402, F401  (re-exported: where callers look)
