"""Step-distilled conditional built-ins: prompt / class accuracy and FD of 1-8-step students of digits-t2i / -dit.

Regenerates benchmarks/results/steps_conditional.md:

    .venv/bin/python benchmarks/steps_conditional.py --num 1000 --t2i-steps 800 --round-steps 200

Students (trained here first, wall time recorded in `--work`/students.json; rebuilt when settings or code change):
- t2i-consistency: builtin:digits-t2i, consistency distillation (LCM) on the digits latents with their prompts,
  guidance 2 folded in (the student samples with guidance 1), `--t2i-steps` optimizer steps;
- dit-progressive: builtin:digits-dit, progressive distillation 32 -> 16 -> 8 -> 4 -> 2 -> 1 DDIM steps,
  `--round-steps` per round, every round's student kept. (DiTPipeline draws a stochastic solver's step noise from
  torch's global generator, not per image, so slimfusion refuses LCM sampling on DiT: its student is progressive.)
Rows: the original at DDIM 25 with guidance 2 (the reference), the original at 1-8 DDIM steps (no training), each
student at 1-8 steps. Accuracy: share of `--num` samples builtin:digits-features labels as the asked digit (t2i: 30
prompts, three wordings per digit; DiT: labels 0-9). FD (digits features, not FID) vs all 1,797 digits and vs the
original's DDIM-25 samples (the noise floor, FD between two independent sample sets of the original, is stated above
each table). DDIM at 1-8 steps (no training) is the baseline the students must beat.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from conditional_builtins import PROMPTS, asked, conditions
from distill_digits import run
from steps_digits import commit

from slimfusion.data import load_digits_split
from slimfusion.metrics.accuracy import digit_accuracy
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.meta import get_meta
from slimfusion.pipelines import denoiser_of, load_pipeline
from slimfusion.sample import SampleConfig, sample
from slimfusion.subject import Subject
from slimfusion.verbs.step_distill import StepDistillOptions, run_distill_steps

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "steps_conditional.md"
NFES = (1, 2, 4, 8)
GUIDANCE = 2.0


def train(args, work: Path, record: dict, code: str) -> None:
    def t2i() -> dict:
        subject = Subject.load("builtin:digits-t2i")
        options = StepDistillOptions(method="consistency", to_steps=4, steps=args.t2i_steps, guidance=GUIDANCE)
        run_distill_steps(subject, options, progress=False)
        return {"": subject}

    def dit() -> dict:
        subject, kept = Subject.load("builtin:digits-dit"), {}
        options = StepDistillOptions(
            method="progressive", to_steps=1, teacher_steps=32, steps=args.round_steps, guidance=GUIDANCE
        )
        rounds = []

        def keep(student) -> None:
            rounds.append(
                (get_meta(student)["sampler"]["steps"], {k: v.clone() for k, v in student.state_dict().items()})
            )

        run_distill_steps(subject, options, progress=False, on_round=keep)
        for steps, weights in rounds:
            copy = Subject.load("builtin:digits-dit")
            copy.denoiser.load_state_dict(weights)
            get_meta(copy.denoiser).update(sampler=dict(get_meta(subject.denoiser)["sampler"], steps=steps))
            get_meta(copy.denoiser)["history"] = list(get_meta(subject.denoiser)["history"])
            copy.obj.scheduler = subject.obj.scheduler
            kept[f"-{steps}"] = copy
        return kept

    jobs = {"t2i-consistency": (t2i, {"steps": args.t2i_steps}), "dit-progressive": (dit, {"round": args.round_steps})}
    for name in args.only:
        make, settings = jobs[name]
        run(name, settings, make, work, record, code, args.reuse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--t2i-steps", type=int, default=800)
    parser.add_argument("--round-steps", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=["t2i-consistency", "dit-progressive"])
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="runs/steps_conditional")
    parser.add_argument("--reuse", action="store_true", help="keep students of the same settings from older code")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    record_file = work / "students.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    code = commit()
    train(args, work, record, code)
    if args.train_only:
        return
    real = feature_stats(digit_features(load_digits_split("all")[0]))
    lines = [
        "# Step-distilled conditional built-ins",
        "",
        f"Command: `.venv/bin/python benchmarks/steps_conditional.py {' '.join(sys.argv[1:])}` (code {code})",
        "",
        f"{args.num} samples per row, seed 0, guidance {GUIDANCE} for the original (students: folded in, sampled at"
        " guidance 1). Accuracy: builtin:digits-features labels the asked digit. FD: digits features (not FID).",
    ]
    for name, prefix in (("digits-t2i", "t2i-consistency"), ("digits-dit", "dit-progressive")):
        lines += section(name, prefix, work, record, real, args)
    RESULT.write_text("\n".join(lines) + "\n")


def section(name: str, prefix: str, work: Path, record: dict, real, args) -> list[str]:
    original = load_pipeline(f"builtin:{name}")
    base = dict(num=args.num, batch_size=250, **conditions(name))
    digits = asked(name, args.num)

    def measure(pipe, **config) -> tuple[float, object]:
        images = sample(pipe, SampleConfig(**base, **config), progress=False)
        return digit_accuracy(images, digits), feature_stats(digit_features(images))

    acc0, ref = measure(original, steps=25, guidance=GUIDANCE)
    _, second = measure(original, steps=25, guidance=GUIDANCE, seed=1)
    floor = frechet_distance(*ref, *second)
    rows = [("original", "ddim", 25, acc0, frechet_distance(*ref, *real), 0.0)]
    for nfe in NFES:
        acc, stats = measure(original, steps=nfe, guidance=GUIDANCE)
        rows.append(
            (
                "original (no training)",
                "ddim",
                nfe,
                acc,
                frechet_distance(*stats, *real),
                frechet_distance(*stats, *ref),
            )
        )
    entry = record.get(prefix, {})
    for student in entry.get("students", []):
        pipe = load_pipeline(work / student)
        sampler = get_meta(denoiser_of(pipe))["sampler"]
        nfes = NFES if sampler["scheduler"] == "lcm" else (sampler["steps"],)
        for nfe in nfes:
            acc, stats = measure(pipe, steps=nfe)
            rows.append(
                (
                    student,
                    sampler["scheduler"],
                    nfe,
                    acc,
                    frechet_distance(*stats, *real),
                    frechet_distance(*stats, *ref),
                )
            )
    wall = f"{entry['wall_s'] / 60:.1f} min (one run, all its students; code {entry['commit']})" if entry else "none"
    lines = [
        "",
        f"## builtin:{name}",
        "",
        f"Distillation wall time on this 2-core machine: {wall}. Noise floor (FD between two independent sets of the"
        f" original at DDIM 25): {floor:.3f}. Prompts: {len(PROMPTS) if name == 'digits-t2i' else 'labels 0-9'}.",
        "",
        "| model | sampler | steps | accuracy | FD vs all digits | FD vs original (DDIM 25) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {m} | {s} | {n} | {a:.1%} | {f:.3f} | {o:.3f} |" for m, s, n, a, f, o in rows]
    four = [r for r in rows if r[2] == 4 and r[0] != "original (no training)" and r[0] != "original"]
    if four:
        best = max(four, key=lambda r: r[3])
        verdict = "meets" if best[3] >= 0.97 else "misses"
        lines += ["", f"At 4 steps the best student ({best[0]}) reaches {best[3]:.1%}: {verdict} the >= 97% goal."]
    return lines


if __name__ == "__main__":
    main()
