"""Depth against width pruning of the conditional built-ins: builtin:digits-dit (the TinyFusion setting: fewer
transformer blocks) and the UNet of builtin:digits-t2i (the BK-SDM setting: whole layers and the mid block,
recovered data-free from prompts).

Regenerates benchmarks/results/depth_vs_width_conditional.md:

    .venv/bin/python benchmarks/depth_vs_width_conditional.py --steps 900 --num 500

Every row is made by the CLI verbs themselves (`slimfusion prune` on the pipeline, `slimfusion finetune` with the
finetune defaults, i.e. output distillation from the pipeline the model was pruned from), at ~50% of the MACs:
width = Diff-Pruning with the ratio whose MACs come closest; depth = `--method depth` (greedy) / `depth-learned`
`--target-macs 0.5`. The text-to-image UNet has one layer per down stage, so whole layers stop at its mid block
(~94% of the MACs); its third row is the mid block removed, then width to ~50% overall (BK-SDM also drops the mid
block). Calibration on the model's own samples of the ten labels / the 30 prompts. Recovery: `--steps`
steps (the built-ins trained for 6,000), DiT on the digits with labels, the text-to-image UNet data-free on latents
its teacher generates from the 30 prompts (BK-SDM distils from the teacher too). Quality: FD (digits features, not FID)
of `--num` DDIM-25 samples at guidance 2 vs all 1,797 digits with the noise floor, asked-digit accuracy by the digit
classifier, SSIM vs the original's samples from the same noise and conditions. Speed: wall-clock of sampling 100
images, the original and every row of a family interleaved in one run (median of 3 rounds). Rows are cached under
`--work`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from conditional_builtins import PROMPTS, asked
from runinfo import RowCache

from slimfusion.data import load_digits_split
from slimfusion.metrics.accuracy import digit_accuracy
from slimfusion.metrics.consistency import ssim
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.pipelines import denoiser_name, load_pipeline
from slimfusion.sample import SampleConfig, sample

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "depth_vs_width_conditional.md"
TARGET = 0.5
WIDTH_RATIOS = tuple(round(0.05 * i, 2) for i in range(2, 16))  # tried by a magnitude prune (same widths)
ROWS = {  # family -> row -> its prune steps in order ("width": Diff-Pruning to TARGET overall)
    "digits-dit": {"width (Diff-Pruning)": ["width"], "depth greedy": ["depth"], "depth learned": ["depth-learned"]},
    "digits-t2i": {"width (Diff-Pruning)": ["width"], "depth greedy": ["depth"], "depth + width": ["depth", "width"]},
}
EVAL_SEED = 1000


def verb(*args: str) -> None:
    """One CLI verb in a subprocess, as a user runs it; a failure stops the benchmark with the verb's own message."""
    subprocess.run([sys.executable, "-m", "slimfusion", *args], check=True, cwd=ROOT)


def conditions_file(work: Path) -> Path:
    path = work / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def calibration(name: str, work: Path) -> list[str]:
    return (
        ["--prompts", str(conditions_file(work))] if name == "digits-t2i" else ["--class-labels", "0,1,2,3,4,5,6,7,8,9"]
    )


def recovery(name: str, work: Path) -> list[str]:
    return ["--distill-prompts", str(conditions_file(work))] if name == "digits-t2i" else ["--data", "digits"]


def width_ratio(source: str, work: Path, base_macs: int) -> float:
    """The ratio whose pruned MACs come closest to TARGET (a magnitude prune per ratio: cheap, same widths)."""
    gaps = {}
    for ratio in WIDTH_RATIOS:
        trial = work / "trials" / f"{Path(source).name}-{ratio}"
        if not trial.exists():
            verb("prune", source, "--method", "magnitude", "--ratio", str(ratio), "--out", str(trial))
        share = count_macs(denoiser(load_pipeline(trial))) / base_macs
        gaps[ratio] = abs(share - TARGET)
        if share < TARGET:
            break
    return min(gaps, key=gaps.get)


def denoiser(pipe) -> torch.nn.Module:
    return getattr(pipe, denoiser_name(pipe))


def prune_chain(name: str, row: str, work: Path, base_macs: int) -> tuple[Path, list[str]]:
    """Run the row's prune steps (each on the last one's output); the final folder and what each step was."""
    source, hows = f"builtin:{name}", []
    for i, step in enumerate(ROWS[name][row]):
        if step == "width":
            how = ["--method", "diff-pruning", "--ratio", str(width_ratio(source, work, base_macs))]
        else:
            how = ["--method", step, "--target-macs", str(TARGET)]
        out = work / f"{_slug(row)}-{i}"
        verb("prune", source, *how, *calibration(name, work), "--out", str(out), "--overwrite")
        source = str(out)
        hows.append(" ".join(how))
    return Path(source), hows


