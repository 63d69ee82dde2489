"""The skip plan: which blocks reuse their previous-step output at which sampling step, as a versioned JSON file.

A plan belongs to one model (class + a hash of its config and weight shapes), one scheduler kind and one step count;
using it with anything else is refused before any output exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from slimfusion.errors import ConfigError, CorruptFileError, NotAModelError
from slimfusion.models.meta import get_meta
from slimfusion.skip.graph import kept_macs_ratio, unit_macs

PLAN_FORMAT = "slimfusion-skip-plan"
PLAN_VERSION = 1
PLAN_FILE = "skip_plan.json"
LEGACY_SCHEDULERS = {"DDIMScheduler": "ddim", "DDPMScheduler": "ddpm"}  # what plans recorded before solver names
MACS_TOLERANCE = 0.01  # a plan whose stated kept-MACs share is off by more than one point is refused
_MEASURED: dict[tuple[str, str], float] = {}  # (model fingerprint, plan json) -> kept MACs share


class SkipPlan(BaseModel):
    """A timestep-wise skip plan.

    Args:
        model_class (`str`): class name of the denoiser it was made for.
        model_hash (`str`): `model_fingerprint` of that denoiser (config + weight shapes).
        scheduler (`str`): the solver the steps refer to, a name of `slimfusion.diffusion.SOLVERS` (plans written
            before solvers were named say "DDIMScheduler" / "DDPMScheduler", read as "ddim" / "ddpm").
        steps (`int`): sampling steps; `reuse` has one entry per step.
        units (`list[str]`): the blocks the plan may reuse (from the family table).
        reuse (`list[list[str]]`): per step, the blocks that return their previous output instead of computing
            (cascaded blocks included); step 0 reuses nothing.
        macs_ratio (`float`): kept share of the full sampling run's MACs.
        method (`str`): "dipgo", "deepcache", "taylorseer", "adaptive" (`reuse` lists what may be reused; the
            gate decides at run time, `macs_ratio` is what calibration kept) or "none".
        settings (`dict`): the method's settings.
    """

    model_config = ConfigDict(extra="forbid")
    format: str = PLAN_FORMAT
    version: int = PLAN_VERSION
    model_class: str
    model_hash: str
    scheduler: str
    steps: int = Field(ge=1)
    units: list[str]
    reuse: list[list[str]]
    macs_ratio: float = Field(ge=0, le=1)
    method: str
    settings: dict[str, Any] = {}

    def reused_at(self, step: int) -> frozenset[str]:
        return frozenset(self.reuse[step])

    def check_consistent(self) -> None:
        """Refuse a plan whose per-step lists do not match its own step count and units."""
        if len(self.reuse) != self.steps:
            raise CorruptFileError(f"skip plan lists {len(self.reuse)} steps but says steps={self.steps}")
        unknown = {u for step in self.reuse for u in step} - set(self.units)
        if unknown:
            raise CorruptFileError(f"skip plan reuses unknown block(s): {', '.join(sorted(unknown))}")
        if self.reuse and self.reuse[0]:
            raise CorruptFileError("skip plan reuses blocks at step 0, where nothing has been computed yet")


def model_fingerprint(model: nn.Module) -> str:
    """sha256 (16 hex) of the model's class, config and every weight's name and shape: pruning changes it."""
    config = {k: v for k, v in dict(getattr(model, "config", {})).items() if not k.startswith("_")}
    shapes = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    text = json.dumps([type(model).__name__, config, shapes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_plan(plan: SkipPlan, path: str | Path) -> Path:
    """Write the plan as indented JSON (atomically: a temporary file renamed into place)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # created exclusively under a fresh name (never through a link planted at a predictable path), then renamed
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(plan.model_dump_json(indent=1))
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return target


def load_plan(path: str | Path) -> SkipPlan:
    """Read and validate a plan file: missing, corrupt, foreign or newer-version files are refused in one line."""
    file = Path(path)
    if file.is_dir():
        file = file / PLAN_FILE
    if not file.is_file():
        raise NotAModelError(f"{file}: no such skip plan")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{file}: not a JSON skip plan ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
        raise CorruptFileError(f"{file}: not a slimfusion skip plan")
    if not isinstance(raw.get("version"), int) or raw["version"] > PLAN_VERSION:
        raise CorruptFileError(
            f"{file}: skip plan version {raw.get('version')} is newer than this slimfusion reads ({PLAN_VERSION})"
        )
    try:
        plan = SkipPlan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CorruptFileError(f"{file}: invalid skip plan ({where}: {first['msg']})") from exc
    plan.check_consistent()
    return plan


def check_plan(plan: SkipPlan, model: nn.Module, scheduler: str | None = None, steps: int | None = None) -> None:
    """Refuse, in one line, a plan made for another model, scheduler or step count."""
    if plan.model_class != type(model).__name__:
        raise ConfigError(f"skip plan was made for a {plan.model_class}, not this {type(model).__name__}")
    if plan.model_hash != model_fingerprint(model):
        raise ConfigError("skip plan was made for another model (config or weight shapes differ); make a new plan")
    if scheduler is not None and solver_of(scheduler) != solver_of(plan.scheduler):
        raise ConfigError(
            f"skip plan was made for the {solver_of(plan.scheduler)} scheduler, not {solver_of(scheduler)}"
        )
    if steps is not None and steps != plan.steps:
        raise ConfigError(f"skip plan was made for {plan.steps} sampling steps, not {steps}")
    measured = measured_macs_ratio(plan, model)
    if plan.method == "adaptive":  # decided at run time: the file states what calibration kept, at least the floor
        if plan.macs_ratio < measured - MACS_TOLERANCE or "threshold" not in plan.settings:
            raise ConfigError(
                f"adaptive skip plan states {plan.macs_ratio:.3f} of the MACs kept, below the {measured:.3f} it keeps"
                " when every step reuses (or it has no threshold): the file was edited or is corrupt"
            )
    elif abs(measured - plan.macs_ratio) > MACS_TOLERANCE:
        raise ConfigError(
            f"skip plan states {plan.macs_ratio:.3f} of the MACs kept, but on this model it keeps {measured:.3f};"
            " the file was edited or is corrupt: make a new plan"
        )


def solver_of(recorded: str) -> str:
    """A plan's or caller's scheduler as a solver name ("DDIMScheduler" -> "ddim")."""
    return LEGACY_SCHEDULERS.get(recorded, recorded)


def measured_macs_ratio(plan: SkipPlan, model: nn.Module) -> float:
    """The kept share of the sampling MACs, measured on the model (per-block MACs of one forward), not read from
    the file."""
    missing = [u for u in plan.units if not _has_module(model, u)]
    if missing:
        raise ConfigError(f"skip plan names block(s) this {type(model).__name__} lacks: {', '.join(missing[:3])}")
    key = (model_fingerprint(model), plan.model_dump_json(exclude={"macs_ratio", "settings"}))
    if key not in _MEASURED:
        macs, total = unit_macs(model, plan.units)
        _MEASURED[key] = kept_macs_ratio(plan.reuse, macs, total)
    return _MEASURED[key]


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def store_plan(model: nn.Module, plan: SkipPlan) -> None:
    """Attach `plan` to `model`'s metadata: `save` writes it into slimfusion.json and sample / evaluate apply it."""
    check_plan(plan, model)
    get_meta(model)["skip_plan"] = plan.model_dump(mode="json")
