"""The resumable training state, pickle-free: tensors in safetensors, everything else in JSON.

Written by hand because Accelerate's `save_state` and `torch.save` of optimizer states are pickles, which slimfusion
never writes. The state sits in `<run>/train_state/` next to the EMA weights of the same step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from slimfusion.errors import ConfigError, CorruptFileError

STATE_DIR = "train_state"
STATE_VERSION = 1


def write_state(
    folder: Path,
    *,
    step: int,
    running_loss: float | None,
    config: dict[str, Any],
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    ema_state: dict[str, Any],
    rng_states: list[torch.Tensor],
) -> None:
    """Write the state of `step` into `folder/train_state/` (called inside an atomic save)."""
    out = folder / STATE_DIR
    out.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(out / "trainable.safetensors"))
    opt = optimizer.state_dict()
    tensors = {f"{i}.{name}": value for i, state in opt["state"].items() for name, value in state.items()}
    tensors |= {f"ema.{i}": p.detach().contiguous() for i, p in enumerate(ema_state["shadow_params"])}
    tensors |= {f"rng.{rank}": s for rank, s in enumerate(rng_states)}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out / "optimizer.safetensors"))
    record = {
        "version": STATE_VERSION,
        "step": step,
        "running_loss": running_loss,
        "config": config,
        "param_groups": opt["param_groups"],
        "ema": {k: v for k, v in ema_state.items() if k != "shadow_params"},
        "processes": len(rng_states),
    }
    (out / "state.json").write_text(json.dumps(record, indent=2))


def read_state(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(record, trainable tensors, optimizer / EMA / RNG tensors) of the checkpoint in `folder`."""
    state_dir = folder / STATE_DIR
    if not (state_dir / "state.json").exists():
        raise ConfigError(f"--resume: {folder} holds no training state (finished run, or not a checkpoint folder)")
    try:
        record = json.loads((state_dir / "state.json").read_text())
        trainable = load_file(str(state_dir / "trainable.safetensors"))
        tensors = load_file(str(state_dir / "optimizer.safetensors"))
    except Exception as exc:  # missing file, truncated safetensors, bad JSON: all one problem for the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"{state_dir}: unreadable training state ({reason})") from exc
    if record.get("version") != STATE_VERSION:
        raise CorruptFileError(f"{state_dir}: training state version {record.get('version')} is not supported")
    return record, trainable, tensors


def optimizer_state(record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Rebuild the `optimizer.state_dict()` written by `write_state`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        head, _, name = key.partition(".")
        if head.isdigit():
            state.setdefault(int(head), {})[name] = value
    return {"state": state, "param_groups": record["param_groups"]}


def ema_state(record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Rebuild the EMA's `state_dict()` written by `write_state`."""
    count = sum(1 for k in tensors if k.startswith("ema."))
    return record["ema"] | {"shadow_params": [tensors[f"ema.{i}"] for i in range(count)]}


def check_same_run(saved: dict[str, Any], current: dict[str, Any], processes: int, saved_processes: int) -> None:
    """A resumed run must use the settings it was started with.

    Only `steps` may grow, and only under a constant learning rate: a cosine decay is scheduled over `steps`.
    """
    may_grow = {"steps"} if current.get("lr_decay", "constant") == "constant" else set()
    for key in sorted(set(saved) | set(current)):
        if key not in may_grow and saved.get(key) != current.get(key):
            flag = key.replace("_", "-")
            raise ConfigError(
                f"--resume with different settings: --{flag} was {saved.get(key)!r}, now {current.get(key)!r}"
            )
    if processes != saved_processes:
        raise ConfigError(f"--resume: checkpoint was written by {saved_processes} processes, now {processes}")
