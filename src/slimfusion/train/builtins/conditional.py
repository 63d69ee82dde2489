"""How the latent built-ins are made: `builtin:digits-vae`, `builtin:digits-t2i` and `builtin:digits-dit`.

Each builder is seeded and writes a complete folder (`slimfusion train-builtin NAME --out DIR`); the denoisers are
trained by the same loop as `train` / `finetune`, on the digits' VAE latents with their prompts or labels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDIMScheduler
from pydantic import BaseModel, ConfigDict, Field

from slimfusion.data.digits import load_digits_split
from slimfusion.data.prompts import PromptBank, build_tokenizer, prompt_bank, style_attributes
from slimfusion.diffusion import default_scheduler_config
from slimfusion.models.families.text import encode_prompts, token_ids
from slimfusion.models.io import load, save
from slimfusion.models.meta import get_meta
from slimfusion.models.zoo import build_architecture, digits_text_encoder_config
from slimfusion.pipelines import save_pipeline
from slimfusion.train.builtins.text_encoder import TextEncoderConfig, train_text_encoder
from slimfusion.train.builtins.vae import VAEConfig, encode, train_vae
from slimfusion.train.conditional_data import NULL_CLASS
from slimfusion.train.config import TrainConfig
from slimfusion.train.loop import fit
from slimfusion.train.trainset import TrainSet


class BuiltinConfig(BaseModel):
    """Settings of one latent built-in's denoiser run (the VAE and text encoder have their own configs).

    Args:
        steps (`int`, defaults to 6000): optimizer steps of the denoiser.
        batch_size (`int`, defaults to 64): latents per step.
        lr (`float`, defaults to 5e-4): AdamW peak learning rate.
        drop (`float`, defaults to 0.1): probability of training a step's example with the null condition.
        seed (`int`, defaults to 0): seeds everything.
        checkpoint_every (`int`, defaults to 500): checkpoint period of the denoiser's run folder (resumable).
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    steps: int = Field(6000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0)
    drop: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    checkpoint_every: int = Field(500, ge=0)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, seed=self.seed)


def digits_prompt_bank(split: str = "train") -> tuple[torch.Tensor, torch.Tensor, PromptBank]:
    """(images, labels, prompt bank) of a digits split: every truthful prompt of every image."""
    images, labels = load_digits_split(split)
    return images, labels, prompt_bank(labels, style_attributes(images, labels))


def build_digits_vae(out: Path, config: VAEConfig, progress: bool = True) -> Path:
    """Train `builtin:digits-vae` on the digits train split and save it as a model folder."""
    images, _ = load_digits_split("train")
    torch.manual_seed(config.seed)
    vae = build_architecture("digits-vae")
    train_vae(vae, images, config, progress=progress)
    return save(vae, out, overwrite=True)


def build_digits_t2i(
    out: Path,
    config: BuiltinConfig,
    text_config: TextEncoderConfig,
    vae_source: str = "builtin:digits-vae",
    progress: bool = True,
) -> Path:
    """Make `builtin:digits-t2i`: tokenizer from the prompt words, contrastive text encoder, then the UNet on latents.

    The UNet's run folder (`OUT.unet-run`) checkpoints and resumes; the pipeline folder is written at the end.
    """
    images, _, bank = digits_prompt_bank("train")
    tokenizer = build_tokenizer(bank.prompts)
    ids = token_ids(tokenizer, bank.prompts)
    features = load("builtin:digits-features").features(images).detach()
    torch.manual_seed(text_config.seed)
    # lazy: transformers costs ~0.5-1 s of import time, paid only by commands that tokenise or build CLIP
    from transformers import CLIPTextConfig, CLIPTextModel

    text_encoder = CLIPTextModel(CLIPTextConfig(**digits_text_encoder_config(tokenizer)))
    train_text_encoder(text_encoder, ids, bank, features, text_config, progress=progress)
    vae = load(vae_source)
    data = TrainSet(encode(vae, images), encode_prompts(text_encoder, ids), bank.choices, null=0, drop=config.drop)
    unet = _train_denoiser("digits-t2i-unet", data, config, Path(f"{out}.unet-run"), progress)
    scheduler = DDIMScheduler.from_config(default_scheduler_config(clip_sample=False), steps_offset=1)
    # lazy: diffusers' pipeline classes import transformers' image processors (slow, and they warn at import)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return save_pipeline(pipe, out, overwrite=True)


def build_digits_dit(
    out: Path, config: BuiltinConfig, vae_source: str = "builtin:digits-vae", progress: bool = True
) -> Path:
    """Make `builtin:digits-dit`: a class-conditional DiT on the digits' latents, saved as a `DiTPipeline` folder."""
    images, labels = load_digits_split("train")
    vae = load(vae_source)
    table = torch.tensor([*range(10), NULL_CLASS])
    data = TrainSet(encode(vae, images), table, [label.view(1) for label in labels], null=10, drop=config.drop)
    dit = _train_denoiser("digits-dit", data, config, Path(f"{out}.dit-run"), progress)
    scheduler = DDIMScheduler.from_config(default_scheduler_config(clip_sample=False), steps_offset=1)
    # lazy: as StableDiffusionPipeline above
    from diffusers import DiTPipeline

    pipe = DiTPipeline(transformer=dit, vae=vae, scheduler=scheduler, id2label={i: str(i) for i in range(10)})
    return save_pipeline(pipe, out, overwrite=True)


def _train_denoiser(arch: str, data: TrainSet, config: BuiltinConfig, run: Path, progress: bool):
    resume = (run / "train_state" / "state.json").exists()
    if resume:
        model = load(run)
    else:
        torch.manual_seed(config.seed)
        model = build_architecture(arch)
        get_meta(model)["scheduler"] = default_scheduler_config(clip_sample=False)
    train = config.train_config()
    every = config.checkpoint_every
    return fit(model, data, train, "train", out=run, checkpoint_every=every, resume=resume, progress=progress)
