"""The registry itself: verb -> (options model, runner, technique config), `apply` dispatching on a config, and the
levers: each technique's searchable knobs, declared beside its step, which `slimfusion optimize` composes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from slimfusion.errors import ConfigError


@dataclass(frozen=True)
class Step:
    """One verb: its options, what runs it, and which technique config classes it stands for.

    `makes_model`: the step returns the next model (prune, lowrank...); False for evaluate / report.
    `launched`: a step that trains or samples may run under `accelerate launch` when a recipe asks for processes.
    `api`: the Python entry `apply(model, config, **inputs)` dispatches to, per config class.
    """

    name: str
    options: type[BaseModel]
    run: Callable[..., Any]
    makes_model: bool = True
    launched: bool = False
    api: dict[type, Callable[..., Any]] = field(default_factory=dict)


STEPS: dict[str, Step] = {}


def register(
    name: str,
    options: type[BaseModel],
    makes_model: bool = True,
    launched: bool = False,
    api: dict[type, Callable[..., Any]] | None = None,
):
    """Decorator: register `run(subject, options, folder) -> Subject | None` as the verb `name`."""

    def wrap(run: Callable[..., Any]) -> Callable[..., Any]:
        if name in STEPS:
            raise ValueError(f"step {name!r} is registered twice")
        STEPS[name] = Step(name, options, run, makes_model, launched, dict(api or {}))
        return run

    return wrap


@dataclass
class Build:
    """One candidate under construction, what a lever's `apply` changes in place.

    `model`: the denoiser copy being changed (model levers); `plan_model`: that denoiser as it stood before the
    precision / compile stages (skip plans are made on it); `sampling`: SampleConfig fields (sampler levers);
    `plan`: the SkipPlan sampling applies (plan levers); `inputs`: what training levers learn from ("teacher": the
    original, "data": training images or None; "batch": the batch the search samples at, an engine's static batch).
    """

    model: Any
    plan_model: Any = None
    sampling: dict[str, Any] = field(default_factory=dict)
    plan: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lever:
    """A searchable knob of a technique, declared once beside its step: the optimizer reads nothing else.

    `kind`: "sampler" (changes `Build.sampling`), "model" (changes `Build.model`, applied in `stage` order; models are
    built once per combination and shared by the candidates that differ only in sampler or plan) or "plan".
    `knobs`: every knob with the values searched by default (a user narrows them, never widens past a knob's type).
    `allowed(denoiser, knobs, sampling)`: None when the setting can run on that model with that sampler, else why not.
    `apply(build, knobs)`: the change. `trains`: needs training (searched only with `--levers all`).
    `cost_knob`: a knob whose larger values only cost more time (a solver's steps): once a candidate holds the
    quality rule, the same candidate with a larger value is not screened.
    `samples(sampling, knobs)`: a model lever whose result has a sampler of its own (a step-distilled student) sets
    the sampling here; `sampling_knobs` are the knobs only it reads (the model is built once for all their values).
    `excludes`: levers it is never combined with (a student samples with its own sampler, not a searched solver).
    `exact`: changes speed, not the images beyond float rounding (torch.compile; a callable of the knobs when only
    some settings are: OpenVINO float32, not its int8): a composition with it is screened as soon as its other levers
    held together, before the compositions that add a lossy lever, and it shares the verdicts of that setting on the
    same samples (its images are that setting's); a confirmed one is timed itself.
    `share(knobs)`: a plan lever's kept MACs known before its plan is made (adaptive caching's fitted target): the
    screen's order reads it instead of making every plan up front (a plan that is fitted costs seconds each).
    """

    name: str
    kind: Literal["sampler", "model", "plan"]
    knobs: dict[str, tuple]
    apply: Callable[[Build, dict], None]
    describe: Callable[[dict], str]
    allowed: Callable[[Any, dict, dict], str | None] = lambda denoiser, knobs, sampling: None
    stage: int = 0
    trains: bool = False
    cost_knob: str | None = None
    samples: Callable[[dict, dict], None] | None = None
    sampling_knobs: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    exact: bool | Callable[[dict], bool] = False
    share: Callable[[dict], float] | None = None

    def is_exact(self, knobs: dict) -> bool:
        return self.exact(knobs) if callable(self.exact) else self.exact

    def model_knobs(self, knobs: dict) -> dict:
        """The knobs that change the model (what a built or trained model is keyed by)."""
        return {k: v for k, v in knobs.items() if k not in self.sampling_knobs}


LEVERS: dict[str, Lever] = {}
PLAN_STAGE = 20  # model levers before this stage change the weights the plan is made on; later ones (precision) not


def register_lever(lever: Lever) -> Lever:
    """Add a technique's lever to the search space of `slimfusion optimize` (beside the technique's `@register`)."""
    if lever.name in LEVERS:
        raise ValueError(f"lever {lever.name!r} is registered twice")
    LEVERS[lever.name] = lever
    return lever


def technique_configs() -> dict[type, Callable[..., Any]]:
    """Every technique config class with the library function that applies it."""
    return {cls: fn for step in STEPS.values() for cls, fn in step.api.items()}


def apply(model_or_pipeline, config: BaseModel, **inputs):
    """Apply a technique by its config, as torchao's `quantize_(model, config)`: `apply(unet, StructuralConfig(...),
    data=images)` is `prune(unet, config, data=images)`; the registered function decides what `inputs` it takes."""
    table = technique_configs()
    fn = table.get(type(config))
    if fn is None:
        names = ", ".join(sorted(c.__name__ for c in table))
        raise ConfigError(f"no technique is registered for {type(config).__name__}; registered: {names}")
    return fn(model_or_pipeline, config, **inputs)


def default(options: type[BaseModel], name: str) -> Any:
    """The default of one option (what the CLI shows: defaults live in the options / config classes only)."""
    return options.model_fields[name].get_default(call_default_factory=True)


def option_defaults(options: type[BaseModel]) -> dict[str, Any]:
    """Every option's default, for a command's signature."""
    return {name: default(options, name) for name in options.model_fields}


def config_of(options: BaseModel, cls: type[BaseModel]) -> BaseModel:
    """The technique config inside a step's options: the fields the config class has, those left unset staying
    unset (a distilled model's own sampler fills unset sampling fields)."""
    return cls(**options.model_dump(include=set(cls.model_fields), exclude_unset=True))
