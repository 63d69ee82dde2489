"""The `slimfusion` command: one thin sub-command per verb, grouped by module; parsing and printing only.

`evaluation` (info, sample, stats, evaluate, report, demo), `compression` (prune), `training` (train, finetune,
train-features, train-builtin), `skipping` (skip-plan), `sparsity` (sparsify, sweep), `deploy` (lowrank, quantize),
`recipes` (run), `optimizing` (optimize, derived from its registered options by `derived`). The work is in the
Python API.
"""

from __future__ import annotations

import sys

from slimfusion.cli import (  # noqa: F401  (importing registers the verbs)
    compression,
    deploy,
    evaluation,
    optimizing,
    recipes,
    skipping,
    sparsity,
    training,
)
from slimfusion.cli.app import app
from slimfusion.cli.common import quiet_libraries
from slimfusion.cli.derived import derive_registered
from slimfusion.errors import SlimfusionError
from slimfusion.progress import console

derive_registered()  # every other registered step that makes a model gets its command from its options

try:  # typer >= 0.24 vendors click: its usage errors have no public alias there
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
    from typer.exceptions import Abort
except ImportError:  # typer on the shared click package
    from click.exceptions import Abort, NoArgsIsHelpError, UsageError


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""
    quiet_libraries()
    try:
        code = app(standalone_mode=False)  # usage errors come back to us, to be printed in one line
    except NoArgsIsHelpError as exc:  # a bare `slimfusion` / `slimfusion VERB`: the help, as asked
        exc.show()
        sys.exit(0)
    except UsageError as exc:
        where = exc.ctx.command_path.replace("root", "slimfusion", 1) if exc.ctx is not None else "slimfusion"
        _fail(f"{exc.format_message()} (see `{where} --help`)")
    except (SlimfusionError, FileExistsError) as exc:
        _fail(str(exc))
    except OSError as exc:  # read-only, no space, permission: the OS's cause and the path, in one line
        _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except (Abort, KeyboardInterrupt):
        console.print("interrupted")
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {' '.join(message.split())}", highlight=False, soft_wrap=True)
    sys.exit(2)


__all__ = ["app", "main"]
