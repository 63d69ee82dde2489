"""slimfusion: make diffusion models smaller and faster, and prove what it cost in image quality.

One verb and one config per technique: `slimfusion.prune(model, StructuralConfig(...))`,
`slimfusion.finetune(model, images, FinetuneConfig(...), teacher=...)`, `slimfusion.sample(model, SampleConfig(...))`,
`slimfusion.evaluate(target, EvaluateConfig(...), ref=..., original=...)`,
`slimfusion.skip_plan(model, SkipConfig(...))` + `with slimfusion.apply_plan(model, plan):`,
`slimfusion.sparsify(model_or_pipeline, SparsityConfig(...))`; `load` / `save` read and
write the pickle-free format.
"""

__version__ = "0.1.0"

from slimfusion.evaluate import EvaluateConfig, evaluate  # noqa: E402
from slimfusion.models.io import load, save  # noqa: E402
from slimfusion.pipelines import load_pipeline, save_pipeline  # noqa: E402
from slimfusion.prune import StructuralConfig, prune  # noqa: E402
from slimfusion.sample import SampleConfig, sample  # noqa: E402
from slimfusion.skip import SkipConfig, apply_plan, load_plan, save_plan, skip_plan  # noqa: E402
from slimfusion.sparsify import SparsityConfig, sparsify  # noqa: E402
from slimfusion.train import FinetuneConfig, finetune  # noqa: E402

__all__ = [
    "EvaluateConfig",
    "FinetuneConfig",
    "SampleConfig",
    "SkipConfig",
    "SparsityConfig",
    "StructuralConfig",
    "__version__",
    "apply_plan",
    "evaluate",
    "finetune",
    "load",
    "load_pipeline",
    "load_plan",
    "prune",
    "sample",
    "save",
    "save_pipeline",
    "save_plan",
    "skip_plan",
    "sparsify",
]
