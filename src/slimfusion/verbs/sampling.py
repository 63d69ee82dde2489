"""The sampler: sample's options (their command-line forms), and the solver lever, the first thing `slimfusion
optimize` searches.

No step is registered here (sampling is `slimfusion sample`, not a recipe verb that makes a model); the chosen
sampler travels with the optimized model as its own (`get_meta(model)["sampler"]`), as a step-distilled one's does.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from slimfusion.diffusion.schedulers import SOLVERS
from slimfusion.registry import Build, Lever, register_lever
from slimfusion.sample import SampleConfig
from slimfusion.verbs.compress import read_conditions

# Deterministic solvers with one model evaluation per step (so steps = evaluations): the fast multistep solvers of
# steps_digits.md and DDIM. Stochastic solvers cannot be compared on identical noise step for step, Heun costs two
# evaluations a step; both stay reachable by `--knob solver.scheduler=...`.
SEARCHED_SOLVERS = ("ddim", "dpm++2m", "dpm++3m", "unipc", "deis")
SEARCHED_STEPS = (4, 5, 6, 8, 10, 12, 15, 20, 25)
# Where the few steps sit: "leading" is DDIM 50's own grid (at 5 steps UniPC ties DDIM 50 on 1,024 samples with it
# and is worse with the multistep solvers' default "linspace": FD +0.05 [-0.08, +0.19] vs +0.34 [+0.02, +0.61]).
SEARCHED_SPACINGS = ("leading", "linspace")


def _use_solver(build: Build, knobs: dict) -> None:
    build.sampling.update(scheduler=knobs["scheduler"], steps=knobs["steps"], spacing=knobs["spacing"])


def _solver_allowed(denoiser, knobs: dict, sampling: dict) -> str | None:
    if knobs["scheduler"] not in SOLVERS:
        return f"unknown solver {knobs['scheduler']!r}"
    if knobs["scheduler"] == "heun":
        return "heun takes two evaluations a step (searched solvers take one)"
    return None


SOLVER = register_lever(
    Lever(
        name="solver",
        kind="sampler",
        knobs={"scheduler": SEARCHED_SOLVERS, "steps": SEARCHED_STEPS, "spacing": SEARCHED_SPACINGS},
        apply=_use_solver,
        describe=lambda knobs: f"{knobs['scheduler']} {knobs['steps']} {knobs['spacing']}",
        allowed=_solver_allowed,
        cost_knob="steps",
    )
)


def sampling_forms(values):
    """Command-line forms of sampling options: a prompts file, class labels "3,7", timesteps "999,599,299"."""
    if not isinstance(values, dict):
        return values
    if values.get("prompts") is not None and values.get("class_labels") is not None:
        raise ValueError("give --prompts (text-to-image) or --class-labels (class-conditional), not both")
    values = read_conditions(values, "prompts", "class_labels")
    if isinstance(values.get("timesteps"), str):
        try:
            values["timesteps"] = [int(v) for v in values["timesteps"].split(",")]
        except ValueError:
            raise ValueError(
                f"--timesteps {values['timesteps']!r}: whole numbers with commas, e.g. 999,599,299"
            ) from None
    return values


class SampleOptions(SampleConfig):
    """sample's options: SampleConfig with prompts as a prompts file, class labels as "3,7" and timesteps as
    "999,599,299" (the config's fields, restated only for their command-line help)."""

    prompts: list[str] | None = Field(
        None, min_length=1, description="text-to-image: a file of prompts, one per line (image i: prompt i mod count)"
    )
    class_labels: list[int] | None = Field(
        None, min_length=1, description="class-conditional (DiT): comma list of labels, e.g. 3,7"
    )
    timesteps: list[int] | None = Field(
        None, min_length=1, description="explicit descending timesteps, e.g. 999,599,299 (sets --steps)"
    )

    _forms = model_validator(mode="before")(classmethod(lambda cls, values: sampling_forms(values)))
