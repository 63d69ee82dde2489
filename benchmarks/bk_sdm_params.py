"""BK-SDM's architectures obtained from builtin:sd15-unet by `prune --method depth --remove`.

Regenerates benchmarks/results/bk_sdm_params.md:

    .venv/bin/python benchmarks/bk_sdm_params.py

BK-SDM-Base removes, in every stage, the second resnet (+ attention) layer of the down block and the middle one of
the up block (its student keeps the teacher's up layers 0 and 2, as the reference code's weight map says); Small
also removes the mid block. Params and MACs (convs + linears + norms, batch 1, 64 x 64 latents) as `slimfusion info`
counts them, next to the paper's figures (Kim et al., ECCV 2024: 0.86 B -> 0.58 B / 0.49 B parameters).
"""

from __future__ import annotations

from pathlib import Path

from runinfo import stamp

import slimfusion
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.models.meta import history
from slimfusion.prune import DepthConfig, prune

RESULT = Path(__file__).resolve().parent / "results" / "bk_sdm_params.md"
BASE = [f"down_blocks.{b}.1+up_blocks.{3 - b}.1" for b in range(4)]
PAPER = {"SD-1.5 UNet": 0.86, "BK-SDM-Base": 0.58, "BK-SDM-Small": 0.49}


def main() -> None:
    rows = []
    original = slimfusion.load("builtin:sd15-unet")
    rows.append(("SD-1.5 UNet", "-", count_params(original), count_macs(original), True))
    for name, remove in (("BK-SDM-Base", BASE), ("BK-SDM-Small", [*BASE, "mid_block"])):
        model = slimfusion.load("builtin:sd15-unet")
        prune(model, DepthConfig(remove=remove), progress=False)
        effect = history(model)[-1]["effect"]
        rows.append((name, ",".join(remove), effect["params_after"], effect["macs_after"], effect["diffusers_config"]))
    lines = [
        "# BK-SDM architectures from builtin:sd15-unet by depth pruning",
        "",
        f"Command: `.venv/bin/python benchmarks/bk_sdm_params.py` ({stamp()})",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
        "| model | `--remove` | params | paper | MACs | plain diffusers config |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, remove, params, macs, plain in rows:
        lines.append(
            f"| {name} | `{remove}` | {params / 1e9:.3f} B | {PAPER[name]:.2f} B | {macs / 1e9:.1f} G |"
            f" {'yes' if plain else 'no'} |"
        )
    RESULT.write_text("\n".join(lines) + "\n")
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
