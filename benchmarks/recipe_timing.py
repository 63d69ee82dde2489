"""Wall time of one recipe under an older commit vs the code here, alternating in one invocation.

    python benchmarks/recipe_timing.py --old b98c2d3 --recipes examples/digits_quick.yaml examples/digits_showcase.yaml

Writes benchmarks/results/recipe_timing.md. `--old` names the commit to compare with (b98c2d3 is the last main that ran
each recipe step as a subprocess of the CLI); it is checked out into a temporary git worktree and run with the same
interpreter, so only the code under src/ differs. Each repeat runs old then new on a fresh output folder; the table
gives every wall time, the new / old ratio of their sums, and the last evaluate row of each run (FD / SSIM), so a
speedup that changed the result would show.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runinfo import ROOT, commit


def run_recipe(src: Path, recipe: Path, out: Path) -> tuple[float, dict]:
    """Run `slimfusion run recipe --out out` with the package under `src`; (seconds, last results row)."""
    env = dict(os.environ, PYTHONPATH=str(src))
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "slimfusion", "run", str(recipe), "--out", str(out)], env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{recipe} failed under {src} (exit {done.returncode})")
    results = out / "results.json"
    rows = json.loads(results.read_text()).get("rows", []) if results.exists() else []
    return seconds, (rows[-1] if rows else {})


def metric(row: dict, name: str) -> str:
    """One metric of a results.json row ("-" when the recipe's last evaluate did not measure it)."""
    value = row.get("metrics", {}).get(name)
    return f"{value:.4f}" if isinstance(value, float) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="b98c2d3", help="commit to compare with")
    parser.add_argument("--recipes", nargs="+", default=["examples/digits_quick.yaml"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/recipe_timing.md"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="recipe_timing_"))
    old_tree = scratch / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True)
    lines = []
    try:
        for recipe in args.recipes:
            path = (ROOT / recipe).resolve()
            times = {"old": [], "new": []}
            last = {}
            for repeat in range(args.repeats):
                for side, src in (("old", old_tree / "src"), ("new", ROOT / "src")):
                    seconds, last[side] = run_recipe(src, path, scratch / f"{side}-{repeat}")
                    times[side].append(seconds)
                    print(f"{recipe} {side} repeat {repeat}: {seconds:.1f} s", flush=True)
            ratio = sum(times["new"]) / sum(times["old"])
            lines.append(
                f"| {recipe} | {' / '.join(f'{t:.1f}' for t in times['old'])} | "
                f"{' / '.join(f'{t:.1f}' for t in times['new'])} | {ratio:.3f} | "
                f"{metric(last['old'], 'fd')} / {metric(last['new'], 'fd')} | "
                f"{metric(last['old'], 'ssim')} / {metric(last['new'], 'ssim')} |"
            )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT)
        shutil.rmtree(scratch, ignore_errors=True)

    command = " ".join(["python", "benchmarks/recipe_timing.py", *sys.argv[1:]])
    table = [
        f"`{command}` (new: code {commit()}, old: {args.old}; 2 CPU cores, nothing else running)",
        "",
        "Wall time of `slimfusion run RECIPE --out DIR` from a fresh folder, old then new in each repeat. Ratio:"
        " new / old of the summed times (below 1: the code here is faster). Last row: the recipe's final evaluate"
        " step, old / new.",
        "",
        "| recipe | old s | new s | new / old | FD old / new | SSIM old / new |",
        "|---|---|---|---|---|---|",
        *lines,
    ]
    Path(args.out).write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
