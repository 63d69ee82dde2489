"""MACs accounting of skip plans on real architectures: each block's share of one forward, and the total MACs of a
50-step sampling run under DeepCache plans (random weights: cost only, no quality).

Regenerates benchmarks/results/skip_macs.md:

    .venv/bin/python benchmarks/skip_macs.py

Blocks as the family table lists them (UNet: down blocks with their residuals, mid block, up blocks; DiT: every
transformer block). MACs are counted as `slimfusion info` counts them (convs, linears, norms; batch 1).
"""

from __future__ import annotations

from pathlib import Path

from runinfo import stamp

from slimfusion.models.io import load
from slimfusion.skip import SkipConfig, skip_plan
from slimfusion.skip.graph import skip_units, unit_macs

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "skip_macs.md"
STEPS = 50


def main() -> None:
    lines = [
        "# Skip plans on real architectures: MACs accounting",
        "",
        f"Command: `.venv/bin/python benchmarks/skip_macs.py` ({stamp()})",
    ]
    lines += ["", __doc__.split("\n\n")[3].replace("\n", " ").strip(), ""]
    for name in ("sd15-unet", "dit-xl-2"):
        model = load(f"builtin:{name}")
        units = skip_units(model)
        macs, total = unit_macs(model, units)
        lines += [
            f"## builtin:{name}: {total / 1e9:.1f} G MACs per forward",
            "",
            "| block | G MACs | share |",
            "|---|---:|---:|",
        ]
        lines += [f"| {u} | {macs[u] / 1e9:.2f} | {macs[u] / total:.1%} |" for u in units]
        lines += [f"| all blocks | {sum(macs.values()) / 1e9:.2f} | {sum(macs.values()) / total:.1%} |", ""]
        if hasattr(model, "up_blocks"):
            lines += [f"DeepCache plans, {STEPS} DDIM steps (full run: {STEPS * total / 1e12:.2f} T MACs):", ""]
            lines += ["| interval | branch | kept MACs | run T MACs | MACs speedup |", "|---:|---:|---:|---:|---:|"]
            for interval, branch in ((2, 0), (3, 0), (5, 0), (10, 0), (3, 3), (5, 6)):
                plan = skip_plan(model, SkipConfig(method="deepcache", steps=STEPS, interval=interval, branch=branch))
                run = plan.macs_ratio * STEPS * total
                lines.append(
                    f"| {interval} | {branch} | {plan.macs_ratio:.3f} | {run / 1e12:.2f} | {1 / plan.macs_ratio:.2f}x |"
                )
            lines.append("")
        del model
    RESULT.write_text("\n".join(lines) + "\n")
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
