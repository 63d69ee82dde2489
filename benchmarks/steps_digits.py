"""Fewer steps on builtin:digits-ddpm: every training-free solver at 4-50 function evaluations, with and without bf16.

Regenerates benchmarks/results/steps_digits.md:

    .venv/bin/python benchmarks/steps_digits.py --num 2000

and, with the step-distilled students of benchmarks/distill_digits.py next to the solvers at the same evaluations,
benchmarks/results/steps_digits_students.md:

    .venv/bin/python benchmarks/steps_digits.py --num 2000 --students runs/distill_digits --solvers ddim unipc \
        --nfes 1 2 4 8 10 15 --bf16 unipc --time --result benchmarks/results/steps_digits_students.md

(the recovered pruned model that distill_digits.py makes is sampled there with the same solvers, in both precisions)

Quality: FD (digits features, not FID) of `--num` samples vs all 1,797 digits; the noise floor is the FD between two
independent sample sets of the original (DDIM 50, float32). (A bootstrap over generated images is not used: resampling
with replacement duplicates images, shrinks their covariance and biases FD upward, so its interval misses the
estimate; intervals over independent sample sets are the evaluate verb's to give.)
SSIM: against DDIM 50's samples from the same noise. A row is "within
the floor" when its FD minus the original's is at most the floor. Speed (`--time`, run alone on the machine): seconds
to sample 64 images, every timed row in alternation with DDIM 50 float32 in one run (median of `--rounds`), as a
ratio. NFE = model evaluations per image (heun evaluates twice per step). Rows are cached in `--work` under a key of
their settings, the sample count and the code's commit, so a rerun with other code or settings recomputes them.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from runinfo import commit

from slimfusion.data import load_images
from slimfusion.diffusion import SOLVERS
from slimfusion.metrics.consistency import ssim
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.io import load
from slimfusion.models.meta import get_meta
from slimfusion.quantize import QuantizeConfig, quantize
from slimfusion.sample import SampleConfig, sample

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "steps_digits.md"
SEED, FLOOR_SEED = 1000, 1001
NFES = (4, 6, 8, 10, 15, 25, 50)
SOLVER_ROWS = ("ddim", "dpm++2m", "dpm++3m", "dpm++2m-sde", "unipc", "deis", "euler", "heun", "ddpm")


def steps_for(solver: str, nfe: int) -> int:
    return (nfe + 1) // 2 if solver == "heun" else nfe


def images_of(
    model, solver: str | None, nfe: int, num: int, seed: int = SEED, batch: int = 250, timesteps: list | None = None
) -> torch.Tensor:
    """`num` seeded samples at `nfe` evaluations; solver None: a step-distilled student's own sampler (at explicit
    `timesteps` when given)."""
    if solver is None:
        config = SampleConfig(num=num, steps=nfe, seed=seed, batch_size=batch, timesteps=timesteps)
    else:
        config = SampleConfig(num=num, steps=steps_for(solver, nfe), scheduler=solver, seed=seed, batch_size=batch)
    return sample(model, config, progress=False).float()


def baseline(model, num: int) -> tuple[tuple, torch.Tensor, float, float]:
    """What every row is measured against: the digits' feature statistics, the original's DDIM-50 samples (seed
    SEED), their FD, and the noise floor (FD between those samples and a second set, seed FLOOR_SEED)."""
    reference = feature_stats(digit_features(load_images("digits:all", 16, 1)))
    original = images_of(model, "ddim", 50, num)
    second = images_of(model, "ddim", 50, num, seed=FLOOR_SEED)
    floor = frechet_distance(*feature_stats(digit_features(original)), *feature_stats(digit_features(second)))
    return reference, original, frechet_distance(*feature_stats(digit_features(original)), *reference), floor


def key_of(row: dict, args) -> str:
    fields = {k: row[k] for k in ("solver", "nfe", "precision", "karras")} | {"num": args.num}
    if row.get("student"):
        fields |= {"student": row["student"], "trained": row["trained"]}
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def student_rows(args) -> list[dict]:
    """Rows of the models benchmarks/distill_digits.py made: a student at its own sampler's step counts (a consistency
    student at every `--nfes`), a model without a sampler of its own (the recovered pruned one) with the solvers, as
    the original."""
    if args.students is None:
        return []
    record = json.loads((args.students / "students.json").read_text())
    rows = []
    for run, entry in record.items():
        made = {"run": run, "wall_s": entry["wall_s"], "trained": entry["commit"]}
        for name in entry["students"]:
            sampler = get_meta(load(args.students / name)).get("sampler")
            if sampler is None:
                rows += [row | made | {"student": name, "own": False} for row in rows_wanted(args)]
                continue
            nfes = args.nfes if sampler["scheduler"] == "lcm" else (sampler["steps"],)
            rows += [
                {"student": name, "solver": f"{sampler['scheduler']} (student)", "nfe": nfe, "precision": precision,
                 "karras": False, "own": True} | made
                for nfe in nfes
                for precision in ("float32", "bf16")
            ]  # fmt: skip
    return rows


def rows_wanted(args) -> list[dict]:
    rows = [{"solver": s, "nfe": n, "precision": "float32", "karras": False} for s in args.solvers for n in args.nfes]
    rows += [{"solver": s, "nfe": n, "precision": "bf16", "karras": False} for s in args.bf16 for n in args.nfes]
    return [r for r in rows if not (r["solver"] == "ddpm" and r["nfe"] < 25)]  # ancestral DDPM needs many steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--solvers", nargs="*", default=list(SOLVER_ROWS))
    parser.add_argument("--nfes", type=int, nargs="*", default=list(NFES))
    parser.add_argument("--bf16", nargs="*", default=["ddim", "dpm++2m", "unipc"], help="solvers also run in bf16")
    parser.add_argument("--time", action="store_true", help="also time the rows (run alone on the machine)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", default="runs/steps_digits")
    parser.add_argument("--students", type=Path, default=None, help="work folder of benchmarks/distill_digits.py")
    parser.add_argument("--result", default=str(RESULT.relative_to(ROOT)), help="the table to write")
    args = parser.parse_args()
    unknown = [s for s in args.solvers + args.bf16 if s not in SOLVERS]
    if unknown:
        parser.error(f"unknown solver(s): {', '.join(unknown)}")
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache_file = work / "rows.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    code = commit()
    models = {(None, "float32"): load("builtin:digits-ddpm")}
    models[None, "bf16"] = quantize(copy.deepcopy(models[None, "float32"]), QuantizeConfig(scheme="bf16"))
    reference, original, base_fd, floor = baseline(models[None, "float32"], args.num)
    rows = rows_wanted(args) + student_rows(args)
    for row in rows:
        key = key_of(row, args)
        if key in cache and cache[key].get("commit") == code:
            row.update(cache[key])
            continue
        start = time.perf_counter()
        images = images_of(model_of(row, models, args), solver_of(row), row["nfe"], args.num)
        fd = frechet_distance(*feature_stats(digit_features(images)), *reference)
        row.update(fd=fd, ssim=ssim(images, original), commit=code)
        row["sample_s"] = round(time.perf_counter() - start, 1)
        cache[key] = dict(row)
        cache_file.write_text(json.dumps(cache, indent=2))
        print(row, flush=True)
    if args.time:
        time_rows(rows, models, args)
    write(rows, floor, base_fd, args, code)


def model_of(row: dict, models: dict, args):
    """The original (float32 / bf16) or a student, loaded once and kept in `models`."""
    key = (row.get("student"), row["precision"])
    if key not in models:
        model = load(args.students / row["student"])
        models[key] = quantize(model, QuantizeConfig(scheme="bf16")) if row["precision"] == "bf16" else model
    return models[key]


def solver_of(row: dict) -> str | None:
    """None for a student on its own sampler."""
    return None if row.get("own") else row["solver"]


def time_rows(rows: list[dict], models: dict, args) -> None:
    """Seconds for 64 images, every row in alternation with DDIM 50 float32 (ratios from one run)."""
    timed = [
        r for r in rows if r["solver"] in ("ddim", "dpm++2m", "unipc") or r["precision"] == "bf16" or r.get("student")
    ]
    base = {"solver": "ddim", "nfe": 50, "precision": "float32"}
    runs = [base, *timed]

    def run(row: dict) -> None:
        images_of(model_of(row, models, args), solver_of(row), row["nfe"], 64, batch=64, timesteps=row.get("timesteps"))

    for row in runs:  # warm-up
        run(row)
    seconds: dict[int, list[float]] = {id(r): [] for r in runs}
    for _ in range(args.rounds):
        for row in runs:
            start = time.perf_counter()
            run(row)
            seconds[id(row)].append(time.perf_counter() - start)
    reference = statistics.median(seconds[id(base)])
    for row in timed:
        row["speedup"] = reference / statistics.median(seconds[id(row)])


def write(rows: list[dict], floor: float, fd0: float, args, code: str) -> None:
    lines = [
        "# Fewer steps on builtin:digits-ddpm: training-free solvers"
        + (" and step-distilled students" if args.students else ""),
        "",
        f"Command: `.venv/bin/python benchmarks/steps_digits.py {' '.join(sys.argv[1:])}` (code {code})",
        "",
        f"FD (digits features, not FID) of {args.num} samples vs all 1,797 digits. The original (DDIM 50, float32):"
        f" FD {fd0:.3f}; noise floor (FD between two independent sample sets of it): {floor:.3f}."
        " 'within floor': FD - the original's FD <= the floor. SSIM vs DDIM 50's samples from the same noise."
        + (
            " Speedup: 64 images, in alternation with DDIM 50 float32 in one run (median of"
            f" {args.rounds}); empty where not timed."
            if args.time
            else " Not timed in this run (speed at equal NFE follows the NFE; bf16 rows need `--time`)."
        ),
        "",
        "| solver | precision | NFE | FD | FD / original | within floor | SSIM | speedup |",
        "|---|---|---:|---|---:|---|---:|---:|",
    ]
    for r in rows:
        if not r.get("student"):
            lines.append(f"| {r['solver']} | {r['precision']} | {r['nfe']} | {quality_cells(r, fd0, floor)} |")
    lines += ["", *reading([r for r in rows if not r.get("student")], fd0, floor)]
    students = [r for r in rows if r.get("student")]
    if students:
        lines += ["", *student_table(students, fd0, floor, args)]
    (ROOT / args.result).write_text("\n".join(lines) + "\n")


def quality_cells(r: dict, fd0: float, floor: float) -> str:
    """The cells FD | FD / original | within floor | SSIM | speedup of a row (speedup empty where not timed)."""
    within = "yes" if r["fd"] - fd0 <= floor else "no"
    speed = f"{r['speedup']:.2f}x" if "speedup" in r else ""
    return f"{r['fd']:.3f} | {r['fd'] / fd0:.2f} | {within} | {r['ssim']:.3f} | {speed}"


def student_table(rows: list[dict], fd0: float, floor: float, args) -> list[str]:
    """Step-distilled students (benchmarks/distill_digits.py), each on its own sampler, and the goals' verdicts."""
    lines = [
        "## Step-distilled students",
        "",
        f"Made by `benchmarks/distill_digits.py` (work folder `{args.students}`); distillation wall time on this"
        " 2-core machine per run (a progressive run makes all its round students). `pruned` is the original pruned to"
        " 56% of its MACs and recovered by fine-tuning, sampled with the solvers (its time: pruning + recovery);"
        " `pruned-*` students start from it and learn from the unpruned original (their time: distillation only)."
        " Same FD / SSIM / timing as above.",
        "",
        "| student | sampler | precision | NFE | FD | FD / original | within floor | SSIM | speedup | distilled in |",
        "|---|---|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['student']} | {r['solver']} | {r['precision']} | {r['nfe']} | {quality_cells(r, fd0, floor)} |"
            f" {r['wall_s'] / 60:.1f} min |"
        )
    everything = [r for r in rows if "speedup" in r]
    ok = [r for r in everything if r["fd"] - fd0 <= floor]
    lines += [""]
    if ok:
        best = max(ok, key=lambda r: r["speedup"])
        lines.append(
            f"Fastest student within the noise floor: {best['student']} {best['precision']} at {best['nfe']} NFE,"
            f" {best['speedup']:.2f}x DDIM 50 float32, FD {best['fd']:.3f}."
        )
    else:
        lines.append("No student is within the noise floor.")
    if everything:
        fastest = max(everything, key=lambda r: r["speedup"])
        lines.append(
            f"Fastest student at all: {fastest['student']} {fastest['precision']} at {fastest['nfe']} NFE,"
            f" {fastest['speedup']:.2f}x, FD {fastest['fd']:.3f} ({fastest['fd'] / fd0:.2f}x the original's)."
        )
    return lines


def reading(rows: list[dict], fd0: float, floor: float) -> list[str]:
    """The fewest evaluations within the floor, per solver (float32), and the 10-NFE comparison the issue asks."""
    out = ["Fewest evaluations within the noise floor, per solver (float32):", ""]
    for solver in dict.fromkeys(r["solver"] for r in rows):
        ok = [
            r["nfe"] for r in rows if r["solver"] == solver and r["precision"] == "float32" and r["fd"] - fd0 <= floor
        ]
        out.append(f"- {solver}: {min(ok) if ok else 'none of those run'}")
    ten = [r for r in rows if r["nfe"] == 10 and r["precision"] == "float32"]
    if ten:
        best = min(ten, key=lambda r: r["fd"])
        gap = best["fd"] - fd0
        out += [
            "",
            f"At 10 NFE the best solver is {best['solver']}: FD {best['fd']:.3f}, {gap:+.3f} from DDIM 50"
            f" ({'within' if gap <= floor else 'outside'} the floor {floor:.3f}).",
        ]
    return out


if __name__ == "__main__":
    main()
