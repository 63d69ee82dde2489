"""A step-distilled student on OpenVINO int8: its speed over DDIM 50 torch float32 and what int8 costs it in FD / KD.

Regenerates benchmarks/results/deploy_student.md:

    .venv/bin/python benchmarks/deploy_student.py --num 2000

The student: consistency distillation of builtin:digits-ddpm with the pseudo-Huber distance (`distill-steps --loss
pseudo-huber`, `--train-steps` optimizer steps; trained once into `--work`, reused while its settings are the same),
sampled at `--steps` with its own LCM sampler. It is exported at batch 64 as an OpenVINO float32 IR and in int8 (NNCF
post-training, the time path and end convolutions in float). Speed: 64 images sampled end to end, every row in
alternation with DDIM 50 torch float32 in one run (median of `--rounds`, 95% interval). Quality: `--num` images of
seed 1 of each row against DDIM 50 torch float32 on identical noise (paired FD / KD verdicts, digits features), and
the int8 student against the float32 student (what int8 alone costs). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from runinfo import stamp, verdict

from slimfusion.data import load_images
from slimfusion.export import ExportConfig, export_openvino
from slimfusion.metrics.timing import cell, speedups
from slimfusion.models.io import load, save
from slimfusion.quality import References, quality_of
from slimfusion.sample import SampleConfig, sample
from slimfusion.train.recovery.step_distill import StepDistillConfig, distill_steps

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "deploy_student.md"
WANTED = ["fd", "kd"]


def student(work: Path, train_steps: int, steps: int) -> tuple[torch.nn.Module, str]:
    """The consistency student, trained here once per setting (a folder plus the settings and the minutes it took)."""
    settings = {"method": "consistency", "loss": "pseudo-huber", "to_steps": steps, "steps": train_steps}
    folder, record = work / "student", work / "student.json"
    if record.exists() and json.loads(record.read_text())["settings"] == settings and folder.exists():
        return load(folder), json.loads(record.read_text())["note"]
    started = time.perf_counter()
    config = StepDistillConfig(**settings)
    images = load_images("digits", 16, 1)
    model = distill_steps(load("builtin:digits-ddpm"), images, config, teacher=load("builtin:digits-ddpm"))
    note = f"trained here in {(time.perf_counter() - started) / 60:.1f} min"
    save(model, folder, overwrite=True)
    record.write_text(json.dumps({"settings": settings, "note": note}))
    return load(folder), note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=4, help="the student's sampling steps")
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", default="runs/deploy_student")
    args = parser.parse_args()
    code = stamp()
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    distilled, note = student(work, args.train_steps, args.steps)
    original = load("builtin:digits-ddpm")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"DDIM 50, torch float32": (original, {"steps": 50})}
        rows[f"student {args.steps} steps, torch float32"] = (distilled, {})
        for label, config in {"OpenVINO float32": ExportConfig(), "OpenVINO int8": ExportConfig(int8=True)}.items():
            exported = load(export_openvino(distilled, config, Path(tmp) / label.replace(" ", "-")))
            rows[f"student {args.steps} steps, {label}"] = (exported, {})
        reference = next(iter(rows))

        def run(model, sampling: dict, num: int):
            config = SampleConfig(num=num, seed=1, batch_size=64, **sampling)
            return torch.inference_mode()(lambda: sample(model, config, progress=False))

        speed = speedups({k: run(m, s, 64) for k, (m, s) in rows.items()}, reference, args.rounds)
        references = References("digits:all")
        record = {"indices": list(range(args.num)), "prompts": None, "class_labels": None}
        qualities = {k: quality_of(run(m, s, args.num)(), record, WANTED, references) for k, (m, s) in rows.items()}
    float_student = qualities[f"student {args.steps} steps, torch float32"]
    lines = [
        "# A step-distilled student on OpenVINO int8",
        "",
        f"Command: `.venv/bin/python benchmarks/deploy_student.py --num {args.num} --steps {args.steps} --train-steps"
        f" {args.train_steps}` ({code}; student {note})",
        "",
        __doc__.split("\n\n")[3].strip().replace("\n", " "),
        "",
        "| row | FD | KD x1000 | FD vs DDIM 50 | KD vs DDIM 50 (x1000) | FD vs the float32 student | speedup over"
        " DDIM 50 torch float32 |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for name, q in qualities.items():
        values = q.values()
        versus = q.versus(qualities[reference], paired=True) if name != reference else None
        own = q.versus(float_student, paired=True)["fd"] if "OpenVINO" in name else None
        lines.append(
            f"| {name} | {values['fd']:.3f} | {values['kd'] * 1000:.2f} | {verdict(versus['fd']) if versus else ''} |"
            f" {verdict(versus['kd'], 1e3) if versus else ''} | {verdict(own) if own else ''} | {cell(*speed[name])} |"
        )
    RESULT.write_text("\n".join(lines) + "\n")
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
