"""Verbs that train: train (from scratch), finetune (recovery), distill-steps, train-features, train-builtin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from slimfusion.cli.app import app
from slimfusion.cli.common import (
    ModelArg,
    OutOpt,
    check_run_folder,
    is_main_process,
    make_config,
    refuse_existing,
    save_final,
    save_like_source,
)
from slimfusion.data import load_digits_split, load_images
from slimfusion.errors import SlimfusionError
from slimfusion.models.io import save
from slimfusion.models.meta import history
from slimfusion.models.zoo import build_architecture
from slimfusion.progress import console
from slimfusion.steps import Subject, option_defaults
from slimfusion.steps.step_distill import StepDistillOptions
from slimfusion.steps.step_distill import run_distill_steps as run_distill_step
from slimfusion.steps.training import FinetuneOptions, is_conditional
from slimfusion.steps.training import run_finetune as run_finetune_step
from slimfusion.train import TrainConfig, train_diffusion
from slimfusion.train.builtins import BuiltinConfig, build_digits_dit, build_digits_t2i, build_digits_vae
from slimfusion.train.builtins.classifier import ClassifierConfig, train_classifier
from slimfusion.train.builtins.text_encoder import TextEncoderConfig
from slimfusion.train.builtins.vae import VAEConfig

TUNE = option_defaults(FinetuneOptions)


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


DataOpt = Annotated[
    str | None, typer.Option(help="digits (default), digits:all, an image folder (pipelines: with captions)")
]
DistillPromptsOpt = Annotated[
    Path | None, typer.Option(help="data-free: the teacher pipeline generates training latents from these prompts")
]
DistillLabelsOpt = Annotated[str | None, typer.Option(help="data-free for DiT pipelines: class labels, e.g. 0,1,2")]
BatchOpt = Annotated[int, typer.Option(help="images per step (per process)")]
LrOpt = Annotated[float, typer.Option(help="AdamW learning rate after warm-up")]
EmaOpt = Annotated[float, typer.Option(help="EMA decay (the EMA weights are saved)")]
PrecisionOpt = Annotated[str, typer.Option(help="no | bf16 | fp16 (GPU)")]
SeedOpt = Annotated[int, typer.Option(help="seed for batches and noise")]
CheckpointOpt = Annotated[int, typer.Option(help="checkpoint (EMA model + training state) every N steps")]
ResumeOpt = Annotated[bool, typer.Option(help="continue exactly from the checkpoint in --out")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace --out if it exists")]


@app.command()
def finetune(
    model: ModelArg,
    out: OutOpt,
    data: DataOpt = None,
    steps: Annotated[int, typer.Option(help="optimizer steps")] = TUNE["steps"],
    teacher: Annotated[
        str | None, typer.Option(help="original model or pipeline to distil from (default: the one pruned from)")
    ] = None,
    distill: Annotated[
        float | None, typer.Option(help="output distillation weight W in [0, 1] (default: 1 with a teacher, else 0)")
    ] = None,
    feature_distill: Annotated[float, typer.Option(help="weight of block-output distillation")] = TUNE[
        "feature_distill"
    ],
    distill_prompts: DistillPromptsOpt = None,
    distill_class_labels: DistillLabelsOpt = None,
    distill_num: Annotated[int, typer.Option(help="data-free: latents the teacher generates")] = TUNE["distill_num"],
    guidance: Annotated[float, typer.Option(help="data-free: the teacher's guidance scale")] = TUNE["guidance"],
    batch_size: BatchOpt = TUNE["batch_size"],
    lr: LrOpt = TUNE["lr"],
    warmup_steps: Annotated[int, typer.Option(help="linear warm-up steps")] = TUNE["warmup_steps"],
    lr_decay: Annotated[str, typer.Option(help="after warm-up: constant | cosine (to 0 at the end)")] = TUNE[
        "lr_decay"
    ],
    ema_decay: EmaOpt = TUNE["ema_decay"],
    grad_clip: Annotated[float, typer.Option(help="max gradient norm")] = TUNE["grad_clip"],
    mixed_precision: PrecisionOpt = TUNE["mixed_precision"],
    seed: SeedOpt = TUNE["seed"],
    checkpoint_every: CheckpointOpt = TUNE["checkpoint_every"],
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Recover a compressed model: DDPM loss, optional distillation from --teacher, EMA weights saved.

    MODEL may be a text-to-image or DiT pipeline folder: it trains on VAE latents of --data (digits with prompts or
    labels, or images with one caption .txt each) or data-free on the teacher's own latents (--distill-prompts /
    --distill-class-labels), and --out is a pipeline folder. Multi-process: `accelerate launch -m slimfusion finetune`.
    """
    options = make_config(
        FinetuneOptions,
        data=data,
        steps=steps,
        teacher=teacher,
        distill=distill,
        feature_distill=feature_distill,
        distill_prompts=distill_prompts,
        distill_class_labels=distill_class_labels,
        distill_num=distill_num,
        guidance=guidance,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        lr_decay=lr_decay,
        ema_decay=ema_decay,
        grad_clip=grad_clip,
        mixed_precision=mixed_precision,
        seed=seed,
        checkpoint_every=checkpoint_every,
        resume=resume,
    )
    check_run_folder(out, resume, overwrite)
    subject = Subject.load(model)
    run_finetune_step(subject, options, out)
    if is_conditional(subject):
        if is_main_process():
            save_like_source(model, subject.denoiser, out, overwrite=True)
            console.print(f"saved {out}")
        return
    save_final(subject.denoiser, out)


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


