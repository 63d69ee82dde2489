"""Recovery of a compressed conditional pipeline: choose its training set and its teacher, as `finetune` is asked.

From data (`digits`, or an image folder with captions) or data-free (`distill_prompts` / `distill_labels`: the
teacher pipeline generates the latents). The teacher is `teacher` when given, else the pipeline the model was pruned
from (recorded in its history), so `finetune pruned/ --distill-prompts P` needs nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.meta import original_source
from slimfusion.pipelines import denoiser_of, load_pipeline
from slimfusion.sample import DEFAULT_GUIDANCE
from slimfusion.train.conditional_data import caption_folder_trainset, digits_trainset, distill_trainset
from slimfusion.train.trainset import TrainSet


@dataclass
class Recovery:
    """What a conditional fine-tuning run needs: the student's pipeline, the training set and the teacher."""

    pipe: object
    data: TrainSet
    teacher: nn.Module | None
    data_free: bool


def pipeline_of(source: str) -> str:
    """`builtin:digits-t2i#unet` -> `builtin:digits-t2i`: the pipeline a component was loaded from."""
    return source.split("#", 1)[0]


def prepare_recovery(
    pipe,
    student: nn.Module,
    data: str | None,
    teacher: str | None,
    distill_prompts: list[str] | None = None,
    distill_labels: list[int] | None = None,
    distill_num: int = 512,
    distill_steps: int = 25,
    guidance: float = DEFAULT_GUIDANCE,
    seed: int = 0,
    drop: float = 0.1,
) -> Recovery:
    """Build the training set (latents + conditions) and load the teacher's denoiser for `student` of `pipe`."""
    data_free = distill_prompts is not None or distill_labels is not None
    if data_free and data is not None:
        raise ConfigError("--data and --distill-prompts / --distill-class-labels exclude each other")
    teacher_source = teacher or original_source(student)
    teacher_pipe = None
    if teacher_source is not None:
        teacher_pipe = load_pipeline(pipeline_of(teacher_source))
    if data_free:
        if teacher_pipe is None:
            raise ConfigError("data-free distillation needs the original pipeline: pass --teacher")
        conditions = distill_prompts if distill_prompts is not None else distill_labels
        trainset = distill_trainset(teacher_pipe, conditions, distill_num, distill_steps, guidance, seed, drop)
    elif data in (None, "digits"):
        trainset = digits_trainset(pipe, drop)
    else:
        trainset = caption_folder_trainset(pipe, data, drop)
    teacher_model = None if teacher_pipe is None else denoiser_of(teacher_pipe)
    return Recovery(pipe, trainset, teacher_model, data_free)
