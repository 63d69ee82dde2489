"""plan.png: a steps x blocks map of what a skip plan computes and what it reuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slimfusion.plots import pyplot
from slimfusion.skip.graph import top_level
from slimfusion.skip.plan import SkipPlan


def plan_picture(plan: SkipPlan, path: str | Path) -> Path:
    """Draw the plan's top-level blocks (rows) over its steps (columns): dark = computed, light = reused."""
    plt = pyplot()

    blocks = top_level(plan.units)
    grid = np.ones((len(blocks), plan.steps))
    for step, reused in enumerate(plan.reuse):
        for row, block in enumerate(blocks):
            if block in reused:
                grid[row, step] = 0
            elif any(u.startswith(f"{block}.") for u in reused):
                grid[row, step] = 0.5  # partly reused (DeepCache's branch inside a block)
    fig, ax = plt.subplots(figsize=(max(4.0, plan.steps * 0.12 + 2), 0.3 * len(blocks) + 1.2))
    ax.imshow(grid, aspect="auto", cmap="Blues", vmin=-0.3, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(blocks)), blocks, fontsize=7)
    ax.set_xlabel("sampling step")
    ax.set_title(f"{plan.method}: {plan.macs_ratio:.1%} of the MACs kept (dark: computed, light: reused)", fontsize=9)
    fig.tight_layout()
    target = Path(path)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