STEP = option_defaults(StepDistillOptions)


@app.command("distill-steps")
def distill_steps(
    model: ModelArg,
    out: OutOpt,
    method: Annotated[str, typer.Option(help="progressive | consistency")] = STEP["method"],
    to_steps: Annotated[int, typer.Option(help="the student's sampling steps K")] = STEP["to_steps"],
    teacher: Annotated[
        str | None,
        typer.Option(help="model distilled from (default: the original a pruned model came from, else MODEL itself)"),
    ] = None,
    teacher_steps: Annotated[
        int | None,
        typer.Option(help="progressive: teacher's DDIM steps, K x 2^rounds (default >= 32); consistency: grid (50)"),
    ] = None,
    data: DataOpt = None,
    distill_prompts: DistillPromptsOpt = None,
    distill_class_labels: DistillLabelsOpt = None,
    distill_num: Annotated[int, typer.Option(help="data-free: latents the teacher generates")] = STEP["distill_num"],
    guidance: Annotated[
        float, typer.Option(help="conditional pipelines: the teacher's guidance scale, folded into the student")
    ] = STEP["guidance"],
    loss: Annotated[str, typer.Option(help="consistency: mse (LCM) | pseudo-huber (iCT / ECT)")] = STEP["loss"],
    steps: Annotated[int, typer.Option(help="optimizer steps (progressive: per round)")] = STEP["steps"],
    batch_size: BatchOpt = STEP["batch_size"],
    lr: LrOpt = STEP["lr"],
    ema_decay: EmaOpt = STEP["ema_decay"],
    mixed_precision: PrecisionOpt = STEP["mixed_precision"],
    seed: SeedOpt = STEP["seed"],
    checkpoint_every: CheckpointOpt = STEP["checkpoint_every"],
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Distil MODEL into a student that samples in --to-steps steps (progressive or consistency distillation).

    The saved student carries its sampler (DDIM with trailing spacing, or LCMScheduler) as scheduler_config.json:
    `slimfusion sample` uses it by default, and plain diffusers loads it with the scheduler class's from_pretrained.
    A pruned / sparse MODEL is distilled from its unpruned original (--teacher, or the one recorded in its history).
    """
    options = make_config(
        StepDistillOptions,
        method=method,
        to_steps=to_steps,
        teacher=teacher,
        teacher_steps=teacher_steps,
        data=data,
        distill_prompts=distill_prompts,
        distill_class_labels=distill_class_labels,
        distill_num=distill_num,
        guidance=guidance,
        loss=loss,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        ema_decay=ema_decay,
        mixed_precision=mixed_precision,
        seed=seed,
        checkpoint_every=checkpoint_every,
        resume=resume,
    )
    check_run_folder(out, resume, overwrite)
    subject = Subject.load(model)
    run_distill_step(subject, options, out)
    if is_main_process():
        subject.save(out, overwrite=True)
        console.print(f"saved {out}")
