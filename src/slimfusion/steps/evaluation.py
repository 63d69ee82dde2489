"""Steps that measure rather than change: evaluate (a result row) and report (the run folder's report)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from slimfusion.evaluate import EvaluateConfig, evaluate
from slimfusion.registry import config_of, register
from slimfusion.report import write_report
from slimfusion.steps.compress import comma_list, read_conditions
from slimfusion.subject import Subject


class EvaluateOptions(EvaluateConfig):
    """evaluate's options: EvaluateConfig (metrics also as a comma list, prompts as a prompts file, class labels as
    "3,7") plus the reference data and the original model (a recipe's default: the model it started from)."""

    ref: str | None = None
    original: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _command_line_forms(cls, values):
        if not isinstance(values, dict):
            return values
        values = read_conditions(values, "prompts", "class_labels")
        if isinstance(values.get("metrics"), str):
            values["metrics"] = comma_list(values["metrics"])
        return values

    def technique(self) -> EvaluateConfig:
        return config_of(self, EvaluateConfig)


@register("evaluate", EvaluateOptions, makes_model=False, launched=True)
def run_evaluate(
    subject: Subject, options: EvaluateOptions, folder: Path | None = None, progress: bool = True, **context
):
    """The result dict of `slimfusion.evaluate` on the subject held in memory."""
    return evaluate(subject.obj, options.technique(), ref=options.ref, original=options.original, progress=progress)


class ReportOptions(BaseModel):
    """report takes no options."""

    model_config = ConfigDict(extra="forbid")


@register("report", ReportOptions, makes_model=False)
def run_report(subject: Subject, options: ReportOptions, folder: Path | None = None, **context):
    """report.md and report.html of the run folder (`context["run_dir"]`, a recipe's --out)."""
    return write_report(context["run_dir"])
