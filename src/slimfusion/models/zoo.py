"""Built-in models: the project's own trained digits models (shipped in the package) and reference architectures.

Reference architectures carry the exact configs of well-known checkpoints with seeded random weights: they are for
cost measurements (params, MACs, latency), never for image quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILTIN_DIR = Path(__file__).parent / "builtin"
PREFIX = "builtin:"


def digits_ddpm_config() -> dict[str, Any]:
    """UNet2DModel config of `builtin:digits-ddpm`: the CIFAR-10 DDPM layout in miniature (1.6M params, 16x16)."""
    return {
        "sample_size": 16,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": None,
        "norm_num_groups": 8,
    }


DDPM_CIFAR10_CONFIG: dict[str, Any] = {
    # google/ddpm-cifar10-32
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "act_fn": "silu",
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "resnet_time_scale_shift": "default",
}

# The Diff-Pruning paper's other DDPMs come from the DDIM code base ("simple" model); diffusers' UNet2DModel with the
# settings below is the same network (as google/ddpm-cifar10-32 is for CIFAR-10): attention at 16x16 resolution.
DDPM_CELEBA64_CONFIG: dict[str, Any] = DDPM_CIFAR10_CONFIG | {
    # DDIM's CelebA 64 model (ch 128, ch_mult [1, 2, 2, 2, 4], 2 res blocks, attention at 16)
    "sample_size": 64,
    "block_out_channels": [128, 256, 256, 256, 512],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
}

DDPM_LSUN256_CONFIG: dict[str, Any] = DDPM_CIFAR10_CONFIG | {
    # google/ddpm-ema-church-256 and google/ddpm-ema-bedroom-256 (one architecture; ch_mult [1, 1, 2, 2, 4, 4])
    "sample_size": 256,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
}

SD15_UNET_CONFIG: dict[str, Any] = {
    # runwayml/stable-diffusion-v1-5, subfolder unet
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
}

DIT_XL_2_CONFIG: dict[str, Any] = {
    # facebook/DiT-XL-2-256, subfolder transformer
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 28,
    "sample_size": 32,
    "patch_size": 2,
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "dropout": 0.0,
    "norm_type": "ada_norm_zero",
    "num_embeds_ada_norm": 1000,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-5,
    "upcast_attention": False,
}


@dataclass(frozen=True)
class Builtin:
    """One built-in model.

    Args:
        description (`str`): one line for `slimfusion info` and the docs.
        class_name (`str`): key of `families.FAMILIES`.
        config (`dict`, optional): for reference architectures, the config built with seeded random weights.
        shipped (`bool`): True when trained weights ship in the package under `models/builtin/NAME/`.
    """

    description: str
    class_name: str
    config: dict[str, Any] = field(default_factory=dict)
    shipped: bool = False


BUILTINS: dict[str, Builtin] = {
    "digits-ddpm": Builtin("unconditional DDPM trained on scikit-learn digits (16x16)", "UNet2DModel", shipped=True),
    "digits-features": Builtin("digit classifier: feature space for offline FD", "DigitClassifier", shipped=True),
    "ddpm-cifar10": Builtin("google/ddpm-cifar10-32 architecture, random weights", "UNet2DModel", DDPM_CIFAR10_CONFIG),
    "ddpm-celeba64": Builtin(
        "DDIM's CelebA 64x64 DDPM architecture (Diff-Pruning's CelebA-HQ model), random weights",
        "UNet2DModel",
        DDPM_CELEBA64_CONFIG,
    ),
    "ddpm-lsun256": Builtin(
        "google/ddpm-ema-church-256 / -bedroom-256 architecture, random weights", "UNet2DModel", DDPM_LSUN256_CONFIG
    ),
    "sd15-unet": Builtin(
        "Stable Diffusion 1.5 UNet architecture, random weights", "UNet2DConditionModel", SD15_UNET_CONFIG
    ),
    "dit-xl-2": Builtin("DiT-XL/2 256 architecture, random weights", "DiTTransformer2DModel", DIT_XL_2_CONFIG),
}

REFERENCE_SEED = 0


def builtin_folder(name: str) -> Path:
    return BUILTIN_DIR / name


ARCHITECTURES: dict[str, tuple[str, Any]] = {
    # name -> (family class, config factory) for `slimfusion train --arch NAME`
    "digits-ddpm": ("UNet2DModel", digits_ddpm_config),
}


def build_architecture(name: str):
    """A freshly initialised model of a named training architecture."""
    from slimfusion.errors import ConfigError
    from slimfusion.models.families import FAMILIES
    from slimfusion.models.io import build

    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}; available: {', '.join(ARCHITECTURES)}")
    class_name, factory = ARCHITECTURES[name]
    return build(FAMILIES[class_name], factory())
