"""The finetune step: recover a compressed model (diffusion loss, optional distillation from the original)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from slimfusion.data import load_images
from slimfusion.data.prompts import read_prompts
from slimfusion.errors import ConfigError
from slimfusion.models.families import check_trainable
from slimfusion.models.families import pipeline as layout
from slimfusion.models.io import load
from slimfusion.prune.conditioning import parse_class_labels
from slimfusion.registry import config_of, register
from slimfusion.sample import DEFAULT_GUIDANCE
from slimfusion.subject import Subject
from slimfusion.train import FinetuneConfig, finetune
from slimfusion.train.recovery.recover import prepare_recovery

DISTILL_STEPS = 25  # DDIM steps of the teacher's data-free latents


class TrainingInputs(BaseModel):
    """What a training step learns from and how it checkpoints: shared by finetune and distill-steps."""

    data: str | None = Field(
        None, description="digits (default), digits:all, an image folder (pipelines: with captions)"
    )
    teacher: str | None = Field(
        None, description="the model to distil from (default: the original recorded in a compressed model's history)"
    )
    distill_prompts: Path | None = Field(
        None, description="data-free: the teacher pipeline generates training latents from these prompts"
    )
    distill_class_labels: str | None = Field(None, description="data-free for DiT pipelines: class labels, e.g. 0,1,2")
    distill_num: int = Field(512, ge=1, description="data-free: latents the teacher generates")
    checkpoint_every: int = Field(0, ge=0, description="checkpoint (EMA model + training state) every N steps")
    resume: bool = Field(False, description="continue exactly from the checkpoint in --out")

    @model_validator(mode="after")
    def _one_condition_source(self):
        if self.distill_prompts is not None and self.distill_class_labels is not None:
            raise ValueError("give --distill-prompts or --distill-class-labels, not both")
        return self


class FinetuneOptions(FinetuneConfig, TrainingInputs):
    """finetune's options: FinetuneConfig plus where the data and the teacher come from, and checkpointing."""

    guidance: float = Field(DEFAULT_GUIDANCE, ge=0, description="data-free: the teacher's guidance scale")

    def technique(self) -> FinetuneConfig:
        return config_of(self, FinetuneConfig)


def is_conditional(subject: Subject) -> bool:
    """A text-to-image or DiT pipeline (trained on VAE latents with conditions)."""
    return subject.is_pipeline and layout.is_conditional(layout.present(subject.obj))


def _finetune_model(model, config: FinetuneConfig, data=None, teacher=None, **inputs):
    """`apply(model, FinetuneConfig(...), data=images, teacher=original)`."""
    if data is None:
        raise ConfigError("finetune needs training data: apply(model, config, data=images)")
    return finetune(model, data, config, teacher=teacher, **inputs)


@register("finetune", FinetuneOptions, launched=True, api={FinetuneConfig: _finetune_model})
def run_finetune(
    subject: Subject, options: FinetuneOptions, folder: Path | None = None, progress: bool = True, **context
):
    config = options.technique()
    data_free = options.distill_prompts is not None or options.distill_class_labels is not None
    conditional = is_conditional(subject)
    if not conditional and (config.distill or config.feature_distill) and options.teacher is None:
        raise ConfigError("--distill / --feature-distill need --teacher (the original model)")
    if data_free and not conditional:
        raise ConfigError("--distill-prompts / --distill-class-labels need a text-to-image or DiT pipeline folder")
    if (options.checkpoint_every or options.resume) and folder is None:
        raise ConfigError("checkpoints and --resume need an output folder")
    run = {"out": folder, "checkpoint_every": options.checkpoint_every, "resume": options.resume}
    if conditional:
        student = load(folder) if options.resume else subject.denoiser
        check_trainable(student)
        prompts = read_prompts(options.distill_prompts) if options.distill_prompts is not None else None
        labels = None
        if options.distill_class_labels is not None:
            labels = parse_class_labels(options.distill_class_labels, None).tolist()
        recovery = prepare_recovery(
            subject.obj, student, options.data, options.teacher, prompts, labels, options.distill_num,
            DISTILL_STEPS, options.guidance, options.seed,
        )  # fmt: skip
        if (config.distill or config.feature_distill) and recovery.teacher is None:
            raise ConfigError("distillation needs --teacher (no original recorded in the model's history)")
        finetune(student, recovery.data, config, teacher=recovery.teacher, progress=progress, **run)
        subject.set_denoiser(student)
        return subject
    student = subject.denoiser
    check_trainable(student)
    original = load(options.teacher) if options.teacher is not None else None
    if original is not None and original.config.sample_size != student.config.sample_size:
        raise ConfigError("--teacher works on another image size than the model")
    size, channels = student.config.sample_size, student.config.in_channels
    images = load_images(options.data or "digits", size=size, channels=channels)
    finetune(student, images, config, teacher=original, progress=progress, **run)
    return subject
