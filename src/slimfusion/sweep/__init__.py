"""`sweep(source, SweepConfig(...), out)`: sparsity sweeps per component and method, to the collapse point.

Every point (component, method, sparsity) sparsifies a fresh copy of the dense pipeline, samples fixed prompts from
fixed seeds and measures prompt accuracy (digits built-ins), FD against reference data and SSIM against the dense
model's samples from the same noise, each with a 95% interval; its folder is a samples folder, so
`slimfusion compare OUT/points/A OUT/points/B` pairs any two points. Points are files: an interrupted sweep
continues from the finished ones, and `accelerate launch` processes take disjoint shares. The summary finds each
series' collapse point and recommends the most sparse per-component combination within a quality budget, and checks
that combination by sampling it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

from slimfusion.errors import ConfigError
from slimfusion.grids import labelled_grid
from slimfusion.models.meta import history
from slimfusion.pipelines import load_pipeline
from slimfusion.sparsify import _components, sparsify
from slimfusion.sweep.points import (  # noqa: F401  (SweepConfig etc. re-exported)
    DENSE_FILE,
    SERIES,
    SWEEP_FILE,
    SweepConfig,
    _atomic_write,
    keep_samples,
    load_dense,
    measure,
    parse_sparsities,
    point_key,
    sample_point,
)
from slimfusion.sweep.summary import summarise


def sweep(source: str, config: SweepConfig, out: str | Path, progress: bool = True) -> dict:
    """Run (or continue) a sweep into `out`; returns the summary (also written as sweep.md / results.json)."""
    out = Path(out)
    state = PartialState(cpu=not torch.cuda.is_available())
    if config.clip_model is not None and not list(Path(config.clip_model).glob("*.safetensors")):
        raise ConfigError(f"--clip-model {config.clip_model}: not a folder with safetensors CLIP weights")
    if state.is_main_process:  # the others check once the main process has set the folder up
        _check_folder(out, config, source, main=True)
    load_pipeline(source)  # refuse a bad source, a missing component or bad prompts before any point runs
    _check_components(source, config)
    state.wait_for_everyone()
    if not state.is_main_process:
        _check_folder(out, config, source, main=False)
    if state.is_main_process and not (out / "points" / "dense.json").exists():
        _run_point(source, config, out, None, progress)
    state.wait_for_everyone()
    todo = [p for p in config.points() if not (out / "points" / f"{point_key(*p)}.json").exists()]
    for point in todo[state.process_index :: state.num_processes]:
        _run_point(source, config, out, point, progress)
    state.wait_for_everyone()
    summary = summarise(source, config, out, progress) if state.is_main_process else {}
    state.wait_for_everyone()
    return summary


def _check_folder(out: Path, config: SweepConfig, source: str, main: bool) -> None:
    record = {"source": source, "config": config.model_dump()}
    file = out / SWEEP_FILE
    if file.exists():
        try:
            saved = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: not valid JSON; remove the folder to start again") from exc
        try:  # a folder from before a new setting existed holds that setting's default
            same = saved.get("source") == source and SweepConfig(**saved["config"]).model_dump() == record["config"]
        except (ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise ConfigError(f"{out} holds a sweep with other settings ({file}); use another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a sweep folder; use another --out")
    if main:
        (out / "points").mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(record, indent=2))


def _check_components(source: str, config: SweepConfig) -> None:
    pipe = load_pipeline(source)
    for component in config.components:
        _components(pipe, config.sparsity_config(component, config.methods[0], config.sparsities[0]))


def _run_point(source: str, config: SweepConfig, out: Path, point: tuple | None, progress: bool) -> None:
    """Sparsify a fresh copy (None: the dense model), sample, measure, write the point's grid and JSON last."""
    pipe = load_pipeline(source)
    record: dict = {"component": None, "method": None, "target": 0.0, "sparsity": 0.0, "sparsity_of_params": 0.0}
    if point is not None:
        component, method, target = point
        sparsify(pipe, config.sparsity_config(component, method, target), progress=False)
        effect = history(getattr(pipe, component))[-1]["effect"]
        record = {"component": component, "method": method, "target": target} | {
            k: effect[k] for k in ("sparsity", "sparsity_of_params", "zeroed", "wall_s")
        }
    images = sample_point(pipe, config, progress)
    dense = None if point is None else load_dense(out)
    record["metrics"], record["intervals"] = measure(images, dense, config)
    if point is None:
        record["metrics"]["ssim"] = 1.0  # the dense model against itself
    folder = out / "points" / (point_key(*point) if point else "dense")
    folder.mkdir(parents=True, exist_ok=True)
    labels = [config.prompts[i % len(config.prompts)] for i in range(len(images))]
    labelled_grid(images, labels).save(folder / "grid.png")
    keep_samples(images, folder, config, source)
    if point is None:
        _atomic_write(out / DENSE_FILE, lambda f: np.savez(f, images=images.numpy()))
    name = f"{point_key(*point)}.json" if point else "dense.json"
    _atomic_write(out / "points" / name, lambda f: f.write_text(json.dumps(record, indent=2)))
