"""One scheduler factory: any diffusers solver by name, built from the schedule a model was trained with.

A solver is one row of `SOLVERS` (diffusers class + the config it needs), so adding one touches nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import diffusers
from diffusers import DDPMScheduler
from torch import nn

from slimfusion.errors import ConfigError
from slimfusion.models.meta import get_meta


@dataclass(frozen=True)
class Solver:
    """A diffusers scheduler class and the config entries that make it this solver."""

    class_name: str
    config: dict = field(default_factory=dict)
    karras: bool = False  # whether `use_karras_sigmas` exists on the class
    note: str = ""
    stochastic: bool = False  # draws fresh noise at every step


SOLVERS: dict[str, Solver] = {
    "ddim": Solver("DDIMScheduler", note="deterministic (eta 0), first order"),
    "ddpm": Solver("DDPMScheduler", note="ancestral; needs many steps", stochastic=True),
    "dpm++2m": Solver(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, True, "multistep, 2nd"
    ),
    "dpm++3m": Solver(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}, True, "multistep, 3rd"
    ),
    "dpm++2m-sde": Solver(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        True,
        "stochastic",
        True,
    ),
    "unipc": Solver("UniPCMultistepScheduler", {"solver_order": 2}, True, "predictor-corrector, 2nd order"),
    "deis": Solver("DEISMultistepScheduler", {"solver_order": 2}, True, "multistep exponential integrator"),
    "euler": Solver("EulerDiscreteScheduler", {}, True, "first order in sigma"),
    "heun": Solver("HeunDiscreteScheduler", {}, True, "second order; two evaluations per step"),
    "lcm": Solver("LCMScheduler", note="consistency models (step-distilled students)", stochastic=True),
}
SPACINGS = ("leading", "trailing", "linspace")
# What a model was trained with: every solver takes these from the model's schedule. The rest (spacing, offsets,
# clipping, orders) is the solver's own unless asked for. Passing the whole config is not enough: diffusers'
# from_config drops the keys a config lists in `_use_default_values`, so a DDPM config's default betas (1e-4..0.02)
# would silently become HeunDiscreteScheduler's / LCMScheduler's own defaults (8.5e-4..0.012).
SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")


def default_scheduler_config(num_train_timesteps: int = 1000, clip_sample: bool = True) -> dict:
    """The DDPM schedule the built-in models are trained with (linear betas 1e-4..0.02, epsilon prediction).

    `clip_sample` clips predicted clean samples to [-1, 1] while sampling: right for pixels, wrong for latents.
    """
    return dict(DDPMScheduler(num_train_timesteps=num_train_timesteps, clip_sample=clip_sample).config)


def schedule_of(model: nn.Module, num_train_timesteps: int = 1000) -> dict:
    """The training schedule stored with a model (its `scheduler` metadata), or the built-ins' default."""
    return get_meta(model).get("scheduler") or default_scheduler_config(num_train_timesteps)


def noise_scheduler(model: nn.Module, num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The forward (noising) process of a model's training schedule: what losses and calibration add noise with."""
    return DDPMScheduler.from_config(schedule_of(model, num_train_timesteps))


def known_solver(name: str) -> str:
    """`name` if it is a row of the table (a pydantic field validator: ValueError otherwise)."""
    if name not in SOLVERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SOLVERS)}")
    return name


def solver_class(name: str):
    if name not in SOLVERS:
        raise ConfigError(f"unknown scheduler {name!r}; choose one of {', '.join(SOLVERS)}")
    return getattr(diffusers, SOLVERS[name].class_name)


def solver_name(scheduler) -> str | None:
    """The table name of a scheduler object (None when no row matches it)."""
    for name, solver in SOLVERS.items():
        config = scheduler.config
        if type(scheduler).__name__ == solver.class_name and all(config.get(k) == v for k, v in solver.config.items()):
            return name
    return None


