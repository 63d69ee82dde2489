"""Recipes: `slimfusion run recipe.yaml --out DIR` chains registered steps into one artifact, in one process.

A recipe is `model:` plus `steps:`, an ordered list of one-key maps (`- prune: {method: diff-pruning, ratio: 0.3}`).
Each step is a registered verb (`slimfusion.registry.STEPS`) whose options are those of the command of that name; the
whole recipe is validated against the registered options before anything runs. The model or pipeline is loaded once
and held in memory from step to step; each step that makes a model also saves it to `DIR/steps/NN-verb/model` and
writes `NN-verb.done.json`, so a rerun skips the finished steps whose options are unchanged and continues at the
first one that is not. With `--launcher accelerate` the steps that train or sample run under `accelerate launch`
(several processes); every other step runs in this process. The last model is copied to `DIR/model` with the recipe
appended to its history; evaluate steps add rows to `DIR/results.json` for the report step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from slimfusion.errors import ConfigError, SlimfusionError
from slimfusion.models.io import atomic_folder
from slimfusion.models.source import check_source
from slimfusion.registry import STEPS
from slimfusion.subject import Subject

QUALITY_NOTE = (
    "Each row is the model after the recipe step named, evaluated by `slimfusion evaluate` (FD: digits-feature"
    " Frechet distance, an offline stand-in for FID; SSIM / PSNR against the recipe's model from identical noise)."
)
MARKER = ".slimfusion-recipe"  # marks a folder `run` made, so a rerun resumes there and nothing else is touched
MAX_RECIPE_BYTES = 1 << 20


class Recipe(BaseModel):
    """A validated recipe: the model to start from and its steps as {verb: options} (options as written)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    steps: list[dict[str, dict[str, Any]]]
    _parsed: list[BaseModel] = PrivateAttr(default_factory=list)

    def verbs(self) -> list[tuple[str, dict[str, Any], BaseModel]]:
        """(verb, options as written, validated options) per step."""
        return [(*next(iter(step.items())), parsed) for step, parsed in zip(self.steps, self._parsed, strict=True)]


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors / aliases: a few bytes of nested aliases can expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases are not allowed in recipes (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; any problem is one ConfigError naming the step and what is allowed."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"recipe {file} does not exist")
    if file.stat().st_size > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe {file} is larger than {MAX_RECIPE_BYTES // 1024} KiB; is it a recipe?")
    try:
        raw = yaml.load(file.read_text(), Loader=_NoAliasLoader)  # noqa: S506  (a SafeLoader subclass)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {file}: not valid YAML ({' '.join(str(exc).split())[:200]})") from exc
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "recipe"
        raise ConfigError(f"recipe {file}: {where}: {err['msg']} (needs model: and a steps: list)") from exc
    for number, step in enumerate(recipe.steps, 1):
        if len(step) != 1:
            raise ConfigError(f"recipe step {number}: one verb per step, got {', '.join(step) or 'none'}")
        ((verb, options),) = step.items()
        if verb not in STEPS:
            raise ConfigError(f"recipe step {number}: unknown step {verb!r}; allowed: {', '.join(STEPS)}")
        options = {k.replace("-", "_"): v for k, v in (options or {}).items()}
        step[verb] = options
        recipe._parsed.append(_validate_step(file, number, verb, options))
    return recipe


def _validate_step(file: Path, number: int, verb: str, options: dict[str, Any]) -> BaseModel:
    spec = STEPS[verb].options
    prefix = f"recipe {file}: step {number} ({verb})"
    try:
        return spec.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(map(str, err["loc"]))
        if err["type"] == "extra_forbidden":
            names = ", ".join(n.replace("_", "-") for n in spec.model_fields if n != "version")
            raise ConfigError(
                f"recipe {file}: step {number} ({verb}): unknown option {key!r}; allowed: {names}"
            ) from exc
        message = err["msg"].removeprefix("Value error, ")
        where = f"{key}: " if key else ""
        raise ConfigError(
            f"recipe {file}: step {number} ({verb}): {where}{message} (got {err.get('input')!r})"
        ) from exc
    except (ConfigError, OSError) as exc:  # a prompts file that cannot be read, a bad label list
        raise ConfigError(f"{prefix}: {exc}") from exc


def flags(options: dict[str, Any]) -> list[str]:
    """Options as `--name=value` flags (never a separate word, so no value can be read as an option)."""
    out = []
    for key, value in options.items():
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(name if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            out.append(f"{name}={','.join(map(str, value))}")
        elif value is not None:
            out.append(f"{name}={value}")
    return out


def launched_command(verb: str, options: dict, source: str, folder: Path, context: dict) -> list[str]:
    """The `accelerate launch` command of a training / sampling step when the recipe asks for several processes."""
    options = dict(options)
    if verb == "evaluate":
        options.setdefault("original", context["model"])
        args = [source, f"--json={folder / 'result.json'}"]
    else:
        args = [source, f"--out={folder / 'model'}"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "-m", "slimfusion"]
    return [*launch, verb, *args, *flags(options)]


def check_out_folder(out: Path) -> None:
    """Refuse an existing, non-empty --out that `run` did not make (a recipe's own run folder is resumed)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(f"--out {out} exists and is not a recipe run folder; choose a new folder")


def run_recipe(recipe_path: str | Path, out: str | Path, launcher: str = "none", echo=print) -> Path:
    """Run (or resume) a recipe into `out`; returns the final model folder `out/model`."""
    recipe = load_recipe(recipe_path)
    if not any(STEPS[verb].makes_model for verb, _, _ in recipe.verbs()):
        raise ConfigError("the recipe has no step that makes a model")
    check_source(recipe.model)  # before the run folder exists
    out = Path(out)
    check_out_folder(out)
    steps_dir = out / "steps"
    steps_dir.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    (out / "recipe.yaml").write_text(Path(recipe_path).read_text())
    source, stale, held = recipe.model, False, None
    context = {"model": recipe.model, "run_dir": out}
    for number, (verb, options, parsed) in enumerate(recipe.verbs(), 1):
        step = STEPS[verb]
        folder = steps_dir / f"{number:02d}-{verb}"
        done = folder.with_name(folder.name + ".done.json")
        record = {"verb": verb, "options": options, "input": source}
        if not stale and done.exists() and _read_done(done) == record and _outputs_exist(step, folder):
            echo(f"step {number} ({verb}): done before, kept")
            held = None  # the model in memory (if any) is older than this step's
        else:
            stale = True  # this step and every later one run again
            done.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            echo(f"step {number} ({verb}): slimfusion {verb} " + " ".join(flags(options)))
            if launcher == "accelerate" and step.launched:
                _launch(verb, options, source, folder, context, number)
                held = None
            else:
                held = held or Subject.load(source)
                held = _run_in_process(step, held, parsed, folder, context)
            if verb == "evaluate":
                _add_result_row(out, f"after step {number - 1}" if number > 1 else "start", folder)
            done.write_text(json.dumps(record))
        if step.makes_model:
            source = str(folder / "model")
    return _finish(out, Path(source), recipe)


def _run_in_process(step, held: Subject, parsed: BaseModel, folder: Path, context: dict) -> Subject:
    if step.name == "evaluate" and parsed.original is None:
        parsed = parsed.model_copy(update={"original": context["model"]})
    result = step.run(held, parsed, folder / "model" if step.makes_model else folder, **context)
    if step.makes_model:
        result.save(folder / "model", overwrite=True)
        return result
    if step.name == "evaluate":
        (folder / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return held


def _launch(verb: str, options: dict, source: str, folder: Path, context: dict, number: int) -> None:
    command = launched_command(verb, options, source, folder, context)
    if subprocess.run(command).returncode != 0:
        raise SlimfusionError(f"recipe step {number} ({verb}) failed; fix it and rerun to resume there")


def _read_done(done: Path) -> dict | None:
    try:
        return json.loads(done.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # a corrupt marker: the step runs again


def _outputs_exist(step, folder: Path) -> bool:
    """A finished step's output is still there (a deleted model folder makes the step run again)."""
    return (folder / "model").is_dir() if step.makes_model else folder.is_dir()


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
        shutil.copytree(last, tmp, dirs_exist_ok=True)
        for meta_file in tmp.rglob("slimfusion.json"):
            meta = json.loads(meta_file.read_text())
            meta.setdefault("history", []).append({"step": "recipe", "config": recipe.model_dump(), "effect": {}})
            meta_file.write_text(json.dumps(meta, indent=2))
    return final
