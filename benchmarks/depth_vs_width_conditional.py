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
its teacher generates from the 30 prompts (BK-SDM distils from the teacher too). Quality: FD and KD (digits features,
not FID / KID) of `--num` DDIM-25 samples at guidance 2 vs all 1,797 digits with the noise floor, asked-digit accuracy
by the digit classifier, SSIM vs the original's samples from the same noise and conditions, each with a 95% bootstrap
interval over the samples; every row against the family's width row, paired on identical noise and conditions:
better / worse only when the interval of the difference excludes zero, else tie. Speed: wall-clock of sampling 100
images, the original and every row of a family alternating in each of `--rounds` rounds: the median of the per-round
ratios original / row with a 95% bootstrap interval over rounds. Rows and their samples are cached under `--work`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from conditional_builtins import PROMPTS
from runinfo import RowCache, stamp
from safetensors.torch import load_file, save_file
from skip_digits import span

from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.metrics.timing import cell, speedups
from slimfusion.pipelines import denoiser_name, load_pipeline
from slimfusion.quality import Quality, References, quality_of
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
METRICS = ("fd", "kd", "accuracy", "ssim")
REFERENCES = References("digits:all")


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


def quality(name: str, images: torch.Tensor, original: torch.Tensor) -> Quality:
    """FD, KD, asked-digit accuracy and SSIM vs the original's samples from the same noise, as index statistics."""
    given = {"prompts": PROMPTS} if name == "digits-t2i" else {"class_labels": list(range(10))}
    return quality_of(images, {"indices": list(range(len(images)))} | given, list(METRICS), REFERENCES, original)


def family(name: str, args) -> dict:
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    original_pipe = load_pipeline(f"builtin:{name}")
    base_macs = count_macs(denoiser(original_pipe))
    original = samples(name, original_pipe, args.num)
    second = sample(
        original_pipe, sample_config(name, args.num).model_copy(update={"seed": EVAL_SEED + 1}), progress=False
    )
    original_q = quality(name, original, original)
    base = {
        "params": count_params(denoiser(original_pipe)),
        "macs": base_macs,
        "floor": frechet_distance(*feature_stats(digit_features(original)), *feature_stats(digit_features(second))),
        "floor_verdicts": {
            k: v["verdict"]
            for k, v in quality(name, second, original).versus(original_q, args.resamples, paired=False).items()
            if k in ("fd", "kd")
        },
        **original_q.values(),
    }
    cache = RowCache(work / "rows.json")  # keyed by the row, --steps, --num and the code version
    rows, measured = [], {}
    for row in ROWS[name]:
        recovered, key = work / _slug(row, "-ft"), {"row": row, "steps": args.steps, "num": args.num}
        kept = recovered / "benchmark_samples.safetensors"  # this row's evaluation samples, for the paired verdicts
        if cache.get(key) is not None and kept.exists():
            rows.append(cache.get(key))
            measured[row] = quality(name, load_file(kept)["images"], original)
            continue
        start = time.perf_counter()
        pruned, how = prune_chain(name, row, work, base_macs)
        before = quality(name, samples(name, load_pipeline(pruned), args.num), original).values()
        verb("finetune", str(pruned), "--steps", str(args.steps), *recovery(name, work), "--out", str(recovered),
             "--overwrite")  # fmt: skip
        pipe = load_pipeline(recovered)
        images = samples(name, pipe, args.num)
        save_file({"images": images.contiguous()}, kept)
        measured[row] = quality(name, images, original)
        result = {
            "row": row,
            "how": "; then ".join(how),
            "params": count_params(denoiser(pipe)),
            "macs": count_macs(denoiser(pipe)),
            "before": before,
            "metrics": measured[row].values(),
            "intervals": measured[row].intervals(args.resamples),
            "wall_s": round(time.perf_counter() - start, 1),
        }
        rows.append(cache.put(key, result))
        print(json.dumps(result), flush=True)
    width = next(iter(ROWS[name]))
    for r in rows:
        paired = measured[r["row"]].versus(measured[width], args.resamples)
        r["versus_width"] = None if r["row"] == width else {k: v["verdict"] for k, v in paired.items()}
    pipes = {"original": original_pipe} | {r["row"]: load_pipeline(work / _slug(r["row"], "-ft")) for r in rows}
    # the original's time / each row's, sampling 100 images
    speed = speedups({label: lambda p=p: samples(name, p, 100) for label, p in pipes.items()}, "original", args.rounds)
    for r in rows:
        r["speedup"] = speed[r["row"]]
    return {"base": base, "rows": rows}


def _slug(row: str, suffix: str = "") -> str:
    return row.split(" (")[0].replace(" + ", "-").replace(" ", "-") + suffix


def write(results: dict[str, dict], args) -> None:
    """The table, one section per family; sections of families this run did not measure stay as they were (each
    section names its own command and every row its commit)."""
    command = (
        f".venv/bin/python benchmarks/depth_vs_width_conditional.py --steps {args.steps} --num {args.num}"
        f" --rounds {args.rounds}"
    )
    lines = [
        "# Depth against width pruning of the conditional built-ins",
        "",
        f"Command: `{command}` (each section below names the run it came from)",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
    ]
    kept = _sections(RESULT.read_text()) if RESULT.exists() else {}
    for name in ROWS:
        if name not in results:
            lines += [kept[name]] if name in kept else []
            continue
        base = results[name]["base"]
        lines += [
            f"## builtin:{name}",
            "",
            f"Run: `{command} --families {name}` ({stamp()})",
            "",
            f"Original: {base['params'] / 1e6:.3f} M params, {base['macs'] / 1e6:.1f} M MACs, FD {base['fd']:.3f},"
            f" KD x1000 {1000 * base['kd']:.2f}, accuracy {base['accuracy']:.1%}; noise floor (two {args.num}-sample"
            f" sets) {base['floor']:.3f}; the second set against the first: FD {base['floor_verdicts']['fd']}, KD"
            f" {base['floor_verdicts']['kd']} (unpaired).",
            "",
            "| model | how | params | MACs | speedup (100 images) [95%] | FD before -> after | KD x1000 | accuracy %"
            " | SSIM | vs width (FD / KD / acc. / SSIM) | commit |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in results[name]["rows"]:
            versus = " / ".join(r["versus_width"][k] for k in METRICS) if r["versus_width"] else "-"
            lines.append(
                f"| {r['row']} | `{r['how']}` | {r['params'] / 1e6:.3f} M | {r['macs'] / base['macs']:.0%} |"
                f" {cell(*r['speedup'])} | {r['before']['fd']:.2f} -> {span(r, 'fd')} | {span(r, 'kd', 1000, 2)} |"
                f" {span(r, 'accuracy', 100, 1)} | {span(r, 'ssim')} | {versus} | {r['commit']} |"
            )
        lines.append("")
    RESULT.write_text("\n".join(lines).rstrip("\n") + "\n")


def _sections(text: str) -> dict[str, str]:
    """The committed table's family sections, by family name."""
    parts = text.split("\n## builtin:")[1:]
    return {part.split("\n", 1)[0].strip(): "## builtin:" + part.rstrip("\n") + "\n" for part in parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=900, help="recovery steps (15%% of the built-ins' 6,000)")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--families", nargs="*", default=list(ROWS))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "depth_vs_width_conditional")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the speed column wants 2, alone)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (rows alternate within a round)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per interval")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the verbs' subprocesses too
    write({name: family(name, args) for name in args.families}, args)


if __name__ == "__main__":
    main()
