"""Per model family knowledge, in one place: which class, which library saves it, and example inputs.

Techniques ask this table instead of testing `isinstance` themselves; a new family is one new `Family` entry.
Pruning-specific knowledge (layers never pruned, head groups) joins these entries with the pruning issue.
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

ExampleInputs = Callable[[nn.Module, int], dict[str, torch.Tensor]]


def _sample_side(config) -> int:
    size = config.sample_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def _unet2d_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    side = _sample_side(model.config)
    return {
        "sample": torch.randn(batch, model.config.in_channels, side, side),
        "timestep": torch.full((batch,), 10, dtype=torch.long),
    }


def _unet2d_condition_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    inputs = _unet2d_inputs(model, batch)
    cross_dim = model.config.cross_attention_dim
    cross_dim = cross_dim[0] if isinstance(cross_dim, (tuple, list)) else cross_dim
    inputs["encoder_hidden_states"] = torch.randn(batch, 77, cross_dim)
    return inputs


def _dit_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    side = _sample_side(model.config)
    return {
        "hidden_states": torch.randn(batch, model.config.in_channels, side, side),
        "timestep": torch.full((batch,), 10, dtype=torch.long),
        "class_labels": torch.zeros(batch, dtype=torch.long),
    }


def _clip_text_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    length = model.config.max_position_embeddings
    return {"input_ids": torch.randint(0, model.config.vocab_size, (batch, length))}


def _vae_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    side = _sample_side(model.config)
    return {"sample": torch.randn(batch, model.config.in_channels, side, side)}


def _image_inputs(model: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    return {"images": torch.randn(batch, model.config.in_channels, 16, 16)}


def _unet2d_denoise(
    model: nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    return model(noisy, t).sample


def _unet2d_condition_denoise(
    model: nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """`cond`: text-encoder hidden states [N, L, D]; None means null conditioning (zeros)."""
    if cond is None:
        cond = _unet2d_condition_inputs(model, len(noisy))["encoder_hidden_states"].zero_()
    return model(noisy, t, encoder_hidden_states=cond).sample


def _dit_denoise(
    model: nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """`cond`: class labels [N]; None means class 0."""
    labels = torch.zeros(len(noisy), dtype=torch.long) if cond is None else cond
    out = model(noisy, timestep=t, class_labels=labels).sample
    return out[:, : noisy.shape[1]]  # DiT also predicts the variance in its extra channels


def _unet2d_ignored(model: nn.Module) -> list[nn.Module]:
    return [model.conv_out]  # its width is the image's channel count


def _dit_ignored(model: nn.Module) -> list[nn.Module]:
    # proj_out_1 makes the final shift / scale of the residual stream, proj_out_2 the patch pixels: both fixed widths
    return [model.proj_out_1, model.proj_out_2]


def _unet_blocks(model: nn.Module) -> list[str]:
    """Block outputs a thinner UNet student is taught to match: the middle block and every up block."""
    return ["mid_block"] + [f"up_blocks.{i}" for i in range(len(model.up_blocks))]


def _dit_blocks(model: nn.Module) -> list[str]:
    """Block outputs a DiT student is taught to match: the last block of each quarter of the stack."""
    count = len(model.transformer_blocks)
    step = max(1, count // 4)
    return [f"transformer_blocks.{i}" for i in range(count) if (i + 1) % step == 0 or i == count - 1]


def _unet_skip_units(model: nn.Module, fine: bool = False) -> list[str]:
    """Blocks a skip plan may reuse: every down block (with its residuals), the mid block, every up block.

    `fine` adds DeepCache's skip branches: each block's resnets, attentions and down / up samplers.
    """
    names = [f"down_blocks.{i}" for i in range(len(model.down_blocks))] + ["mid_block"]
    names += [f"up_blocks.{i}" for i in range(len(model.up_blocks))]
    if not fine:
        return names
    layers = []
    for name in names:
        block = model.get_submodule(name)
        for part in ("resnets", "attentions", "downsamplers", "upsamplers"):
            layers += [f"{name}.{part}.{j}" for j in range(len(getattr(block, part, None) or []))]
    return names + layers


def _dit_skip_units(model: nn.Module, fine: bool = False) -> list[str]:
    """Blocks a skip plan may reuse: every transformer block (there is no finer branch)."""
    return [f"transformer_blocks.{i}" for i in range(len(model.transformer_blocks))]


@dataclass(frozen=True)
class DepthUnit:
    """One removable piece of a model's depth.

    Args:
        name (`str`): how users name it (`--remove`): "transformer_blocks.3", "mid_block", or a UNet layer pair
            "down_blocks.1.1+up_blocks.1.0" (a down block's resnet (+ attention) layer and the up-block layer that
            consumes its skip connection: removing one without the other would leave a skip tensor unconsumed).
        layers (`tuple[str, ...]`): the module lists items removed, e.g. ("down_blocks.1.resnets.1",
            "down_blocks.1.attentions.1", ...), or ("mid_block",).
        bypass (`tuple[tuple[str, str, int], ...]`): per removed layer (first module, last module, channels of the
            hidden state it passes on when bypassed): what an identity bypass hooks.
        valid (`bool`): whether bypassing it keeps every shape (a layer that changes channel counts cannot go).
        stage (`str`, optional): the down block whose layer count it lowers (a stage keeps at least one layer).
        why (`str`): for an invalid unit, why it cannot go.
    """

    name: str
    layers: tuple[str, ...]
    bypass: tuple[tuple[str, str, int], ...]
    valid: bool
    stage: str | None = None
    why: str = ""


def _layer_modules(block: nn.Module, path: str, index: int) -> tuple[list[str], str]:
    names = [f"{path}.resnets.{index}"]
    attentions = getattr(block, "attentions", None)
    if attentions is not None and len(attentions) > index:
        names.append(f"{path}.attentions.{index}")
    return names, names[-1]


def _unet_depth_units(model: nn.Module) -> list[DepthUnit]:
    """The mid block, and per stage each down layer paired with the up layer that consumes its skip tensor.

    Up layer i of a stage's up block consumes the skip tensor of down layer L - 1 - i (diffusers pops them from the
    end), so down layer j pairs with up layer L - 1 - j; removing both keeps every other pairing as it was.
    """
    units = []
    if model.mid_block is not None:
        channels = model.mid_block.resnets[0].in_channels
        units.append(DepthUnit("mid_block", ("mid_block",), (("mid_block", "mid_block", channels),), True))
    count = len(model.down_blocks)
    for b, down in enumerate(model.down_blocks):
        up, u = model.up_blocks[count - 1 - b], count - 1 - b
        layers = len(down.resnets)
        if len(up.resnets) != layers + 1:
            continue
        for j in range(layers):
            k = layers - 1 - j
            down_names, down_last = _layer_modules(down, f"down_blocks.{b}", j)
            up_names, up_last = _layer_modules(up, f"up_blocks.{u}", k)
            resnet_down, resnet_up = down.resnets[j], up.resnets[k]
            hidden_up = resnet_up.in_channels - resnet_down.out_channels
            valid = resnet_down.in_channels == resnet_down.out_channels and hidden_up == resnet_up.out_channels
            units.append(
                DepthUnit(
                    f"down_blocks.{b}.{j}+up_blocks.{u}.{k}",
                    tuple(down_names + up_names),
                    ((down_names[0], down_last, resnet_down.in_channels), (up_names[0], up_last, hidden_up)),
                    valid,
                    stage=f"down_blocks.{b}",
                    why="" if valid else "one of its layers changes the channel count, so nothing can take its place",
                )
            )
    return units


def _dit_depth_units(model: nn.Module) -> list[DepthUnit]:
    """Every transformer block but the first: diffusers' DiT takes the output layer's timestep / class conditioning
    from `transformer_blocks[0].norm1.emb`, so removing block 0 would change more than one block."""
    width = getattr(model, "inner_dim", 0)
    first = "its norm embeds the timestep and class for the output layer too"
    return [
        DepthUnit(
            f"transformer_blocks.{i}",
            (f"transformer_blocks.{i}",),
            ((f"transformer_blocks.{i}",) * 2 + (width,),),
            i > 0,
            why="" if i > 0 else first,
        )
        for i in range(len(model.transformer_blocks))
    ]


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
        depth_units (`Callable`, optional): model -> the `DepthUnit`s depth pruning may remove.
    """

    class_path: str
    library: str
    example_inputs: ExampleInputs
    denoise: Callable[..., torch.Tensor] | None = None
    pruning: Pruning | None = None
    feature_blocks: Callable[[nn.Module], list[str]] | None = None
    skip_units: Callable[..., list[str]] | None = None
    depth_units: Callable[[nn.Module], list[DepthUnit]] | None = None

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


