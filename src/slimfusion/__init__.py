"""slimfusion: make diffusion models smaller and faster, and prove what it cost in image quality.

One verb and one config per technique: `slimfusion.prune(model, StructuralConfig(...))`,
`slimfusion.finetune(model, images, FinetuneConfig(...), teacher=...)`,
`slimfusion.distill_steps(model, images, StepDistillConfig(...))`, `slimfusion.sample(model, SampleConfig(...))`,
`slimfusion.evaluate(target, EvaluateConfig(...), ref=..., original=...)`,
`slimfusion.skip_plan(model, SkipConfig(...))` + `with slimfusion.apply_plan(model, plan):`,
`slimfusion.sparsify(model_or_pipeline, SparsityConfig(...))`, `slimfusion.lowrank(model, LowRankConfig(...))`,
`slimfusion.quantize(model, QuantizeConfig(...))`,
`slimfusion.optimize(model, OptimizeConfig(...), out=...)`, `slimfusion.run_recipe(path, out)`; `slimfusion.apply(model,
config)` dispatches any registered technique config to its function; `load` / `save` read and
write the pickle-free format. docs/api.md is the reference, with an example of each.
"""

import slimfusion.verbs  # noqa: E402, F401  (registers every verb and lever)
from slimfusion.compare import compare  # noqa: E402
from slimfusion.evaluate import EvaluateConfig, evaluate  # noqa: E402
from slimfusion.lowrank import LowRankConfig, lowrank  # noqa: E402
from slimfusion.models.io import load, save  # noqa: E402
from slimfusion.optimize import OptimizeConfig, optimize  # noqa: E402
from slimfusion.pipelines import load_pipeline, save_pipeline  # noqa: E402
from slimfusion.prune import DepthConfig, StructuralConfig, prune  # noqa: E402
from slimfusion.quantize import QuantizeConfig, quantize  # noqa: E402
from slimfusion.recipe import load_recipe, run_recipe  # noqa: E402
from slimfusion.registry import apply  # noqa: E402
from slimfusion.sample import SampleConfig, sample  # noqa: E402
from slimfusion.skip import SkipConfig, apply_plan, load_plan, save_plan, skip_plan  # noqa: E402
from slimfusion.sparsify import SparsityConfig, sparsify  # noqa: E402
from slimfusion.train import FinetuneConfig, finetune  # noqa: E402
from slimfusion.train.recovery.step_distill import StepDistillConfig, distill_steps  # noqa: E402
from slimfusion.version import __version__  # noqa: E402, F401

__all__ = [
    "DepthConfig",
    "EvaluateConfig",
    "FinetuneConfig",
    "LowRankConfig",
    "OptimizeConfig",
    "QuantizeConfig",
    "SampleConfig",
    "SkipConfig",
    "SparsityConfig",
    "StepDistillConfig",
    "StructuralConfig",
    "__version__",
    "apply",
    "apply_plan",
    "compare",
    "distill_steps",
    "evaluate",
    "finetune",
    "load",
    "load_pipeline",
    "load_plan",
    "load_recipe",
    "lowrank",
    "optimize",
    "prune",
    "quantize",
    "run_recipe",
    "sample",
    "save",
    "save_pipeline",
    "save_plan",
    "skip_plan",
    "sparsify",
]
