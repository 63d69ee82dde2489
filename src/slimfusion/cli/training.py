"""Verbs that train: train (from scratch), finetune (recovery), distill-steps, train-features, train-builtin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from slimfusion.cli.app import app
from slimfusion.cli.common import (
    OutOpt,
    check_run_folder,
    is_main_process,
    make_config,
    refuse_existing,
    save_final,
)
from slimfusion.cli.derived import SAVED, derived_command
from slimfusion.data import load_digits_split, load_images
from slimfusion.errors import SlimfusionError
from slimfusion.models.io import save
from slimfusion.models.meta import history
from slimfusion.models.zoo import build_architecture
from slimfusion.progress import console
from slimfusion.subject import Subject
from slimfusion.train import TrainConfig, train_diffusion
from slimfusion.train.builtins import BuiltinConfig, build_digits_dit, build_digits_t2i, build_digits_vae
from slimfusion.train.builtins.classifier import ClassifierConfig, train_classifier
from slimfusion.train.builtins.text_encoder import TextEncoderConfig
from slimfusion.train.builtins.vae import VAEConfig
from slimfusion.verbs.step_distill import StepDistillOptions
from slimfusion.verbs.step_distill import run_distill_steps as run_distill_step
from slimfusion.verbs.training import FinetuneOptions, is_conditional
from slimfusion.verbs.training import run_finetune as run_finetune_step


@app.command()
def train(
    out: OutOpt,
    data: Annotated[str, typer.Option(help="digits, digits:all or an image folder")] = "digits",
    arch: Annotated[str, typer.Option(help="architecture to initialise (see slimfusion.models.zoo.ARCHITECTURES)")] = (
        "digits-ddpm"
    ),
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 8000,
    batch_size: Annotated[int, typer.Option(help="images per step (per process)")] = 64,
    lr: Annotated[float, typer.Option(help="peak AdamW learning rate")] = 5e-4,
    seed: Annotated[int, typer.Option(help="seed for init, batches and noise")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="checkpoint (EMA model + training state) every N steps")] = 0,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a diffusion model from scratch with the DDPM loss (how builtin:digits-ddpm was made)."""
    config = make_config(TrainConfig, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    check_run_folder(out, resume, overwrite)
    torch.manual_seed(seed)
    model = build_architecture(arch)
    images = load_images(data, size=model.config.sample_size, channels=model.config.in_channels)
    train_diffusion(model, images, config, out=out, checkpoint_every=checkpoint_every, resume=resume)
    save_final(model, out)


ResumeOpt = Annotated[bool, typer.Option(help="continue exactly from the checkpoint in --out")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace --out if it exists")]


def _finetune(model: str, options: FinetuneOptions, out: Path, overwrite: bool) -> None:
    check_run_folder(out, options.resume, overwrite)
    subject = Subject.load(model)
    run_finetune_step(subject, options, out)
    if is_conditional(subject):
        if is_main_process():
            subject.save(out, overwrite=True)
            console.print(f"saved {out}")
        return
    save_final(subject.denoiser, out)


derived_command(
    "finetune",
    FinetuneOptions,
    _finetune,
    SAVED,
    doc="Recover a compressed model: DDPM loss, optional distillation from --teacher, EMA weights saved.\n\n"
    "MODEL may be a text-to-image or DiT pipeline folder: it trains on VAE latents of --data (digits with prompts or"
    " labels, or images with one caption .txt each) or data-free on the teacher's own latents (--distill-prompts /"
    " --distill-class-labels), and --out is a pipeline folder. Multi-process: `accelerate launch -m slimfusion"
    " finetune`.",
)


@app.command("train-features")
def train_features(
    out: OutOpt,
    epochs: Annotated[int, typer.Option(help="passes over the digits train split")] = 40,
    seed: Annotated[int, typer.Option(help="seed for init, order and augmentation")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train the digit classifier that gives the offline FD feature space (how builtin:digits-features was made)."""
    refuse_existing(out, overwrite)
    config = ClassifierConfig(epochs=epochs, seed=seed)
    model = train_classifier(*load_digits_split("train"), config, test=load_digits_split("test"))
    effect = history(model)[-1]["effect"]
    save(model, out, overwrite=True)
    console.print(f"test accuracy {effect['test_accuracy']:.4f} (train {effect['train_accuracy']:.4f}); saved {out}")


@app.command("train-builtin")
def train_builtin(
    name: Annotated[str, typer.Argument(help="digits-vae, digits-t2i or digits-dit")],
    out: OutOpt,
    steps: Annotated[int, typer.Option(help="steps (0: default, VAE 3000, denoisers 6000)")] = 0,
    vae: Annotated[str, typer.Option(help="the VAE the latent models use")] = "builtin:digits-vae",
    seed: Annotated[int, typer.Option(help="seed for everything")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Make a latent built-in from scratch (how builtin:digits-vae / -t2i / -dit were made).

    The denoiser's run folder OUT.unet-run / OUT.dit-run checkpoints every 500 steps; running the same command again
    resumes it.
    """
    builders = ("digits-vae", "digits-t2i", "digits-dit")
    if name not in builders:
        raise SlimfusionError(f"unknown built-in {name!r}; choose one of {', '.join(builders)}")
    refuse_existing(out, overwrite)
    chosen = {"steps": steps} if steps else {}  # 0: each builder's own default
    if name == "digits-vae":
        build_digits_vae(out, make_config(VAEConfig, seed=seed, **chosen))
    elif name == "digits-t2i":
        config = make_config(BuiltinConfig, seed=seed, **chosen)
        build_digits_t2i(out, config, TextEncoderConfig(seed=seed), vae_source=vae)
    else:
        build_digits_dit(out, make_config(BuiltinConfig, seed=seed, **chosen), vae_source=vae)
    console.print(f"saved {out}")


def _distill_steps(model: str, options: StepDistillOptions, out: Path, overwrite: bool) -> None:
    check_run_folder(out, options.resume, overwrite)
    subject = Subject.load(model)
    run_distill_step(subject, options, out)
    if is_main_process():
        subject.save(out, overwrite=True)
        console.print(f"saved {out}")


derived_command(
    "distill-steps",
    StepDistillOptions,
    _distill_steps,
    SAVED,
    doc="Distil MODEL into a student that samples in --to-steps steps (progressive or consistency distillation).\n\n"
    "The saved student carries its sampler (DDIM with trailing spacing, or LCMScheduler) as scheduler_config.json:"
    " `slimfusion sample` uses it by default, and plain diffusers loads it with the scheduler class's from_pretrained."
    " A pruned / sparse MODEL is distilled from its unpruned original (--teacher, or the one recorded in its history).",
)