def sample_config(name: str, num: int) -> SampleConfig:
    given = {"prompts": PROMPTS} if name == "digits-t2i" else {"class_labels": list(range(10))}
    return SampleConfig(num=num, steps=25, seed=EVAL_SEED, guidance=2.0, batch_size=250, **given)


def samples(name: str, pipe, num: int) -> torch.Tensor:
    return sample(pipe, sample_config(name, num), progress=False)


def quality(name: str, images: torch.Tensor, real, original: torch.Tensor) -> dict:
    num = len(images)
    return {
        "fd": frechet_distance(*feature_stats(digit_features(images)), *real),
        "accuracy": digit_accuracy(images, asked(name, num)),
        "ssim": float(ssim(images, original)),
    }


def speedups(name: str, pipes: dict[str, object], rounds: int = 3) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label in pipes}
    for _ in range(rounds):
        for label, pipe in pipes.items():
            start = time.perf_counter()
            samples(name, pipe, 100)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(times["original"]) / statistics.median(v) for label, v in times.items()}


def family(name: str, args, real) -> dict:
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    original_pipe = load_pipeline(f"builtin:{name}")
    base_macs = count_macs(denoiser(original_pipe))
    original = samples(name, original_pipe, args.num)
    second = sample(
        original_pipe, sample_config(name, args.num).model_copy(update={"seed": EVAL_SEED + 1}), progress=False
    )
    base = {
        "params": count_params(denoiser(original_pipe)),
        "macs": base_macs,
        "floor": frechet_distance(*feature_stats(digit_features(original)), *feature_stats(digit_features(second))),
        **quality(name, original, real, original),
    }
    cache = RowCache(work / "rows.json")  # keyed by the row, --steps, --num and the code version
    rows = []
    for row in ROWS[name]:
        recovered, key = work / _slug(row, "-ft"), {"row": row, "steps": args.steps, "num": args.num}
        if cache.get(key) is not None:
            rows.append(cache.get(key))
            continue
        start = time.perf_counter()
        pruned, how = prune_chain(name, row, work, base_macs)
        before = quality(name, samples(name, load_pipeline(pruned), args.num), real, original)
        verb("finetune", str(pruned), "--steps", str(args.steps), *recovery(name, work), "--out", str(recovered),
             "--overwrite")  # fmt: skip
        pipe = load_pipeline(recovered)
        result = {
            "row": row,
            "how": "; then ".join(how),
            "params": count_params(denoiser(pipe)),
            "macs": count_macs(denoiser(pipe)),
            "before": before,
            "after": quality(name, samples(name, pipe, args.num), real, original),
            "wall_s": round(time.perf_counter() - start, 1),
        }
        rows.append(cache.put(key, result))
        print(json.dumps(result), flush=True)
    pipes = {"original": original_pipe} | {r["row"]: load_pipeline(work / _slug(r["row"], "-ft")) for r in rows}
    speed = speedups(name, pipes)
    for r in rows:
        r["speedup"] = speed[r["row"]]
    return {"base": base, "rows": rows}


def _slug(row: str, suffix: str = "") -> str:
    return row.split(" (")[0].replace(" + ", "-").replace(" ", "-") + suffix


def write(results: dict[str, dict], args) -> None:
    lines = [
        "# Depth against width pruning of the conditional built-ins",
        "",
        f"Command: `.venv/bin/python benchmarks/depth_vs_width_conditional.py --steps {args.steps} --num {args.num}`",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
    ]
    for name, result in results.items():
        base = result["base"]
        lines += [
            f"## builtin:{name}",
            "",
            f"Original: {base['params'] / 1e6:.3f} M params, {base['macs'] / 1e6:.1f} M MACs, FD {base['fd']:.3f},"
            f" accuracy {base['accuracy']:.1%}; noise floor (two {args.num}-sample sets) {base['floor']:.3f}.",
            "",
            "| model | how | params | MACs | speedup (100 images) | FD before -> after | FD / original | accuracy"
            " | SSIM | commit |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in result["rows"]:
            after = r["after"]
            lines.append(
                f"| {r['row']} | `{r['how']}` | {r['params'] / 1e6:.3f} M | {r['macs'] / base['macs']:.0%} |"
                f" {r['speedup']:.2f}x | {r['before']['fd']:.2f} -> {after['fd']:.3f} | {after['fd'] / base['fd']:.2f}"
                f" | {after['accuracy']:.1%} | {after['ssim']:.3f} | {r['commit']} |"
            )
        lines.append("")
    RESULT.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=900, help="recovery steps (15%% of the built-ins' 6,000)")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--families", nargs="*", default=list(ROWS))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "depth_vs_width_conditional")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the speed column wants 2, alone)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the verbs' subprocesses too
    real = feature_stats(digit_features(load_digits_split("all")[0]))
    write({name: family(name, args, real) for name in args.families}, args)


if __name__ == "__main__":
    main()
