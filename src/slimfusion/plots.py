"""matplotlib figures for reports and plan pictures, drawn off-screen."""

from __future__ import annotations


def pyplot():
    """matplotlib's pyplot with the file-only Agg backend."""
    # lazy: matplotlib costs ~0.5 s of import time, paid only by commands that draw
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
