"""The sampler as a lever: which solver and how many evaluations, the first thing `slimfusion optimize` searches.

No step is registered here (sampling is `slimfusion sample`, not a recipe verb that makes a model); the chosen
sampler travels with the optimized model as its own (`get_meta(model)["sampler"]`), as a step-distilled one's does.
"""

from __future__ import annotations

from slimfusion.diffusion.schedulers import SOLVERS
from slimfusion.registry import Build, Lever, register_lever

# Deterministic solvers with one model evaluation per step (so steps = evaluations): the fast multistep solvers of
# steps_digits.md and DDIM. Stochastic solvers cannot be compared on identical noise step for step, Heun costs two
# evaluations a step; both stay reachable by `--knob solver.scheduler=...`.
SEARCHED_SOLVERS = ("ddim", "dpm++2m", "dpm++3m", "unipc", "deis")
SEARCHED_STEPS = (4, 5, 6, 8, 10, 12, 15, 20, 25)


def _use_solver(build: Build, knobs: dict) -> None:
    build.sampling.update(scheduler=knobs["scheduler"], steps=knobs["steps"])


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
        knobs={"scheduler": SEARCHED_SOLVERS, "steps": SEARCHED_STEPS},
        apply=_use_solver,
        describe=lambda knobs: f"{knobs['scheduler']} {knobs['steps']}",
        allowed=_solver_allowed,
        cost_knob="steps",
    )
)
