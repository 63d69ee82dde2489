"""The search space, read from the lever registry: candidates (a setting per lever, or off) and building them.

A candidate is `{lever name: knob settings}`; a lever left out is off. Models are built once per combination of
model levers (a compiled model is compiled once) and shared by every candidate that differs only in its sampler or
plan; plans are made per candidate on the model as it stood before the precision / compile stages.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from torch import nn

from slimfusion.data import load_images
from slimfusion.models.io import load, save
from slimfusion.optimize.config import OptimizeConfig
from slimfusion.pipelines import denoiser_of, is_pipeline_object, with_denoiser
from slimfusion.registry import LEVERS, PLAN_STAGE, Build

Candidate = dict[str, dict[str, Any]]


def key_of(candidate: Candidate) -> str:
    """The candidate's identity in the journal and the frontier (canonical JSON)."""
    return json.dumps(candidate, sort_keys=True)


def label_of(candidate: Candidate) -> str:
    """ "unipc 6 + compile": the levers in application order, "original" when every lever is off."""
    parts = [LEVERS[name].describe(candidate[name]) for name in ordered(candidate)]
    return " + ".join(parts) or "original"


def ordered(candidate: Candidate) -> list[str]:
    """The candidate's levers in application order: sampler, model levers before the plan, plan, the rest."""
    rank = {"sampler": 0, "plan": PLAN_STAGE}
    return sorted(candidate, key=lambda n: (rank.get(LEVERS[n].kind, LEVERS[n].stage), n))


def settings(config: OptimizeConfig, name: str) -> list[dict]:
    """Every knob combination of one lever that the config searches."""
    knobs = LEVERS[name].knobs
    values = [config.knob_values(name, knob) for knob in knobs]
    return [dict(zip(knobs, combo, strict=True)) for combo in itertools.product(*values)]


def base_sampling(config: OptimizeConfig) -> dict:
    return {"scheduler": config.base_scheduler, "steps": config.base_steps}


def candidates(config: OptimizeConfig, denoiser: nn.Module) -> tuple[list[Candidate], dict[str, str]]:
    """Every candidate the levers allow on this denoiser (the all-off original excluded), and why the settings
    that cannot run were left out (one reason per lever setting)."""
    names = config.lever_names()
    options = [[None, *settings(config, name)] for name in names]
    found, refused = [], {}
    for combo in itertools.product(*options):
        candidate = {name: knobs for name, knobs in zip(names, combo, strict=True) if knobs is not None}
        if not candidate:
            continue
        clash = next((f"{n} is never combined with {o}" for n in candidate for o in LEVERS[n].excludes
                      if o in candidate), None)  # fmt: skip
        if clash is not None:
            refused.setdefault(clash, label_of(candidate))
            continue
        sampling = sampled_with(candidate, config)
        reason = next(
            (r for n in ordered(candidate) if (r := LEVERS[n].allowed(denoiser, candidate[n], sampling))), None
        )
        if reason is None:
            found.append(candidate)
        else:
            refused.setdefault(reason, label_of(candidate))
    return found, refused


def sampled_with(candidate: Candidate, config: OptimizeConfig) -> dict:
    """The sampling settings after the candidate's sampler levers."""
    build = Build(model=None, sampling=base_sampling(config))
    for name in ordered(candidate):
        if LEVERS[name].kind == "sampler":
            LEVERS[name].apply(build, candidate[name])
        elif LEVERS[name].samples is not None:  # a model lever whose result has its own sampler
            LEVERS[name].samples(build.sampling, candidate[name])
    return build.sampling


def model_part(candidate: Candidate) -> Candidate:
    """The candidate's model levers with the knobs that change the model (a student's evaluations left out)."""
    return {n: LEVERS[n].model_knobs(k) for n, k in candidate.items() if LEVERS[n].kind == "model"}


def model_key(candidate: Candidate) -> str:
    return key_of(model_part(candidate))


def trainings(model_only: Candidate) -> int:
    return sum(LEVERS[n].trains for n in model_only)


def parts(candidate: Candidate) -> list[Candidate]:
    """The candidate with one lever fewer, for each of its levers (none for a single lever)."""
    if len(candidate) < 2:
        return []
    return [{n: k for n, k in candidate.items() if n != name} for name in candidate]


def core(candidate: Candidate) -> Candidate:
    """The candidate without its exact levers (what decides its images)."""
    return {n: k for n, k in candidate.items() if not LEVERS[n].is_exact(k)}


