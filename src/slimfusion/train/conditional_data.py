"""Training sets for conditional pipelines: latents encoded once through the pipeline's VAE, with their conditions.

Three sources:
- the digits, with every truthful prompt of each image (text-to-image) or its label (DiT);
- an image folder with one caption `.txt` per image (text-to-image);
- data-free distillation: the original pipeline generates the latents from prompts or labels, so a user without the
  training set can still recover a compressed model (the student then learns from the teacher on those latents).
Prompt embeddings come from the pipeline's own tokenizer and frozen text encoder, computed once for all prompts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slimfusion.data.digits import load_digits_split
from slimfusion.data.folder import image_files, load_image_folder
from slimfusion.data.prompts import prompt_bank, style_attributes
from slimfusion.diffusion.latents import encode
from slimfusion.errors import ConfigError, DataError
from slimfusion.models.families.pipeline import embed, is_text_pipeline
from slimfusion.pipeline_sample import sample_pipeline
from slimfusion.sample import DEFAULT_GUIDANCE, SampleConfig
from slimfusion.train.trainset import TrainSet

NULL_CLASS = 1000  # diffusers' DiTPipeline feeds label 1000 as the unconditional class


def _image_size(pipe) -> int:
    size = pipe.vae.config.sample_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)


def digits_trainset(pipe, drop: float = 0.1) -> TrainSet:
    """The digits train split as latents, with all truthful prompts (text-to-image) or the labels (DiT)."""
    if pipe.vae.config.in_channels != 1:
        raise DataError(
            f"--data digits is grey scale; this pipeline's VAE takes {pipe.vae.config.in_channels} channels"
        )
    images, labels = load_digits_split("train", size=_image_size(pipe))
    latents = encode(pipe.vae, images)
    if is_text_pipeline(pipe):
        bank = prompt_bank(labels, style_attributes(images, labels))
        return TrainSet(latents, embed(pipe, bank.prompts), bank.choices, null=0, drop=drop)
    table = torch.tensor([*range(10), NULL_CLASS])
    return TrainSet(latents, table, [label.view(1) for label in labels], null=10, drop=drop)


def caption_folder_trainset(pipe, folder: str | Path, drop: float = 0.1) -> TrainSet:
    """Images of a folder with one caption file each (`cat.png` + `cat.txt`); a missing caption is an error."""
    if not is_text_pipeline(pipe):
        raise ConfigError("an image folder with captions trains text-to-image pipelines; this one has no text encoder")
    files = image_files(folder)
    captions = []
    for file in files:
        caption = file.with_suffix(".txt")
        if not caption.is_file():
            raise DataError(f"{file} has no caption file {caption.name}")
        captions.append(caption.read_text(encoding="utf-8").strip())
    images = load_image_folder(folder, size=_image_size(pipe), channels=pipe.vae.config.in_channels)
    table = embed(pipe, ["", *captions])
    choices = [torch.tensor([i + 1]) for i in range(len(captions))]
    return TrainSet(encode(pipe.vae, images), table, choices, null=0, drop=drop)


@torch.no_grad()
def distill_trainset(
    teacher_pipe,
    conditions: list,
    num: int,
    steps: int = 25,
    guidance: float = DEFAULT_GUIDANCE,
    seed: int = 0,
    drop: float = 0.1,
    progress: bool = True,
) -> TrainSet:
    """Latents the teacher pipeline generates for `conditions` (prompts or labels, cycled to `num`), paired with them.

    The latents are the pipeline's own final latents (`output_type="latent"`), generated with classifier-free
    guidance as the pipeline is used, seeded per image as in `sample`.
    """
    text = is_text_pipeline(teacher_pipe)
    if text != isinstance(conditions[0], str):
        kind = "--distill-prompts" if text else "--distill-class-labels"
        raise ConfigError(f"this pipeline is {'text-to-image' if text else 'class-conditional'}: give {kind}")
    given = {"prompts": conditions} if text else {"class_labels": conditions}
    config = SampleConfig(num=num, steps=steps, seed=seed, guidance=guidance, batch_size=32, **given)
    latents = sample_pipeline(teacher_pipe, config, progress=progress, latents=True)
    picks = [i % len(conditions) for i in range(num)]  # image i was made from condition i mod count
    choices = [torch.tensor([p + 1]) for p in picks]
    if text:
        table = embed(teacher_pipe, ["", *conditions])
        return TrainSet(latents, table, choices, null=0, drop=drop)
    table = torch.tensor([NULL_CLASS, *conditions])
    return TrainSet(latents, table, choices, null=0, drop=drop)
