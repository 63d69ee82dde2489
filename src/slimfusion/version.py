"""The installed package's version, declared once in pyproject.toml (models/ record it without importing the root)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("slimfusion")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