def required_parts(candidate: Candidate) -> list[Candidate]:
    """What must have held before the candidate is screened: its lossy core when it has exact levers (compile on
    a setting that held changes only speed), else every part one lever smaller."""
    lossy = core(candidate)
    if len(lossy) < len(candidate):
        return [lossy] if lossy else []
    return parts(candidate)


def same_but_fewer_steps(faster: Candidate, slower: Candidate) -> bool:
    """Whether `slower` equals `faster` except for a larger value of one lever's cost knob (more evaluations)."""
    if faster.keys() != slower.keys():
        return False
    differ = [n for n in faster if faster[n] != slower[n]]
    if len(differ) != 1 or LEVERS[differ[0]].cost_knob is None:
        return False
    name, knob = differ[0], LEVERS[differ[0]].cost_knob
    a, b = dict(faster[name]), dict(slower[name])
    return a.pop(knob) < b.pop(knob) and a == b


class Builder:
    """Builds candidates on copies of the original; keeps the last few models (a compiled one is compiled once) and
    every trained one (in memory, and under `store` so a resumed search does not train again)."""

    def __init__(self, sampler, config: OptimizeConfig, keep: int = 3, store: Path | None = None):
        self.sampler, self.config, self.keep, self.store = sampler, config, keep, store
        self.models: OrderedDict[str, tuple[nn.Module, nn.Module]] = OrderedDict()
        self.trained: dict[str, nn.Module] = {}
        self._data = None

    def inputs(self) -> dict:
        """What training levers learn from: the original as teacher and `config.data` as images."""
        if self._data is None and self.config.data is not None:
            side = self.original.config.sample_size
            self._data = load_images(self.config.data, size=side, channels=self.original.config.in_channels)
        return {"teacher": self.original, "data": self._data, "batch": self.config.batch}

    def trained_model(self, candidate: Candidate, names: list[str]) -> nn.Module:
        """The original after the candidate's training levers, trained once per setting."""
        settings = {n: LEVERS[n].model_knobs(candidate[n]) for n in names}
        key = key_of(settings)
        if key in self.trained:
            return self.trained[key]
        folder = None if self.store is None else self.store / hashlib.sha1(key.encode()).hexdigest()[:12]
        if folder is not None and folder.exists():
            model = load(folder)
        else:
            # the original is the teacher of earlier trainings, which freeze it: its copy must train
            build = Build(model=copy.deepcopy(self.original).requires_grad_(True), inputs=self.inputs())
            for name in names:
                LEVERS[name].apply(build, settings[name])
            model = build.model.eval()
            if folder is not None:
                save(model, folder)
        self.trained[key] = model
        return model

    @property
    def original(self) -> nn.Module:
        return denoiser_of(self.sampler)

    def models_of(self, candidate: Candidate) -> tuple[nn.Module, nn.Module]:
        """(plan model, final model) of the candidate's model levers, built on a copy of the original."""
        key = model_key(candidate)
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        steps = [n for n in ordered(candidate) if LEVERS[n].kind == "model"]
        if not steps:
            return self.original, self.original
        training = [n for n in steps if LEVERS[n].trains]
        base = self.trained_model(candidate, training) if training else self.original
        build = Build(model=copy.deepcopy(base), inputs=self.inputs())
        knobs = model_part(candidate)
        for name in [n for n in steps if LEVERS[n].stage < PLAN_STAGE and not LEVERS[n].trains]:
            LEVERS[name].apply(build, knobs[name])
        plan_model = build.model
        later = [n for n in steps if LEVERS[n].stage >= PLAN_STAGE]
        if later:
            build.model = copy.deepcopy(plan_model)
            for name in later:
                LEVERS[name].apply(build, knobs[name])
        self.models[key] = (plan_model, build.model)
        while len(self.models) > self.keep:
            self.models.popitem(last=False)
        return self.models[key]

    def build(self, candidate: Candidate) -> tuple[Any, Build]:
        """(sampler, build): the pipeline or model to sample and the candidate's sampling settings and plan."""
        plan_model, model = self.models_of(candidate)
        build = Build(model=model, plan_model=plan_model, sampling=sampled_with(candidate, self.config))
        for name in ordered(candidate):
            if LEVERS[name].kind == "plan":
                LEVERS[name].apply(build, candidate[name])
        sampler = with_denoiser(self.sampler, model) if is_pipeline_object(self.sampler) else model
        return sampler, build
