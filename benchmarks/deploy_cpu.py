"""Which engine pays on this CPU: OpenVINO float32 and int8 against torch float32 eager and torch bf16 + compile.

Regenerates benchmarks/results/deploy_cpu.md:

    .venv/bin/python benchmarks/deploy_cpu.py --num 2000 --rounds 5 --repeats 3

Speed: forward latency of builtin:ddpm-cifar10 (the CIFAR-10 DDPM UNet, random weights) at batch 8 and of the trained
builtin:digits-ddpm at batch 64, every engine of one model timed in alternation with the others in each of `--rounds`
rounds (median of `--repeats` forwards; speedup = median of per-round ratios against torch float32, and against torch
bf16 + compile, 95% bootstrap interval over rounds). Quality: builtin:digits-ddpm exported in int8 (NNCF post-training,
calibrated on 64 of its own DDIM-25 trajectories; the time path and first / last convolutions kept in float under NNCF's
transformer scheme, and as an ablation the whole graph in int8 under its default scheme) against the torch float32 model
on `--num` DDIM-50 samples of identical noise, paired FD / KD verdicts as `slimfusion compare` gives them; and the
OpenVINO float32 and bf16 runs the same way (float32 should tie: float rounding only). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from runinfo import stamp, verdict

from slimfusion.export import ExportConfig, export_openvino
from slimfusion.metrics.cost import interleaved_latency
from slimfusion.metrics.timing import cell, ratio
from slimfusion.models.io import load
from slimfusion.models.openvino import cpu_has_bf16
from slimfusion.quality import References, quality_of
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.sample import SampleConfig, sample

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "deploy_cpu.md"
CASES = [("builtin:ddpm-cifar10", 8), ("builtin:digits-ddpm", 64)]


def engines(source: str, batch: int, folder: Path, ablation: bool) -> dict:
    """torch float32, torch bf16 + compile, OpenVINO float32 / bf16 (where the CPU has it) / int8 of one model at one
    static batch; `ablation`: also int8 over the whole graph (NNCF's default scheme, nothing kept in float)."""
    name = source.split(":")[-1]
    models = {"torch float32": load(source)}
    models["torch bf16 + compile"] = quantize(load(source), QuantizeConfig(scheme="bf16", compile=True))
    exports = {"OpenVINO float32": ExportConfig(batch=batch)}
    if cpu_has_bf16():
        exports["OpenVINO bf16"] = ExportConfig(batch=batch, precision="bf16")
    calib = min(64, 8 * batch)
    exports["OpenVINO int8"] = ExportConfig(batch=batch, int8=True, calib_num=calib)
    if ablation:
        whole = ExportConfig(batch=batch, int8=True, calib_num=calib, int8_scope="everything")
        exports["OpenVINO int8, whole graph"] = whole
    for label, config in exports.items():
        models[label] = load(export_openvino(load(source), config, folder / f"{name}-{len(models)}"))
    return models


def speed_rows(models: dict, batch: int, repeats: int, rounds: int) -> dict[str, tuple]:
    per_round: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for _ in range(rounds):
            for label, seconds in interleaved_latency(models, batch=batch, repeats=repeats).items():
                per_round[label].append(seconds)
    base, compiled = np.array(per_round["torch float32"]), np.array(per_round["torch bf16 + compile"])
    return {
        k: (float(np.median(v)), ratio(base, np.array(v)), ratio(compiled, np.array(v))) for k, v in per_round.items()
    }


def quality_rows(models: dict, num: int) -> dict[str, dict]:
    """Each OpenVINO engine against torch float32 on identical noise: paired FD / KD differences and verdicts."""
    config = SampleConfig(num=num, steps=50, seed=1, batch_size=64)
    references = References("digits:all")
    record = {"indices": list(range(num)), "prompts": None, "class_labels": None}
    images = {k: sample(m, config, progress=False) for k, m in models.items() if k != "torch bf16 + compile"}
    base = quality_of(images["torch float32"], record, ["fd", "kd"], references, base=images["torch float32"])
    rows = {}
    for label, x in images.items():
        if label == "torch float32":
            continue
        mine = quality_of(x, record, ["fd", "kd"], references, base=images["torch float32"])
        rows[label] = mine.versus(base, paired=True) | {"max_pixel": float((x - images["torch float32"]).abs().max())}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    code = stamp()
    torch.set_num_threads(2)
    lines = [
        "# OpenVINO against torch on this CPU",
        "",
        f"`.venv/bin/python benchmarks/deploy_cpu.py --num {args.num} --rounds {args.rounds} --repeats {args.repeats}`"
        f" ({code}; {platform.processor() or 'cpu'},"
        f" {torch.get_num_threads()} threads; every speed a ratio to torch float32 timed in alternation in one run)",
        "",
        "| model | batch | engine | forward s | speedup vs torch float32 [95%] | vs torch bf16 + compile [95%] |",
        "|---|---:|---|---:|---|---|",
    ]
    quality = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source, batch in CASES:
            models = engines(source, batch, Path(tmp), ablation=source == "builtin:digits-ddpm")
            for label, (seconds, speed, versus) in speed_rows(models, batch, args.repeats, args.rounds).items():
                lines.append(f"| {source} | {batch} | {label} | {seconds:.4f} | {cell(*speed)} | {cell(*versus)} |")
            print("\n".join(lines[-4:]), flush=True)
            if source == "builtin:digits-ddpm" and args.num:
                quality = quality_rows(models, args.num)
    if quality:
        title = f"## Quality on builtin:digits-ddpm ({args.num} DDIM-50 samples, seed 1, paired on identical noise)"
        header = "| engine | FD diff [95%] | KD diff [95%] (x1000) | max pixel difference |"
        lines += ["", title, "", header, "|---|---|---|---:|"]
        for label, row in quality.items():
            lines.append(f"| {label} | {verdict(row['fd'])} | {verdict(row['kd'], 1e3)} | {row['max_pixel']:.4f} |")
    RESULT.write_text("\n".join(lines) + "\n")
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
