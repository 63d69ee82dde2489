"""The technique registry: every verb a recipe or the CLI runs is one registered step.

A step is an options model (the verb's options, names as on the command line, defaults taken from the technique's
config class) and a `run(subject, options, folder)` that works on the model or pipeline held in memory. Recipes
validate each step against its registered options (a union keyed by the verb, no hand-kept table) and run the steps
in one process; the CLI parses its flags into the same options and calls the same `run`. Adding a technique is one
module with one `@register` (docs/architecture.md walks through it).
"""

from __future__ import annotations

from slimfusion.registry import (
    LEVERS,
    STEPS,
    Build,
    Lever,
    Step,
    apply,
    config_of,
    default,
    option_defaults,
    register,
    register_lever,
    technique_configs,
)
from slimfusion.subject import Subject

# importing the step modules registers them
from slimfusion.steps import compress, evaluation, sampling, skipping, step_distill, training  # noqa: E402, F401  isort: skip
from slimfusion.steps import optimizing  # noqa: E402, F401  isort: skip  (after the levers it searches)

__all__ = [
    "LEVERS",
    "STEPS",
    "Build",
    "Lever",
    "Step",
    "Subject",
    "apply",
    "config_of",
    "default",
    "option_defaults",
    "register",
    "register_lever",
    "technique_configs",
]
