"""Step distillation: a student that samples in a few steps, trained on its teacher's sampling trajectory.

- progressive (Salimans & Ho 2022): rounds that halve the step count; in each round one student DDIM step learns to
  land where two teacher DDIM steps land (the previous round's student is the next round's teacher).
- consistency (consistency distillation as in LCM, Luo et al. 2023): the student maps any point of the teacher's
  probability-flow ODE (one DDIM step of the teacher apart) to the same clean sample; sampled in 1-8 steps with
  diffusers' LCMScheduler, whose boundary-condition scalings the student is trained with.

Conditional students get the teacher's classifier-free guidance folded in, so they sample with guidance 1. The
student model is changed in place and carries its sampler (`get_meta(model)["sampler"]`), which `sample` uses by
default and `save` writes as scheduler_config.json for plain diffusers.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from slimfusion.diffusion import noise_scheduler, predictor, schedule_of, split_prediction
from slimfusion.diffusion.schedulers import build_scheduler
from slimfusion.errors import ConfigError
from slimfusion.models.families import family_of
from slimfusion.models.io import load, save
from slimfusion.models.meta import get_meta
from slimfusion.train.config import TrainConfig
from slimfusion.train.loop import fit
from slimfusion.train.trainset import TrainSet, as_trainset

PROGRESSIVE_FROM = 32  # the teacher's DDIM steps a progressive run starts from (then halves): DDIM-32 ~ DDIM-50 here
CONSISTENCY_GRID = 50  # LCM's default ODE grid (`original_inference_steps`): the teacher jumps 1000/50 timesteps
ROUND_FILE = "distill_round.json"


class StepDistillConfig(TrainConfig):
    """Settings of a step distillation run.

    Args:
        method (`str`, defaults to "consistency"): "progressive" or "consistency".
        to_steps (`int`, defaults to 4): the student's sampling steps K.
        teacher_steps (`int`, optional): progressive: the teacher's DDIM steps, K x 2^rounds (default: the smallest
            such number >= 32); consistency: the ODE grid the teacher steps on (default 50).
        guidance (`float`, defaults to 1.0): conditional models: the teacher's classifier-free guidance scale, folded
            into the student (which then samples with guidance 1).
        loss (`str`, defaults to "mse"): consistency: the distance between the student's and the target's clean
            estimates, "mse" (LCM) or "pseudo-huber" (improved consistency training / ECT: sqrt(|d|^2 + c^2) - c
            per example, c = 0.00054 sqrt(dimensions); less pulled by the few far-off targets).
        steps (`int`, defaults to 1500): optimizer steps (progressive: per round).
        lr (`float`, defaults to 1e-4): AdamW learning rate after warm-up.
        warmup_steps (`int`, defaults to 50): linear warm-up length.
        (other fields as in `TrainConfig`)
    """

    method: Literal["progressive", "consistency"] = "consistency"
    to_steps: int = Field(4, ge=1, le=500)
    teacher_steps: int | None = Field(None, ge=2, le=1000)
    guidance: float = Field(1.0, ge=0)
    loss: Literal["mse", "pseudo-huber"] = "mse"
    steps: int = Field(1500, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(50, ge=0)

    @model_validator(mode="after")
    def _steps_fit(self) -> StepDistillConfig:
        teacher = self.teacher_of()
        if self.to_steps >= teacher:
            raise ValueError(f"--to-steps {self.to_steps} must be below the teacher's {teacher} steps")
        if self.method == "progressive":
            ratio = teacher // self.to_steps
            if teacher % self.to_steps or ratio & (ratio - 1):
                raise ValueError(f"progressive: the teacher's steps ({teacher}) must be --to-steps x a power of 2")
            if self.loss != "mse":
                raise ValueError(f"--loss {self.loss} is for consistency distillation (progressive: SNR-weighted MSE)")
        return self

    def teacher_of(self) -> int:
        """The teacher's step count (the default resolved)."""
        if self.teacher_steps is not None:
            return self.teacher_steps
        if self.method == "consistency":
            return CONSISTENCY_GRID
        return self.to_steps * 2 ** max(1, math.ceil(math.log2(PROGRESSIVE_FROM / self.to_steps)))

    def rounds(self) -> int:
        return 1 if self.method == "consistency" else int(math.log2(self.teacher_of() // self.to_steps))


class _Process:
    """The noising process of a schedule, per timestep: coefficients, prediction -> (clean, noise), one DDIM jump.

    Timestep -1 stands for the clean end of the chain (alpha-bar 1), as DDIM's last step with `set_alpha_to_one`.
    """

    def __init__(self, noising):
        self.alphas = noising.alphas_cumprod
        self.kind = noising.config.prediction_type
        self.clip = bool(noising.config.clip_sample)

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.where(t >= 0, self.alphas.to(t.device)[t.clamp(min=0)], torch.ones((), device=t.device))
        shape = (-1,) + (1,) * (like.ndim - 1)
        return alpha.sqrt().view(shape).to(like.dtype), (1 - alpha).sqrt().view(shape).to(like.dtype)

    def split(self, z: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean sample and the noise a model output at `t` stands for (epsilon, v or sample prediction)."""
        return split_prediction(self.kind, z, out, *self.coefficients(t, z))

    def ddim(self, z: torch.Tensor, out: torch.Tensor, t: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step t -> `to` (clipping the clean estimate as the sampler does)."""
        clean, noise = self.split(z, out, t)
        if self.clip:
            clean = clean.clamp(-1, 1)
        a, s = self.coefficients(to, z)
        return a * clean + s * noise


class _Teacher:
    """The teacher's prediction at per-example timesteps, with classifier-free guidance when it is conditional."""

    def __init__(self, teacher: nn.Module, null: torch.Tensor | None, guidance: float):
        self.teacher, self.null, self.guidance = teacher, null, guidance

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        null = None if self.null is None else self.null.to(z.device)
        return predictor(self.teacher, cond, null, self.guidance)(z, t, 0)


class ProgressiveObjective:
    """One student step from a timestep of its grid must reach where two teacher steps reach (Salimans & Ho).

    The student's target is the clean sample x~ that makes its DDIM step land on the teacher's two-step result; the
    loss is |x~ - x^|^2 weighted by the SNR, i.e. the plain noise-prediction MSE for epsilon models.
    """

    def __init__(self, process: _Process, teacher: _Teacher, grid: torch.Tensor):
        self.process, self.teacher = process, teacher
        self.starts = grid[0::2]
        ends = torch.cat([grid[2::2], torch.tensor([-1])])
        size = int(grid.max()) + 1
        self.mid_of = torch.full((size,), -2, dtype=torch.long)
        self.end_of = torch.full((size,), -2, dtype=torch.long)
        self.mid_of[self.starts] = grid[1::2]
        self.end_of[self.starts] = ends

    def timesteps(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.starts[torch.randint(0, len(self.starts), (n,), generator=gen)]

    @torch.no_grad()
    def target(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The clean estimate x~ whose one DDIM step from (z, t) lands where the teacher's two steps land."""
        p = self.process
        mid, end = self.mid_of.to(t.device)[t], self.end_of.to(t.device)[t]
        z_mid = p.ddim(z, self.teacher(z, t, cond), t, mid)
        z_end = p.ddim(z_mid, self.teacher(z_mid, mid, cond), mid, end)
        (a_t, s_t), (a_e, s_e) = p.coefficients(t, z), p.coefficients(end, z)
        return (z_end - (s_e / s_t) * z) / (a_e - (s_e / s_t) * a_t)

    def loss(self, student, clean, cond, noise, t) -> torch.Tensor:
        a_t, s_t = self.process.coefficients(t, clean)
        z = a_t * clean + s_t * noise
        target = self.target(z, t, cond)
        pred, _ = student(z, t, cond)
        estimate, _ = self.process.split(z, pred.float(), t)
        return ((a_t / s_t) ** 2 * (estimate - target) ** 2).mean()


class ConsistencyObjective:
    """f(z_t, t) of the student must equal f(z_s, s) of itself (stop-gradient) one teacher DDIM step earlier.

    f(z, t) = c_skip(t) z + c_out(t) x^(z, t), with LCMScheduler's scalings, so the trained model samples with it; at
    s = 0, c_skip = 1 and the target is the teacher's step itself (the boundary condition). The target network is the
    student under stop-gradient (as improved consistency training and ECT do) rather than a second EMA copy.
    """

    def __init__(
        self, process: _Process, teacher: _Teacher, model: nn.Module, grid: int, train_timesteps: int, loss: str = "mse"
    ):
        self.process, self.teacher, self.model, self.distance = process, teacher, model, loss
        self.skip = train_timesteps // grid
        self.grid = torch.arange(1, grid + 1) * self.skip - 1
        self.denoise = family_of(model).denoise
        self.sigma_data, self.scaling = 0.5, 10.0  # LCMScheduler's defaults

    def timesteps(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.grid[torch.randint(0, len(self.grid), (n,), generator=gen)]

    def consistent(self, z: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scaled = (t.to(z.dtype) * self.scaling).view((-1,) + (1,) * (z.ndim - 1))
        c_skip = self.sigma_data**2 / (scaled**2 + self.sigma_data**2)
        c_out = scaled / (scaled**2 + self.sigma_data**2) ** 0.5
        return c_skip * z + c_out * self.process.split(z, out, t)[0]

    def loss(self, student, clean, cond, noise, t) -> torch.Tensor:
        p = self.process
        earlier = (t - self.skip).clamp(min=0)
        a_t, s_t = p.coefficients(t, clean)
        z = a_t * clean + s_t * noise
        with torch.no_grad():
            z_earlier = p.ddim(z, self.teacher(z, t, cond), t, earlier)
            target = self.consistent(z_earlier, self.denoise(self.model, z_earlier, earlier, cond).float(), earlier)
        pred, _ = student(z, t, cond)
        estimate = self.consistent(z, pred.float(), t)
        if self.distance == "mse":
            return F.mse_loss(estimate, target)
        return pseudo_huber(estimate, target)


def pseudo_huber(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Song & Dhariwal's (2023) pseudo-Huber distance sqrt(|x - y|^2 + c^2) - c per example, c = 0.00054 sqrt(d),
    averaged over the batch."""
    c = 0.00054 * x[0].numel() ** 0.5
    return (((x - y).flatten(1).pow(2).sum(1) + c**2).sqrt() - c).mean()


def student_sampler(schedule: dict, config: StepDistillConfig, steps: int | None = None) -> dict:
    """The sampler a student is trained for: solver name, steps (default `to_steps`), spacing, guidance and the full
    scheduler config."""
    if config.method == "progressive":
        scheduler = build_scheduler(schedule, "ddim", "trailing")
        name, spacing = "ddim", "trailing"
    else:
        scheduler = build_scheduler(schedule, "lcm")
        scheduler.register_to_config(original_inference_steps=config.teacher_of())
        name, spacing = "lcm", None
    return {
        "scheduler": name,
        "steps": steps or config.to_steps,
        "spacing": spacing,
        "guidance": 1.0,
        "config": {k: v for k, v in dict(scheduler.config).items() if k != "_use_default_values"}
        | {"_class_name": type(scheduler).__name__},
    }


def ddim_grid(schedule: dict, steps: int) -> torch.Tensor:
    """The timesteps of DDIM at `steps` steps with trailing spacing (nested: the grid at K is every other of 2K)."""
    scheduler = build_scheduler(schedule, "ddim", "trailing")
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.long()


def distill_steps(
    model: nn.Module,
    data: torch.Tensor | TrainSet,
    config: StepDistillConfig,
    teacher: nn.Module | None = None,
    out: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
    on_round: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Distil `model` in place into a `config.to_steps`-step sampler; returns it with its sampler recorded.

    Args:
        model (`nn.Module`): the student's starting point (the teacher itself, or a pruned / sparse copy of it).
        data (`torch.Tensor` or `TrainSet`): clean training inputs (images in [-1, 1], or latents with conditions).
        config (`StepDistillConfig`): method, target steps, training settings.
        teacher (`nn.Module`, optional): the model whose sampler is distilled (default: a frozen copy of `model`).
        out, checkpoint_every, resume, progress: as in `finetune` (checkpoints also hold a progressive round's
            teacher, so a killed run resumes exactly).
        stop_at (`int`, optional): stop after this many optimizer steps in all (tests: a killed run).
        on_round (`Callable`, optional): called with the student after each progressive round (its sampler set to
            that round's step count), e.g. to keep the 16-, 8- and 4-step students of one run.
    """
    data = as_trainset(data)
    if teacher is None:
        teacher = copy.deepcopy(model)
    teacher.eval().requires_grad_(False)
    schedule = schedule_of(model, config.num_train_timesteps)
    process = _Process(noise_scheduler(model, config.num_train_timesteps))
    null = None if data.null is None else data.table[data.null : data.null + 1]
    first_round = _resumed_round(out) if resume else 0
    for round_ in range(first_round, config.rounds()):
        if config.method == "progressive":
            if round_ > 0:
                teacher = _round_teacher(out, round_) if resume and round_ == first_round else _frozen(model)
            grid = ddim_grid(schedule, config.teacher_of() // 2**round_)
            guidance = config.guidance if round_ == 0 else 1.0  # a previous round's student has the guidance folded in
            objective = ProgressiveObjective(process, _Teacher(teacher, null, guidance), grid)
        else:
            guided, grid = _Teacher(teacher, null, config.guidance), config.teacher_of()
            objective = ConsistencyObjective(process, guided, model, grid, len(process.alphas), config.loss)
        round_stop = None if stop_at is None else stop_at - round_ * config.steps
        fit(
            model, data, config, "distill-steps", teacher=teacher, out=out, checkpoint_every=checkpoint_every,
            resume=resume and round_ == first_round, progress=progress,
            stop_at=round_stop if round_stop is not None and 0 < round_stop <= config.steps else None,
            objective=objective, extras=_round_writer(round_, teacher if round_ > 0 else None),
        )  # fmt: skip
        if round_stop is not None and round_stop <= config.steps:
            return model
        reached = config.teacher_of() // 2 ** (round_ + 1) if config.method == "progressive" else config.to_steps
        get_meta(model)["sampler"] = student_sampler(schedule, config, reached)
        if on_round is not None:
            on_round(model)
    return model


def _frozen(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def _round_writer(round_: int, teacher: nn.Module | None):
    """Checkpoint extras: which round is running and (after the first) that round's teacher."""

    def write(folder: Path) -> None:
        (folder / ROUND_FILE).write_text(json.dumps({"round": round_}))
        if teacher is not None:
            save(teacher, folder / "round_teacher")

    return write


def _resumed_round(out: str | Path | None) -> int:
    path = Path(out or ".") / ROUND_FILE
    if not path.is_file():
        return 0
    try:
        return int(json.loads(path.read_text())["round"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--resume: {path} is corrupt") from exc


def _round_teacher(out: str | Path | None, round_: int) -> nn.Module:
    folder = Path(out or ".") / "round_teacher"
    if not folder.is_dir():
        raise ConfigError(f"--resume: round {round_ + 1}'s teacher is missing from {out}")
    return _frozen(load(folder))
