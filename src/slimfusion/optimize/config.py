"""What `slimfusion optimize` searches for: the budget, the quality rule, the levers and the sample counts."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slimfusion.errors import ConfigError
from slimfusion.registry import LEVERS
from slimfusion.sample import DEFAULT_GUIDANCE

LEVER_SETS = ("training-free", "all")
RULE = re.compile(r"^(tie|fd-ratio=(?P<ratio>[0-9.]+)|(?P<metric>ssim|accuracy)>=(?P<floor>[0-9.]+))$")
UNITS = {"s": 1, "m": 60, "h": 3600}


def seconds(text: str | float) -> float:
    """A budget: 900, "90s", "20m", "1.5h" -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", str(text))
    if not match:
        raise ValueError(f"budget {text!r}: give seconds or a number with s / m / h, e.g. 20m")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def number_or_text(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class QualityRule(BaseModel):
    """A candidate keeps the original's quality when this holds on paired samples (identical noise).

    "tie": every primary metric (FD, KD; and accuracy for conditional models) is tie or better;
    "fd-ratio=R": the upper end of FD's interval stays within R x the original's FD;
    "ssim>=S" / "accuracy>=A": the lower end of that metric's interval is at least S / A.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["tie", "fd-ratio", "ssim", "accuracy"]
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> QualityRule:
        match = RULE.match(text.strip())
        if not match:
            raise ValueError(f"--quality {text!r}: give tie, fd-ratio=1.10, ssim>=0.95 or accuracy>=0.97")
        if match.group("ratio"):
            return cls(kind="fd-ratio", value=float(match.group("ratio")))
        if match.group("metric"):
            return cls(kind=match.group("metric"), value=float(match.group("floor")))
        return cls(kind="tie")

    def text(self) -> str:
        if self.kind == "tie":
            return "tie"
        return f"fd-ratio={self.value:g}" if self.kind == "fd-ratio" else f"{self.kind}>={self.value:g}"


class OptimizeConfig(BaseModel):
    """How to search.

    Args:
        budget (`float` or `str`, defaults to "15m"): wall-clock budget of the whole search (seconds, or "20m").
        quality (`str`, defaults to "tie"): the rule a candidate must meet (`QualityRule`).
        batch (`int`, defaults to 64): images per sampling call; speed is measured at this batch.
        levers (`list[str]`, defaults to "training-free"): "training-free", "all" or lever names (`LEVERS`).
        knobs (`dict[str, list]`, optional): narrow a lever's knob, e.g. {"solver.steps": [6, 8]}.
        screen_num / mid_num / confirm_num (`int`, defaults to 256 / 512 / 2000): samples of the three rungs: every
            candidate is screened on a few samples, the survivors on more (both on `seed`), and the fastest few are
            confirmed on `confirm_num` fresh samples (`seed` + 1, never seen by the search); mid_num 0 skips the middle.
        confirm (`int`, defaults to 3): candidates confirmed at most (fastest first; the first that holds is chosen).
        rounds (`int`, defaults to 5): timing rounds of a confirmed candidate, in alternation with the original.
        seed (`int`, defaults to 0): the search's sampling seed.
        base_scheduler / base_steps (defaults to "ddim" / 50): the original's sampler, the speed and quality baseline
            (a step-distilled model's own sampler when it has one).
        data (`str`, optional): training images for the levers that train (e.g. "digits:train"); without it,
            `levers: all` searches the training-free ones only, and a training lever named alone is refused.
        ref (`str`, defaults to "digits:all"): reference data (or statistics) of FD / KD.
        prompts / class_labels / guidance: the conditions of a conditional pipeline (image i: condition i mod len).
        resamples (`int`, defaults to 200): bootstrap resamples behind every interval.
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    budget: str | float = Field(900.0, description="wall-clock budget of the search: seconds, or 90s / 20m / 1.5h")
    quality: QualityRule = Field(
        QualityRule(kind="tie"), description="tie | fd-ratio=1.10 | ssim>=0.95 | accuracy>=0.97"
    )
    batch: int = Field(64, ge=1, description="images per sampling call; speed is measured at this batch")
    levers: list[str] = Field(["training-free"], description="training-free, all, or lever names with commas")
    knobs: dict[str, list] = Field({}, description="narrow knobs, e.g. 'solver.steps=6,8;cache.interval=2'")
    screen_num: int = Field(256, ge=8, description="samples of the screen (every candidate)")
    mid_num: int = Field(512, ge=0, description="samples of the recheck of the screen's survivors (0: none)")
    confirm_num: int = Field(2000, ge=8, description="fresh samples of the confirmation")
    confirm: int = Field(3, ge=1, description="candidates confirmed at most, fastest first")
    rounds: int = Field(5, ge=2, description="timing rounds in alternation with the original")
    seed: int = Field(0, ge=0, description="sampling seed of the search (the confirmation uses seed + 1)")
    base_scheduler: str = Field("ddim", description="the original's solver (the baseline)")
    base_steps: int = Field(50, ge=1, le=1000, description="the original's steps (the baseline)")
    data: str | None = Field(None, description="training images of the levers that train (prune's recovery)")
    ref: str = Field("digits:all", description="reference data or statistics of FD / KD")
    prompts: list[str] | None = Field(None, min_length=1, description="text-to-image: a prompts file")
    class_labels: list[int] | None = Field(None, min_length=1, description="DiT: class labels, e.g. 3,7")
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0, description="guidance scale of conditional pipelines")
    resamples: int = Field(200, ge=20, description="bootstrap resamples behind every interval")

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value):
        return seconds(value)

    @field_validator("quality", mode="before")
    @classmethod
    def _rule(cls, value):
        return QualityRule.parse(value) if isinstance(value, str) else value

    @field_validator("knobs", mode="before")
    @classmethod
    def _knob_text(cls, value):
        """ "solver.steps=6,8;cache.interval=2" -> {"solver.steps": [6, 8], "cache.interval": [2]}."""
        if not isinstance(value, str):
            return value
        knobs = {}
        for part in (p.strip() for p in value.split(";") if p.strip()):
            name, sep, values = part.partition("=")
            if not sep:
                raise ValueError(f"knob {part!r}: write lever.knob=v1,v2")
            knobs[name.strip()] = [number_or_text(v.strip()) for v in values.split(",") if v.strip()]
        return knobs

    @field_validator("levers", mode="before")
    @classmethod
    def _lever_list(cls, value):
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> OptimizeConfig:
        if self.prompts is not None and self.class_labels is not None:
            raise ValueError("give prompts (text-to-image) or class labels (class-conditional), not both")
        if self.mid_num and not self.screen_num < self.mid_num:
            raise ValueError(f"mid_num {self.mid_num} must exceed screen_num {self.screen_num} (or be 0)")
        return self

    def lever_names(self) -> list[str]:
        """The levers searched, checked against the registry (one-line refusal naming the registered ones)."""
        names: list[str] = []
        for item in self.levers:
            if item in LEVER_SETS:
                wanted = item == "all" and self.data is not None
                names += [n for n, lever in LEVERS.items() if wanted or not lever.trains]
            elif item in LEVERS:
                if LEVERS[item].trains and self.data is None:
                    raise ConfigError(f"lever {item!r} trains: give --data (its training images)")
                names.append(item)
            else:
                raise ConfigError(
                    f"unknown lever {item!r}; registered: {', '.join(LEVERS)} (or {', '.join(LEVER_SETS)})"
                )
        return list(dict.fromkeys(names))

    def knob_values(self, lever: str, knob: str) -> tuple:
        """A knob's searched values: the user's narrowing, else the lever's declared ones."""
        return tuple(self.knobs.get(f"{lever}.{knob}", LEVERS[lever].knobs[knob]))

    def check_knobs(self) -> None:
        for key in self.knobs:
            lever, _, knob = key.partition(".")
            if lever not in LEVERS or knob not in LEVERS[lever].knobs:
                known = ", ".join(f"{n}.{k}" for n, lv in LEVERS.items() for k in lv.knobs)
                raise ConfigError(f"unknown knob {key!r}; known: {known}")

    @property
    def conditional(self) -> bool:
        return self.prompts is not None or self.class_labels is not None
