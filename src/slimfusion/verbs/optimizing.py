"""The optimize step: a recipe can end with the search, and the CLI's `optimize` parses into these options."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from slimfusion.optimize import OptimizeConfig, optimize
from slimfusion.registry import config_of, register
from slimfusion.subject import Subject
from slimfusion.verbs.compress import read_conditions


class OptimizeOptions(OptimizeConfig):
    """optimize's options: OptimizeConfig with prompts as a prompts file and class labels as "3,7"."""

    @model_validator(mode="before")
    @classmethod
    def _command_line_forms(cls, values):
        return read_conditions(values, "prompts", "class_labels") if isinstance(values, dict) else values

    def technique(self) -> OptimizeConfig:
        return config_of(self, OptimizeConfig)


@register("optimize", OptimizeOptions, api={OptimizeConfig: optimize})
def run_optimize(subject: Subject, options: OptimizeOptions, folder: Path | None = None, progress: bool = True,
                 **context) -> Subject:  # fmt: skip
    """The search on the subject held in memory; in a recipe its run folder sits beside the step's model folder
    (`search/`) and the chosen model is the step's model (the original when nothing held the rule)."""
    search = None if folder is None else Path(folder).with_name("search")
    result = optimize(subject, options.technique(), out=search, progress=progress)
    if result.get("model"):
        return Subject.load(result["model"])
    return subject
