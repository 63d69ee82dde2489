"""Recipes: `slimfusion run recipe.yaml --out DIR` chains the existing verbs into one artifact.

A recipe is `model:` plus `steps:`, an ordered list of one-key maps (`- prune: {method: diff-pruning, ratio: 0.3}`).
Every step runs the verb of that name, as a subprocess with its own options, so a step behaves exactly as the verb
does alone (no second code path; training and sampling steps go through `accelerate launch` with `--launcher
accelerate`). The whole recipe is validated first, against each verb's own options and, where a verb has one, its
config class. Step i writes `DIR/steps/NN-verb/` and, when it succeeds, `NN-verb.done.json`; a rerun skips finished
steps whose options are unchanged and starts at the first one that is not. The last model is copied to `DIR/model`
with the recipe appended to its history; evaluate steps add rows to `DIR/results.json` for the report step.
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from slimfusion.errors import ConfigError, SlimfusionError
from slimfusion.models.io import atomic_folder

CONFIG_CLASSES = {  # verb -> (module, class) whose field checks (ranges, choices) apply to same-named options
    "prune": ("slimfusion.prune", "StructuralConfig"),
    "finetune": ("slimfusion.train", "FinetuneConfig"),
    "sparsify": ("slimfusion.sparsify", "SparsityConfig"),
    "lowrank": ("slimfusion.lowrank", "LowRankConfig"),
    "quantize": ("slimfusion.quantize", "QuantizeConfig"),
    "evaluate": ("slimfusion.evaluate", "EvaluateConfig"),
}
MODEL_STEPS = ("prune", "finetune", "sparsify", "lowrank", "quantize", "skip-plan")  # each writes the next model
LAUNCHED = ("finetune", "evaluate", "sweep")  # train or sample: multi-process under `accelerate launch`
QUALITY_NOTE = (
    "Each row is the model after the recipe step named, evaluated by `slimfusion evaluate` (FD: digits-feature"
    " Frechet distance, an offline stand-in for FID; SSIM / PSNR against the recipe's model from identical noise)."
)
RUNNER_OWNED = {"model", "target", "out", "into", "overwrite", "resume", "as_json", "run_dir"}


class Recipe(BaseModel):
    """A validated recipe: the model to start from and its steps as (verb, options) pairs."""

    model_config = ConfigDict(extra="forbid")
    model: str
    steps: list[dict[str, dict[str, Any]]]


def _commands() -> dict[str, Any]:
    # here, not at the top: the CLI imports this module (recipes still validate against the CLI's verbs)
    from slimfusion.cli import main  # noqa: F401  (registers every verb)
    from slimfusion.cli.app import app

    return {info.name or info.callback.__name__: info.callback for info in app.registered_commands}


def _base_type(hint):
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def options_model(verb: str, command) -> type[BaseModel]:
    """A pydantic model of a verb's options (names and types from its CLI signature; paths it owns left out)."""
    hints = typing.get_type_hints(command, include_extras=True)
    fields = {}
    for name, param in inspect.signature(command).parameters.items():
        if name in RUNNER_OWNED:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (_base_type(hints[name]), default)
    return create_model(f"{verb}_options", __config__=ConfigDict(extra="forbid"), **fields)


