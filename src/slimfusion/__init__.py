"""slimfusion: make diffusion models smaller and faster, and prove what it cost in image quality.

One verb and one config per technique: `slimfusion.prune(model, StructuralConfig(...))`,
`slimfusion.sample(model, SampleConfig(...))`; `load` / `save` read and write the pickle-free format.
"""

__version__ = "0.1.0"

from slimfusion.models.io import load, save  # noqa: E402
from slimfusion.prune import StructuralConfig, prune  # noqa: E402
from slimfusion.sample import SampleConfig, sample  # noqa: E402

__all__ = ["SampleConfig", "StructuralConfig", "__version__", "load", "prune", "sample", "save"]