def build_scheduler(config: dict, name: str, spacing: str | None = None, karras: bool = False):
    """Scheduler `name` over the training schedule `config` (a diffusers scheduler config of any class).

    `spacing` sets `timestep_spacing` (default: the class's own); `karras` uses Karras sigmas where the class has
    them. The class's own defaults stand for everything else, so "ddim" on a DDIM config is that same scheduler.
    """
    cls, solver = solver_class(name), SOLVERS[name]
    if config.get("_class_name") != cls.__name__ and name not in ("ddim", "ddpm"):
        config = {k: config[k] for k in SCHEDULE_KEYS if k in config}  # the model's schedule, the solver's defaults
    overrides = dict(solver.config)
    if spacing is not None:
        if spacing not in SPACINGS:
            raise ConfigError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        overrides["timestep_spacing"] = spacing
    if karras:
        if not solver.karras:
            raise ConfigError(f"--karras: the {name} scheduler has no Karras sigmas")
        overrides["use_karras_sigmas"] = True
    return cls.from_config(config, **overrides)


def scheduler_from(config: dict):
    """A scheduler object from a full saved config (its `_class_name` names the diffusers class)."""
    return getattr(diffusers, config["_class_name"]).from_config(config)


def stored_sampler(model: nn.Module) -> dict | None:
    """The sampler a step-distilled model was trained for (solver, steps, spacing, guidance, scheduler config)."""
    return get_meta(model).get("sampler")


def make_scheduler(
    model: nn.Module,
    name: str,
    steps: int,
    spacing: str | None = None,
    karras: bool = False,
    timesteps: Sequence[int] | None = None,
):
    """Scheduler `name` built from the model's training schedule, set to `steps` steps or to the explicit
    `timesteps` (a step-distilled model's own scheduler config when `name` is its solver: e.g. LCMScheduler with
    the grid it was distilled on)."""
    stored = stored_sampler(model)
    if stored and stored["scheduler"] == name and spacing in (None, stored["spacing"]) and not karras:
        scheduler = scheduler_from(stored["config"])
    else:
        scheduler = build_scheduler(schedule_of(model), name, spacing, karras)
    if steps > scheduler.config.num_train_timesteps:
        raise ConfigError(f"--steps {steps} exceeds the model's {scheduler.config.num_train_timesteps} train timesteps")
    check_timesteps(scheduler, name, timesteps)
    set_steps(scheduler, steps, timesteps)
    return scheduler


# diffusers keeps no uniform record of explicit timesteps (DDPM / LCM have `custom_timesteps`, DPM-Solver has not), so
# the list is kept on the scheduler object under this name, for the chain to restart it with.
EXPLICIT = "slimfusion_timesteps"


def check_timesteps(scheduler, name: str, timesteps: Sequence[int] | None) -> None:
    """Refuse explicit timesteps the scheduler cannot take or the schedule does not have, in one line."""
    if timesteps is None:
        return
    if "timesteps" not in inspect.signature(scheduler.set_timesteps).parameters:
        takes = [n for n in SOLVERS if "timesteps" in inspect.signature(solver_class(n).set_timesteps).parameters]
        raise ConfigError(f"--timesteps: the {name} scheduler takes none; these do: {', '.join(takes)}")
    if max(timesteps) >= scheduler.config.num_train_timesteps:
        raise ConfigError(
            f"--timesteps {max(timesteps)} is past the model's last train timestep "
            f"{scheduler.config.num_train_timesteps - 1}"
        )


def set_steps(scheduler, steps: int, timesteps: Sequence[int] | None = None) -> None:
    """Set `scheduler` to `steps` evenly spaced steps (its spacing), or to the explicit descending `timesteps`."""
    if timesteps is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=list(timesteps))
    setattr(scheduler, EXPLICIT, None if timesteps is None else list(timesteps))


def restart(scheduler) -> None:
    """Set `scheduler` to its steps afresh (multistep solvers keep a history of earlier outputs)."""
    set_steps(scheduler, scheduler.num_inference_steps, getattr(scheduler, EXPLICIT, None))


def use_scheduler(pipe, name: str, spacing: str | None = None, karras: bool = False) -> None:
    """Give a pipeline scheduler `name` over its own training schedule (kept as is when it already is that one)."""
    if solver_name(pipe.scheduler) == name and spacing is None and not karras:
        return
    pipe.scheduler = build_scheduler(pipe.scheduler.config, name, spacing, karras)
