"""The `slimfusion` command: one thin sub-command per verb, grouped by module; parsing and printing only.

`evaluation` (info, sample, stats, evaluate, report, demo), `compression` (prune), `training` (train, finetune,
train-features, train-builtin), `skipping` (skip-plan), `sparsity` (sparsify, sweep), `deploy` (lowrank, quantize),
`recipes` (run). The work is in the Python API.
"""

from __future__ import annotations

import sys

from slimfusion.cli import (  # noqa: F401  (importing registers the verbs)
    compression,
    deploy,
    evaluation,
    recipes,
    skipping,
    sparsity,
    training,
)
from slimfusion.cli.app import app
from slimfusion.cli.common import quiet_libraries
from slimfusion.errors import SlimfusionError
from slimfusion.progress import console


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""
    quiet_libraries()
    try:
        app()  # typer reports usage errors itself (exit 2)
    except (SlimfusionError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
