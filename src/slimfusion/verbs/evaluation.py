"""Steps that measure rather than change: evaluate (a result row) and report (the run folder's report)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slimfusion.evaluate import EvaluateConfig, Metric, evaluate
from slimfusion.registry import config_of, register
from slimfusion.report import write_report
from slimfusion.subject import Subject
from slimfusion.verbs.compress import comma_list
from slimfusion.verbs.sampling import sampling_forms


class EvaluateOptions(EvaluateConfig):
    """evaluate's options: EvaluateConfig (metrics also as a comma list, prompts as a prompts file, class labels as
    "3,7") plus the reference data and the original model (a recipe's default: the model it started from)."""

    ref: str | None = Field(None, description="reference data or statistics .npz, for fd / kd / fid / kid")
    original: str | None = Field(None, description="uncompressed model or its samples, for ssim / psnr")
    metrics: list[Metric] | None = Field(
        None, description="comma list of fd,kd,fid,kid,accuracy,clip,ssim,psnr,cost (default: all possible)"
    )
    prompts: list[str] | None = Field(None, min_length=1, description="text-to-image: a file of prompts, one per line")
    class_labels: list[int] | None = Field(
        None, min_length=1, description="class-conditional (DiT): comma list of labels, e.g. 3,7"
    )
    timesteps: list[int] | None = Field(
        None, min_length=1, description="explicit descending timesteps, e.g. 999,599,299 (sets --steps)"
    )

    @model_validator(mode="before")
    @classmethod
    def _command_line_forms(cls, values):
        values = sampling_forms(values)
        if isinstance(values, dict) and isinstance(values.get("metrics"), str):
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
