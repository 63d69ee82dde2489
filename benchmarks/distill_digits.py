"""Step-distilled students of builtin:digits-ddpm, timed: the models benchmarks/steps_digits.py --students compares.

    .venv/bin/python benchmarks/distill_digits.py --steps 2500 --round-steps 500

Students (each one `distill_steps` run on the CPU of this machine, wall time recorded in `--work`/students.json):
- consistency: consistency distillation from the original (samples in any 1-8 steps with its LCMScheduler);
- progressive: one run `--start` (32) -> ... -> 2 -> 1 DDIM steps, `--round-steps` per round, every round's student
  kept;
- pruned-consistency: the original pruned at ratio 0.25 (56% of the MACs; `--prune-method`, default Diff-Pruning
  T = 0.05), not fine-tuned,
  then consistency-distilled from the unpruned original (recovery and step distillation in one run).
A student is rebuilt when its settings or the code's commit change.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from steps_digits import commit  # the benchmark folder is on sys.path when a script in it runs

from slimfusion.data import load_images
from slimfusion.models.io import load, save
from slimfusion.models.meta import get_meta
from slimfusion.prune import StructuralConfig, prune
from slimfusion.steps import Subject
from slimfusion.train.recovery.step_distill import StepDistillConfig, distill_steps


def run(name: str, settings: dict, make, work: Path, record: dict, code: str, reuse: bool = False) -> None:
    """Train (and time) one student job unless its settings match a recorded one of this commit (`reuse`: of any
    commit; the tables name the commit each student was trained at)."""
    same = record.get(name, {}).get("settings") == settings
    if same and (reuse or record[name].get("commit") == code):
        print(f"{name}: cached (trained at {record[name]['commit']})", flush=True)
        return
    start = time.perf_counter()
    kept = make()
    wall = round(time.perf_counter() - start, 1)
    for suffix, model in kept.items():
        if isinstance(model, Subject):
            model.save(work / f"{name}{suffix}", overwrite=True)  # a pipeline folder
        else:
            save(model, work / f"{name}{suffix}", overwrite=True)
    record[name] = {"settings": settings, "commit": code, "wall_s": wall, "students": [f"{name}{s}" for s in kept]}
    (work / "students.json").write_text(json.dumps(record, indent=2))
    print(f"{name}: {wall:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500, help="consistency runs: optimizer steps")
    parser.add_argument("--round-steps", type=int, default=500, help="progressive: optimizer steps per round")
    parser.add_argument("--start", type=int, default=32, help="progressive: the teacher's DDIM steps (a power of 2)")
    parser.add_argument("--prune-method", default="diff-pruning", help="how the pruned student is pruned (ratio 0.25)")
    parser.add_argument("--only", nargs="*", default=["consistency", "progressive", "pruned-consistency"])
    parser.add_argument("--work", default="runs/distill_digits")
    parser.add_argument("--reuse", action="store_true", help="keep students of the same settings from older code")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    record_file = work / "students.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    code = commit()
    images = load_images("digits", 16, 1)

    def consistency() -> dict:
        model = load("builtin:digits-ddpm")
        config = StepDistillConfig(method="consistency", to_steps=4, steps=args.steps)
        return {"": distill_steps(model, images, config, progress=False)}

    def progressive() -> dict:
        model, kept = load("builtin:digits-ddpm"), {}
        config = StepDistillConfig(method="progressive", to_steps=1, teacher_steps=args.start, steps=args.round_steps)

        def keep(student) -> None:
            kept[f"-{get_meta(student)['sampler']['steps']}"] = copy.deepcopy(student)

        distill_steps(model, images, config, progress=False, on_round=keep)
        return kept

    def pruned_consistency() -> dict:
        teacher, model = load("builtin:digits-ddpm"), load("builtin:digits-ddpm")
        prune(model, StructuralConfig(method=args.prune_method, threshold=0.05, ratio=0.25), data=images)
        config = StepDistillConfig(method="consistency", to_steps=4, steps=args.steps)
        return {"": distill_steps(model, images, config, teacher=teacher, progress=False)}

    jobs = {
        "consistency": (consistency, {"steps": args.steps}),
        "progressive": (progressive, {"round_steps": args.round_steps, "from": args.start}),
        "pruned-consistency": (pruned_consistency, {"steps": args.steps, "prune": f"{args.prune_method} 0.25"}),
    }
    for name in args.only:
        make, settings = jobs[name]
        run(name, settings, make, work, record, code, args.reuse)


if __name__ == "__main__":
    main()
