"""The verbs: one module per group, each registering its verbs (options model + `run`) and their levers.

A verb is an options model (the verb's options, names as on the command line, defaults taken from the technique's
config class) and a `run(subject, options, folder)` that works on the model or pipeline held in memory; the table
itself is `slimfusion.registry`. Recipes validate each step against its registered options and run them in one
process; the CLI derives its commands from the same options and calls the same `run`. Adding a technique is one
module with one `@register` (docs/architecture.md walks through it). Importing this package registers them all.
"""

from __future__ import annotations

from slimfusion.verbs import compress, evaluation, sampling, skipping, step_distill, training  # noqa: F401  isort: skip
from slimfusion.verbs import optimizing  # noqa: E402, F401  isort: skip  (after the levers it searches)
