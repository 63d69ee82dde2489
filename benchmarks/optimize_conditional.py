"""`slimfusion optimize` on the conditional built-ins (builtin:digits-t2i with its prompts, builtin:digits-dit with the
ten classes), training-free levers, one budget each.

Regenerates benchmarks/results/optimize_conditional.md:

    .venv/bin/python benchmarks/optimize_conditional.py --budget 15m

Each search runs as `slimfusion optimize MODEL --prompts docs/digits_t2i_prompts.txt` (or `--class-labels 0,...,9`)
does: batch 64, quality rule "tie" (FD, KD and prompt / class accuracy tie or better, paired on identical noise and
conditions), the original at DDIM 50 with guidance 2, the choice confirmed on 2,000 fresh samples and timed in
alternation with the original. Run it alone on the machine: every speed is a wall-clock ratio.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from runinfo import stamp

from slimfusion.data.prompts import read_prompts
from slimfusion.optimize import OptimizeConfig, optimize
from slimfusion.optimize.output import answer

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "optimize_conditional.md"
PROMPTS = ROOT / "docs" / "digits_t2i_prompts.txt"
MODELS = {
    "builtin:digits-t2i": {"prompts": read_prompts(PROMPTS)},
    "builtin:digits-dit": {"class_labels": list(range(10))},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="15m")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "optimize_conditional")
    parser.add_argument("--resume", action="store_true", help="continue the searches in --work")
    args = parser.parse_args()
    code = stamp()  # the code that runs (src/ may change while the searches run)
    sections = []
    for model in args.models:
        folder = args.work / model.split(":")[-1]
        if folder.exists() and not args.resume:
            shutil.rmtree(folder)
        config = OptimizeConfig(budget=args.budget, **MODELS[model])
        result = optimize(model, config, out=folder, resume=args.resume and folder.exists())
        frontier = (folder / "frontier.md").read_text().split("\n", 2)[2].strip()
        sections += [f"## {model}", "", f"**{answer(result)}.**", "", frontier.replace("\n## ", "\n### "), ""]
        print(answer(result), flush=True)
    lines = [
        "# slimfusion optimize on the conditional built-ins (training-free levers)",
        "",
        f"Command: `.venv/bin/python benchmarks/optimize_conditional.py --budget {args.budget}"
        + (f" --models {' '.join(args.models)}" if args.models != list(MODELS) else "")
        + f"` ({code})",
        "",
        __doc__.split("\n\n")[3].strip().replace("\n", " "),
        "",
        *sections,
    ]
    RESULT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
