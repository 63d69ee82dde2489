"""Tiny configs of the real diffusers / transformers classes, so every family is tested in seconds on a CPU."""

from __future__ import annotations

import os

import pytest
import torch

# `make test` runs two pytest-xdist workers: each, and every CLI process it starts, then uses one thread (two workers
# of two threads on two cores only fight); a plain `pytest` run keeps two.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1)
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)

from slimfusion.models.families import FAMILIES  # noqa: E402
from slimfusion.models.io import build  # noqa: E402

TINY_CONFIGS = {
    "UNet2DModel": {
        "sample_size": 8,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 4,
        "norm_num_groups": 4,
    },
    "UNet2DConditionModel": {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 12,
        "attention_head_dim": 2,
        "norm_num_groups": 4,
    },
    "DiTTransformer2DModel": {
        "num_attention_heads": 2,
        "attention_head_dim": 4,
        "in_channels": 4,
        "out_channels": 8,
        "num_layers": 2,
        "sample_size": 8,
        "patch_size": 2,
        "norm_type": "ada_norm_zero",
        "num_embeds_ada_norm": 10,
        "norm_elementwise_affine": False,
    },
    "CLIPTextModel": {
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 8,
        "projection_dim": 16,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    },
}


def tiny_model(class_name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(FAMILIES[class_name], TINY_CONFIGS[class_name]).eval()


@pytest.fixture(params=sorted(TINY_CONFIGS))
def family_model(request) -> torch.nn.Module:
    """One tiny model of each supported family (the shared per-capability tests run over all of them)."""
    return tiny_model(request.param)


TINY_VAE = {
    "in_channels": 1,
    "out_channels": 1,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [8, 8],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 16,
}


def tiny_sd_pipeline():
    """A Stable-Diffusion-shaped pipeline of tiny random components (project-built tokenizer, CLIP, UNet, VAE)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from slimfusion.data.prompts import build_tokenizer, prompts_for_digits
    from slimfusion.train.diffusion import default_scheduler_config

    torch.manual_seed(0)
    tokenizer = build_tokenizer(prompts_for_digits(list(range(10))) + ["the digit 7", "a bold slanted digit"], 8)
    text_config = TINY_CONFIGS["CLIPTextModel"] | {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    unet = build(FAMILIES["UNet2DConditionModel"], TINY_CONFIGS["UNet2DConditionModel"] | {"cross_attention_dim": 16})
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**TINY_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=DDIMScheduler.from_config(default_scheduler_config(clip_sample=False), steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_dit_pipeline():
    """A DiT pipeline (label 1000 = null class, as diffusers' DiTPipeline needs) over the tiny VAE."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline

    from slimfusion.train.diffusion import default_scheduler_config

    torch.manual_seed(0)
    dit = build(
        FAMILIES["DiTTransformer2DModel"], TINY_CONFIGS["DiTTransformer2DModel"] | {"num_embeds_ada_norm": 1000}
    )
    return DiTPipeline(
        transformer=dit.eval(),
        vae=AutoencoderKL(**TINY_VAE),
        scheduler=DDIMScheduler.from_config(default_scheduler_config(clip_sample=False), steps_offset=1),
        id2label={i: str(i) for i in range(10)},
    )


@pytest.fixture(scope="session")
def sd_folder(tmp_path_factory):
    from slimfusion.pipelines import save_pipeline

    return save_pipeline(tiny_sd_pipeline(), tmp_path_factory.mktemp("pipes") / "sd")


@pytest.fixture(scope="session")
def dit_folder(tmp_path_factory):
    from slimfusion.pipelines import save_pipeline

    return save_pipeline(tiny_dit_pipeline(), tmp_path_factory.mktemp("pipes") / "dit")


def tiny_clip_folder(folder, prompts: list[str]):
    """A tiny CLIPModel + processor saved with safetensors (random weights): CLIP score's code path, offline."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from slimfusion.data.prompts import build_tokenizer

    tokenizer = build_tokenizer(prompts, 8)
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    text |= {"num_attention_heads": 2, "max_position_embeddings": 8, "eos_token_id": tokenizer.eos_token_id}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision |= {"image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
