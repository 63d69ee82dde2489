"""`slimfusion optimize`: the fastest composition of registered levers that keeps the original's quality, found
within a budget on this machine, confirmed on fresh noise, and saved as a model that samples with it.

The search space is the lever registry (`slimfusion.registry.LEVERS`: each technique declares its knobs beside its
step), so a technique registered later is searched without touching this package (docs/optimize.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from slimfusion.diffusion.schedulers import stored_sampler
from slimfusion.errors import ConfigError
from slimfusion.optimize.config import OptimizeConfig, QualityRule, seconds
from slimfusion.optimize.journal import JOURNAL, Journal
from slimfusion.optimize.measure import Arena, holds, primary_metrics
from slimfusion.optimize.output import save_choice, write_outputs
from slimfusion.optimize.search import Search
from slimfusion.pipelines import denoiser_of, is_pipeline_object
from slimfusion.subject import Subject

__all__ = ["OptimizeConfig", "QualityRule", "optimize", "seconds"]
CONFIG_FILE = "optimize.json"


def optimize(model, config: OptimizeConfig | None = None, out: str | Path | None = None, resume: bool = False,
             progress: bool = True) -> dict:  # fmt: skip
    """Search the levers for the fastest candidate that holds `config.quality` against `model`.

    Args:
        model: a UNet2DModel, a text-to-image or DiT pipeline (objects or anything `Subject.load` takes).
        config (`OptimizeConfig`): budget, quality rule, batch, levers, sample counts.
        out (`str` or `Path`, optional): the run folder: journal (resume), `model/` (the choice), frontier.json /
            .md / .png, report.html. Without it the search runs in memory and nothing is written.
        resume (`bool`): continue the search journaled in `out` (made with the same config).
        progress (`bool`): a line per measured candidate on the console (False: quiet).

    Returns:
        {"chosen": row or None, "confirmed", "rows", "refused", "notes", "seconds", ...}: see frontier.json.
    """
    started = time.perf_counter()  # the budget covers everything from here, the original's first images included
    config = config or OptimizeConfig()
    config.check_knobs()
    config.lever_names()
    subject = model if isinstance(model, Subject) else (
        Subject.load(model) if isinstance(model, (str, Path)) else Subject(model))  # fmt: skip
    config = with_base_sampler(subject.obj, config)
    check_conditions(subject.obj, config)
    folder = None if out is None else Path(out)
    check_folder(folder, config, resume)
    arena = Arena(subject.obj, config, None if folder is None or not resume else folder / "cache")
    if not resume:
        check_budget_and_rule(arena, config)  # before anything is written
    if folder is not None and not resume:
        folder.mkdir(parents=True)
        (folder / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=2))
        arena.keep_in(folder / "cache")
    if folder is not None:
        arena.builder.store = folder / "models"
    search = Search(arena, config, Journal(folder), log=None if progress else (lambda line: None), started=started)
    result = search.run() | {"config": config.model_dump(mode="json")}
    if folder is not None:
        if result["chosen"] is not None:
            result["model"] = str(
                save_choice(
                    subject, result["chosen"]["candidate"], config, result, folder / "model", store=arena.builder.store
                )
            )
        write_outputs(result, folder)
    return result


def with_base_sampler(sampler, config: OptimizeConfig) -> OptimizeConfig:
    """A step-distilled model's own sampler is its baseline unless the caller named one."""
    own = stored_sampler(denoiser_of(sampler))
    if not own or {"base_scheduler", "base_steps"} & config.model_fields_set:
        return config
    return config.model_copy(update={"base_scheduler": own["scheduler"], "base_steps": own["steps"]})


def check_conditions(sampler, config: OptimizeConfig) -> None:
    if is_pipeline_object(sampler) and not config.conditional:
        raise ConfigError(f"{type(sampler).__name__} is conditional: give --prompts FILE or --class-labels 3,7")
    if not is_pipeline_object(sampler) and config.conditional:
        raise ConfigError(
            f"prompts / class labels are for conditional pipelines; this {type(sampler).__name__} is unconditional"
        )
    if config.quality.kind == "accuracy" and not config.conditional:
        raise ConfigError("--quality accuracy>=A needs a conditional model (prompts or class labels name digits)")


def check_folder(folder: Path | None, config: OptimizeConfig, resume: bool) -> None:
    if folder is None:
        if resume:
            raise ConfigError("resume needs the run folder (--out) of the search to continue")
        return
    if not resume:
        if folder.exists():
            raise FileExistsError(f"{folder} already exists; pass --resume to continue its search")
        return
    if not (folder / JOURNAL).exists():
        raise ConfigError(f"--resume: {folder} holds no search journal ({JOURNAL})")
    saved = json.loads((folder / CONFIG_FILE).read_text())
    if saved != config.model_dump(mode="json"):
        changed = sorted(k for k in saved.keys() | config.model_dump().keys()
                         if saved.get(k) != config.model_dump(mode="json").get(k))  # fmt: skip
        raise ConfigError(f"--resume: {folder} was searched with other settings ({', '.join(changed)})")


def check_budget_and_rule(arena: Arena, config: OptimizeConfig) -> None:
    """Refuse a budget that cannot evaluate one candidate and a rule the original fails against itself, from the
    original's screening images (sampled here, kept for the search)."""
    images = arena.original(config.seed, config.screen_num)
    per_image = sum(arena.original_batch_seconds) / len(images)
    needed = per_image * (config.screen_num + config.confirm_num) + config.rounds * per_image * config.batch
    if config.budget < needed:
        raise ConfigError(
            f"--budget {config.budget:.0f} s cannot evaluate one candidate: the original alone needs ~{needed:.0f} s"
            f" here ({config.screen_num + config.confirm_num} images and {config.rounds} timing rounds at"
            f" {per_image * config.batch:.2f} s per batch of {config.batch}); raise --budget or lower --confirm-num"
        )
    quality = arena.quality(images, images)
    spans = quality.intervals(config.resamples)
    itself = quality.versus(quality, config.resamples, paired=True)
    ok, why = holds(config.quality, itself, spans, quality.values(), primary_metrics(config))
    if not ok:
        raise ConfigError(f"--quality {config.quality.text()}: the original fails it against itself ({why})")
