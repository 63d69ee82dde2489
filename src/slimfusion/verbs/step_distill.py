"""The distill-steps step: a few-step student (progressive or consistency distillation) of a model or pipeline."""

from __future__ import annotations

from pathlib import Path

from slimfusion.data import load_images
from slimfusion.data.prompts import read_prompts
from slimfusion.diffusion.schedulers import scheduler_from, stored_sampler
from slimfusion.errors import ConfigError
from slimfusion.models.families import check_trainable, family_name
from slimfusion.models.io import load
from slimfusion.models.meta import history, original_source
from slimfusion.pipeline_sample import pipeline_kind
from slimfusion.prune.conditioning import parse_class_labels
from slimfusion.registry import Build, Lever, config_of, register, register_lever
from slimfusion.subject import Subject
from slimfusion.train.recovery.recover import prepare_recovery
from slimfusion.train.recovery.step_distill import StepDistillConfig, distill_steps
from slimfusion.verbs.training import DISTILL_STEPS, TrainingInputs, is_conditional

COMPRESSING = ("prune", "prune-depth", "sparsify", "lowrank")  # steps after which the model is no teacher of itself


class StepDistillOptions(StepDistillConfig, TrainingInputs):
    """distill-steps' options: StepDistillConfig plus data, teacher and checkpointing."""

    def technique(self) -> StepDistillConfig:
        return config_of(self, StepDistillConfig)


def teacher_source(student, teacher: str | None) -> str | None:
    """--teacher, else the original a compressed student was made from; None: the model teaches itself.

    A compressed student without a recorded original is refused (distilling it from itself would only keep its
    compression damage), as is a model that is already a step-distilled student.
    """
    if teacher is not None:
        return teacher
    if stored_sampler(student) is not None:
        raise ConfigError("the model is already step-distilled; pass --teacher (the model it was distilled from)")
    source = original_source(student)
    if source is None and any(step["step"] in COMPRESSING for step in history(student)):
        raise ConfigError("a compressed student needs --teacher (no original is recorded in its history)")
    return source


def _distill_model(model, config: StepDistillConfig, data=None, teacher=None, **inputs):
    """`apply(model, StepDistillConfig(...), data=images, teacher=original)`."""
    if data is None:
        raise ConfigError("distill-steps needs training data: apply(model, config, data=images)")
    return distill_steps(model, data, config, teacher=teacher, **inputs)


@register("distill-steps", StepDistillOptions, launched=True, api={StepDistillConfig: _distill_model})
def run_distill_steps(
    subject: Subject, options: StepDistillOptions, folder: Path | None = None, progress: bool = True, **context
):
    config = options.technique()
    if (options.checkpoint_every or options.resume) and folder is None:
        raise ConfigError("checkpoints and --resume need an output folder")
    run = {"out": folder, "checkpoint_every": options.checkpoint_every, "resume": options.resume}
    run["on_round"] = context.get("on_round")  # Python callers: keep every progressive round's student
    student = subject.denoiser
    check_trainable(student)
    source = teacher_source(student, options.teacher)
    if is_conditional(subject):
        if config.method == "consistency" and pipeline_kind(subject.obj) == "class":
            raise ConfigError(
                "a consistency student samples with LCMScheduler, whose step noise DiTPipeline draws from torch's"
                " global generator (not per image): use --method progressive for DiT pipelines"
            )
        prompts = read_prompts(options.distill_prompts) if options.distill_prompts is not None else None
        labels = None
        if options.distill_class_labels is not None:
            labels = parse_class_labels(options.distill_class_labels, None).tolist()
        recovery = prepare_recovery(
            subject.obj, student, options.data, source, prompts, labels, options.distill_num, DISTILL_STEPS,
            config.guidance, config.seed, drop=0.0,
        )  # fmt: skip
        distill_steps(student, recovery.data, config, teacher=recovery.teacher, progress=progress, **run)
        subject.set_denoiser(student)
        subject.obj.scheduler = scheduler_from(stored_sampler(student)["config"])
        return subject
    if config.guidance != 1.0:
        raise ConfigError("--guidance applies to conditional pipelines; an unconditional model has none to fold in")
    teacher = None if source is None else load(source)
    if teacher is not None and teacher.config.sample_size != student.config.sample_size:
        raise ConfigError("--teacher works on another image size than the model")
    images = load_images(options.data or "digits", size=student.config.sample_size, channels=student.config.in_channels)
    distill_steps(student, images, config, teacher=teacher, progress=progress, **run)
    return subject


def _distill_student(build: Build, knobs: dict) -> None:
    """A consistency student of the original, trained once per setting (its evaluations are a sampling knob)."""
    config = StepDistillConfig(method=knobs["method"], loss=knobs["loss"], steps=knobs["train_steps"])
    distill_steps(build.model, build.inputs["data"], config, teacher=build.inputs["teacher"], progress=False)


def _student_sampling(sampling: dict, knobs: dict) -> None:
    sampling.update(scheduler="lcm", steps=knobs["nfe"])  # the student's own LCMScheduler, its grid from its meta


def _student_label(knobs: dict) -> str:
    """ "consistency student 3 (pseudo-huber, 2500 steps)"; without the evaluations for the trained model itself."""
    nfe = f" {knobs['nfe']}" if "nfe" in knobs else ""
    return f"{knobs['method']} student{nfe} ({knobs['loss']}, {knobs['train_steps']} steps)"


def _distill_allowed(denoiser, knobs: dict, sampling: dict) -> str | None:
    if family_name(denoiser) != "UNet2DModel":
        return f"the distill lever trains unconditional UNets from --data; {family_name(denoiser)}: distill-steps"
    return None


# distill-steps' lever (trains): a consistency student with the pseudo-Huber distance (the best student of
# consistency_timesteps.md), sampled at 2-4 evaluations; after pruning it is a pruned student of the unpruned original
register_lever(
    Lever(
        "distill",
        "model",
        {"method": ("consistency",), "loss": ("pseudo-huber",), "train_steps": (2500,), "nfe": (2, 3, 4)},
        _distill_student,
        _student_label,
        allowed=_distill_allowed,
        stage=8,
        trains=True,
        cost_knob="nfe",
        samples=_student_sampling,
        sampling_knobs=("nfe",),
        excludes=("solver",),
    )
)