FAMILIES: dict[str, Family] = {
    "UNet2DModel": Family(
        "diffusers:UNet2DModel",
        "diffusers",
        _unet2d_inputs,
        _unet2d_denoise,
        pruning=Pruning(_unet2d_ignored, _equal_subgroups),
        feature_blocks=_unet_blocks,
        skip_units=_unet_skip_units,
        depth_units=_unet_depth_units,
    ),
    "UNet2DConditionModel": Family(
        "diffusers:UNet2DConditionModel",
        "diffusers",
        _unet2d_condition_inputs,
        _unet2d_condition_denoise,
        pruning=Pruning(_unet2d_ignored, _equal_subgroups),
        feature_blocks=_unet_blocks,
        skip_units=_unet_skip_units,
        depth_units=_unet_depth_units,
    ),
    "DiTTransformer2DModel": Family(
        "diffusers:DiTTransformer2DModel",
        "diffusers",
        _dit_inputs,
        _dit_denoise,
        pruning=Pruning(_dit_ignored, _equal_subgroups),
        feature_blocks=_dit_blocks,
        skip_units=_dit_skip_units,
        depth_units=_dit_depth_units,
    ),
    # Older DiT checkpoints (facebook/DiT-XL-2-256) name the generic class; diffusers maps it to the DiT class.
    "Transformer2DModel": Family("diffusers:DiTTransformer2DModel", "diffusers", _dit_inputs, _dit_denoise),
    "AutoencoderKL": Family("diffusers:AutoencoderKL", "diffusers", _vae_inputs),
    "CLIPTextModel": Family("transformers:CLIPTextModel", "transformers", _clip_text_inputs),
    "DigitClassifier": Family("slimfusion.models.classifier:DigitClassifier", "diffusers", _image_inputs),
}


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
    device = next(model.parameters()).device
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
