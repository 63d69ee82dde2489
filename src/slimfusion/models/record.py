"""The shape of `slimfusion.json`, checked with pydantic when a folder is read: a field of the wrong type is refused in
one line before any of it is used (unknown extra fields are kept: a newer minor writer may add some)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slimfusion.errors import CorruptFileError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class HistoryEntry(_Open):
    step: str
    config: dict[str, Any] = Field(default_factory=dict)
    effect: dict[str, Any] = Field(default_factory=dict)


class SamplerRecord(_Open):
    """A step-distilled model's sampler (slimfusion/train/recovery/step_distill.py)."""

    scheduler: str
    steps: int = Field(ge=1, le=1000)
    spacing: str | None = None
    guidance: float | None = Field(None, ge=0)
    config: dict[str, Any]


class MetaRecord(_Open):
    format_version: int
    slimfusion_version: str | None = None
    class_: str | None = Field(None, alias="class")
    shape_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)
    scheduler: dict[str, Any] | None = None
    skip_plan: dict[str, Any] | None = None
    storage: Literal["dense", "compact"] = "dense"
    sampler: SamplerRecord | None = None
    removed_modules: list[list[str]] = Field(default_factory=list)  # per depth step, the module paths it removed
    transforms: list[dict[str, Any]] = Field(default_factory=list)


def check_record(data: dict[str, Any], file) -> None:
    """Refuse a `slimfusion.json` whose fields have the wrong types (CorruptFileError naming the field)."""
    try:
        record = MetaRecord.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise CorruptFileError(f"{file}: field {field!r}: {err['msg']}") from exc
    if record.sampler is not None and "_class_name" not in record.sampler.config:
        raise CorruptFileError(f"{file}: field 'sampler.config' names no scheduler class (_class_name)")