def _check_fields(verb: str, options: dict[str, Any]) -> None:
    """Value checks of the verb's config class on the options that share a field name (ranges, choices)."""
    if verb not in CONFIG_CLASSES:
        return
    module, name = CONFIG_CLASSES[verb]
    cls = getattr(importlib.import_module(module), name)
    blank = cls.model_construct()
    for key, value in options.items():
        if key not in cls.model_fields or value is None:
            continue
        try:
            cls.__pydantic_validator__.validate_assignment(blank, key, value)
        except ValidationError:
            if not isinstance(value, str):
                raise
            # a comma list on the command line (--metrics fd,ssim) is a list field in the config
            cls.__pydantic_validator__.validate_assignment(blank, key, [v.strip() for v in value.split(",")])


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; any problem is one ConfigError naming the step and what is allowed."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"recipe {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {file}: not valid YAML ({' '.join(str(exc).split())[:200]})") from exc
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "recipe"
        raise ConfigError(f"recipe {file}: {where}: {err['msg']} (needs model: and a steps: list)") from exc
    commands = _commands()
    allowed = [v for v in commands if v in MODEL_STEPS or v in ("evaluate", "report")]
    for number, step in enumerate(recipe.steps, 1):
        if len(step) != 1:
            raise ConfigError(f"recipe step {number}: one verb per step, got {', '.join(step) or 'none'}")
        ((verb, options),) = step.items()
        if verb not in allowed:
            raise ConfigError(f"recipe step {number}: unknown step {verb!r}; allowed: {', '.join(allowed)}")
        spec = options_model(verb, commands[verb])
        options = {  # YAML lists are the verbs' comma lists
            k.replace("-", "_"): ",".join(map(str, v)) if isinstance(v, list) else v for k, v in (options or {}).items()
        }
        try:
            spec.model_validate(options)
            _check_fields(verb, options)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(map(str, err["loc"]))
            if err["type"] == "extra_forbidden":
                names = ", ".join(n.replace("_", "-") for n in spec.model_fields)
                raise ConfigError(f"recipe step {number} ({verb}): unknown option {key!r}; allowed: {names}") from exc
            raise ConfigError(f"recipe step {number} ({verb}): {key}: {err['msg']} (got {err.get('input')!r})") from exc
        step[verb] = options
    return recipe


def _flags(options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            out += [flag, ",".join(map(str, value))]
        elif value is not None:
            out += [flag, str(value)]
    return out


def _step_command(verb: str, options: dict, source: str, folder: Path, context: dict, launcher: str) -> list[str]:
    """The verb's command line for one step: input, output paths the runner owns, then the recipe's options
    (evaluate compares with the recipe's model and samples with the latest skip plan unless told otherwise)."""
    options = dict(options)
    if verb == "skip-plan":
        args = [source, "--out", str(folder / "plan.json"), "--into", str(folder / "model")]
    elif verb == "evaluate":
        options.setdefault("original", context["model"])
        if context.get("plan"):
            options.setdefault("plan", context["plan"])
        args = [source, "--json", str(folder / "result.json")]
    elif verb == "report":
        args = [str(folder.parent.parent)]
    else:
        args = [source, "--out", str(folder / "model")]
    prefix = [sys.executable, "-m", "slimfusion"]
    if launcher == "accelerate" and verb in LAUNCHED:
        prefix = [sys.executable, "-m", "accelerate.commands.launch", "-m", "slimfusion"]
    return [*prefix, verb, *args, *_flags(options)]


def run_recipe(recipe_path: str | Path, out: str | Path, launcher: str = "none", echo=print) -> Path:
    """Run (or resume) a recipe into `out`; returns the final model folder `out/model`."""
    recipe = load_recipe(recipe_path)
    out = Path(out)
    steps_dir = out / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(Path(recipe_path).read_text())
    source, stale, context = recipe.model, False, {"model": recipe.model}
    for number, step in enumerate(recipe.steps, 1):
        ((verb, options),) = step.items()
        folder = steps_dir / f"{number:02d}-{verb}"
        done = folder.with_name(folder.name + ".done.json")
        record = {"verb": verb, "options": options, "input": source}
        if not stale and done.exists() and json.loads(done.read_text()) == record:
            echo(f"step {number} ({verb}): done before, kept")
        else:
            stale = True  # this step and every later one run again
            done.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            command = _step_command(verb, options, source, folder, context, launcher)
            echo(f"step {number} ({verb}): " + " ".join(command[2:]))
            if subprocess.run(command).returncode != 0:
                raise SlimfusionError(f"recipe step {number} ({verb}) failed; fix it and rerun to resume there")
            if verb == "evaluate":
                _add_result_row(out, f"after step {number - 1}" if number > 1 else "start", folder)
            done.write_text(json.dumps(record))
        if verb in MODEL_STEPS:
            source = str(folder / "model")
        if verb == "skip-plan":
            context["plan"] = str(folder / "plan.json")
    if source == recipe.model:
        raise ConfigError("the recipe has no step that makes a model")
    return _finish(out, Path(source), recipe)


def _add_result_row(out: Path, name: str, folder: Path) -> None:
    result = json.loads((folder / "result.json").read_text())
    file = out / "results.json"
    results = json.loads(file.read_text()) if file.exists() else {"title": "recipe", "rows": []}
    results.setdefault("quality_metric", QUALITY_NOTE)
    results["rows"] = [r for r in results["rows"] if r["name"] != name]
    results["rows"].append({"name": name, "metrics": result["metrics"], "original": name == "start"})
    file.write_text(json.dumps(results, indent=2))


def _finish(out: Path, last: Path, recipe: Recipe) -> Path:
    """Copy the last model to `out/model` and append the recipe to the history in its slimfusion.json."""
    final = out / "model"
    with atomic_folder(final) as tmp:
        shutil.copytree(last, tmp)
        for meta_file in tmp.rglob("slimfusion.json"):
            meta = json.loads(meta_file.read_text())
            meta.setdefault("history", []).append({"step": "recipe", "config": recipe.model_dump(), "effect": {}})
            meta_file.write_text(json.dumps(meta, indent=2))
    return final
