"""Sampling conditional models through diffusers' own pipeline classes (no hand-written text-to-image loop).

The guarantees of unconditional sampling hold: image i starts from its own generator seeded by (seed, i) (diffusers'
`randn_tensor` draws item k of a batch from generator k), and it gets condition `i mod len(conditions)`, so a result
does not depend on the batch size or on how the indices are split across `accelerate launch` processes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from slimfusion.diffusion import SOLVERS, in_batches, use_scheduler
from slimfusion.diffusion.latents import encode
from slimfusion.diffusion.schedulers import check_timesteps
from slimfusion.errors import ConfigError
from slimfusion.models.families.pipeline import class_count, is_class_pipeline, is_text_pipeline


def conditions_of(config, indices: Sequence[int]) -> list:
    """The prompt or class label of each image index (cycling through the config's list)."""
    values = config.prompts if config.prompts is not None else config.class_labels
    return [values[i % len(values)] for i in indices]


def pipeline_kind(pipe) -> str:
    """ "text" for text-to-image pipelines (a tokenizer and text encoder), "class" for DiT, else refused."""
    if is_text_pipeline(pipe):
        return "text"
    if is_class_pipeline(pipe):
        return "class"
    raise ConfigError(f"{type(pipe).__name__}: conditional sampling supports text-to-image and DiT pipelines")


def check_conditions(pipe, config) -> None:
    """Refuse, in one line, conditions the pipeline cannot take (before anything is sampled or written)."""
    kind = pipeline_kind(pipe)
    if kind == "text" and config.prompts is None:
        raise ConfigError(f"{type(pipe).__name__} is text-to-image: give --prompts FILE")
    if kind == "class":
        if config.class_labels is None:
            raise ConfigError(f"{type(pipe).__name__} is class-conditional: give --class-labels, e.g. 3,7")
        classes = class_count(pipe)
        bad = [c for c in config.class_labels if not 0 <= c < classes]
        if bad:
            raise ConfigError(f"--class-labels {bad[0]} is out of range: the model has classes 0..{classes - 1}")
        if SOLVERS[config.scheduler].stochastic:
            raise ConfigError(
                f"DiTPipeline draws {config.scheduler} step noise from torch's global generator (not seeded per "
                "image); use a deterministic --scheduler such as ddim, dpm++2m or unipc"
            )
        if config.negative_prompt is not None:
            raise ConfigError("--negative-prompt is for text-to-image pipelines")
    if kind == "text" and config.class_labels is not None:
        raise ConfigError("--class-labels is for class-conditional (DiT) pipelines; give --prompts")
    if config.timesteps is not None and "timesteps" not in inspect.signature(type(pipe).__call__).parameters:
        raise ConfigError(f"--timesteps: {type(pipe).__name__} takes no explicit timesteps")


@torch.no_grad()
def sample_pipeline(
    pipe, config, indices: Sequence[int] | None = None, progress: bool = True, latents: bool = False
) -> torch.Tensor:
    """Images [N, C, H, W] in [-1, 1] (or their scaled VAE latents) from a text-to-image or DiT pipeline.

    Args:
        pipe: a diffusers `StableDiffusionPipeline`-like or `DiTPipeline` object (e.g. from `load_pipeline`).
        config (`SampleConfig`): count, steps, scheduler, seed, batch size, prompts or class labels, guidance.
        indices (`Sequence[int]`, optional): which image indices to make (default: all).
        progress (`bool`, defaults to True): show a progress bar.
        latents (`bool`, defaults to False): return the final latents (what a latent denoiser trains on) instead;
            DiTPipeline always decodes, so its images are encoded again through the same VAE.
    """
    check_conditions(pipe, config)
    use_scheduler(pipe, config.scheduler, config.spacing, config.karras)
    check_timesteps(pipe.scheduler, config.scheduler, config.timesteps)
    pipe.set_progress_bar_config(disable=True)
    kind = pipeline_kind(pipe)
    indices = list(range(config.num)) if indices is None else list(indices)

    def generate(chunk: list[int], gens: list[torch.Generator]) -> torch.Tensor:
        conds = conditions_of(config, chunk)
        common = {"num_inference_steps": config.steps, "guidance_scale": config.guidance, "generator": gens}
        if config.timesteps is not None:
            common["timesteps"] = config.timesteps
        if kind == "text":
            negative = None if config.negative_prompt is None else [config.negative_prompt] * len(chunk)
            output = "latent" if latents else "pt"
            images = pipe(prompt=conds, negative_prompt=negative, output_type=output, **common).images.float().cpu()
            return images if latents else images * 2 - 1
        images = pipe(class_labels=conds, output_type="pt", **common).images.float().cpu() * 2 - 1
        return encode(pipe.vae, images) if latents else images

    return in_batches(indices, config.seed, config.batch_size, generate, progress)
