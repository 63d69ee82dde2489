"""slimfusion: make diffusion models smaller and faster, and prove what it cost in image quality."""

__version__ = "0.1.0"

from slimfusion.models.io import load, save  # noqa: E402

__all__ = ["__version__", "load", "save"]
