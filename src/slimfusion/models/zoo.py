"""Built-in models: the project's own trained digits models (shipped in the package) and reference architectures.

Reference architectures carry the exact configs of well-known checkpoints with seeded random weights: they are for
cost measurements (params, MACs, latency), never for image quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimfusion.errors import ConfigError
from slimfusion.models.families import FAMILIES, build

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


def digits_vae_config() -> dict[str, Any]:
    """AutoencoderKL config of `builtin:digits-vae`: 16x16x1 digits <-> 8x8x4 latents (0.22M params)."""
    return {
        "in_channels": 1,
        "out_channels": 1,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
        "block_out_channels": [32, 32],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 16,
    }


def digits_text_encoder_config(tokenizer) -> dict[str, Any]:
    """CLIPTextConfig of `builtin:digits-t2i`'s text encoder (0.2M params); vocabulary from the project's tokenizer."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "max_position_embeddings": tokenizer.model_max_length,
        "hidden_act": "quick_gelu",
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "projection_dim": 64,
    }


def digits_t2i_unet_config() -> dict[str, Any]:
    """UNet2DConditionModel of `builtin:digits-t2i`: SD's layout in miniature on 8x8x4 latents (1.5M params)."""
    return {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 64,
        "attention_head_dim": 4,
        "norm_num_groups": 16,
    }


def digits_dit_config() -> dict[str, Any]:
    """DiTTransformer2DModel of `builtin:digits-dit` (2.9M params, 16 tokens of 2x2 latent patches).

    `num_embeds_ada_norm` is 1000 although only labels 0-9 are used: diffusers' `DiTPipeline` feeds label 1000 as the
    null class of classifier-free guidance, so the label table must have that row (1001 rows; 990 are never trained).
    """
    return {
        "num_attention_heads": 4,
        "attention_head_dim": 32,
        "in_channels": 4,
        "out_channels": 4,
        "num_layers": 6,
        "sample_size": 8,
        "patch_size": 2,
        "activation_fn": "gelu-approximate",
        "norm_type": "ada_norm_zero",
        "num_embeds_ada_norm": 1000,
        "norm_elementwise_affine": False,
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
    "digits-vae": Builtin("AutoencoderKL for the digits: 16x16x1 <-> 8x8x4 latents", "AutoencoderKL", shipped=True),
    "digits-t2i": Builtin(
        "text-to-image pipeline (CLIP text encoder, UNet2DConditionModel, digits VAE) trained on digit prompts",
        "UNet2DConditionModel",
        shipped=True,
    ),
    "digits-dit": Builtin(
        "class-conditional DiT pipeline on the digits VAE's latents", "DiTTransformer2DModel", shipped=True
    ),
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
    "digits-vae": ("AutoencoderKL", digits_vae_config),
    "digits-t2i-unet": ("UNet2DConditionModel", digits_t2i_unet_config),
    "digits-dit": ("DiTTransformer2DModel", digits_dit_config),
}


def build_architecture(name: str):
    """A freshly initialised model of a named training architecture."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}; available: {', '.join(ARCHITECTURES)}")
    class_name, factory = ARCHITECTURES[name]
    return build(FAMILIES[class_name], factory())
