"""Step-distilled students of builtin:digits-ddpm, timed: the models benchmarks/steps_digits.py --students compares.

    .venv/bin/python benchmarks/distill_digits.py --steps 2500 --round-steps 500

Students (each one `distill_steps` run on the CPU of this machine, wall time recorded in `--work`/students.json):
- consistency: consistency distillation from the original (samples in any 1-8 steps with its LCMScheduler);
- consistency-huber: the same with the pseudo-Huber distance of improved consistency training (`--loss
  pseudo-huber`) instead of LCM's MSE: a lever for the moonshot;
- progressive: one run `--start` (32) -> ... -> 2 -> 1 DDIM steps, `--round-steps` per round, every round's student
  kept;
- pruned: the original pruned at ratio 0.25 (56% of the MACs; `--prune-method`, default Diff-Pruning T = 0.05) and
  recovered as compose_digits.py does (finetune 1,200 steps, distilled from the original); no sampler of its own, so
  steps_digits.py samples it with the solvers;
- pruned-progressive, pruned-consistency: the recovered pruned model step-distilled (as above) from the unpruned
  original: the moonshot's "pruned, bf16, 2-4 step student".
A student is rebuilt when its settings or the code's commit change (the pruned-* ones also when `pruned` is).
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
from slimfusion.subject import Subject
from slimfusion.train import FinetuneConfig, finetune
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
    parser.add_argument("--recover-steps", type=int, default=1200, help="pruned: finetune steps after pruning")
    names = ["consistency", "consistency-huber", "progressive", "pruned", "pruned-progressive", "pruned-consistency"]
    parser.add_argument("--only", nargs="*", default=names, help="jobs to run (the pruned-* ones need pruned)")
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

    def consistency(start_from: str = "builtin:digits-ddpm", loss: str = "mse") -> dict:
        teacher, model = load("builtin:digits-ddpm"), load(start_from)
        config = StepDistillConfig(method="consistency", to_steps=4, steps=args.steps, loss=loss)
        return {"": distill_steps(model, images, config, teacher=teacher, progress=False)}

    def progressive(start_from: str = "builtin:digits-ddpm") -> dict:
        teacher, model, kept = load("builtin:digits-ddpm"), load(start_from), {}
        config = StepDistillConfig(method="progressive", to_steps=1, teacher_steps=args.start, steps=args.round_steps)

        def keep(student) -> None:
            kept[f"-{get_meta(student)['sampler']['steps']}"] = copy.deepcopy(student)

        distill_steps(model, images, config, teacher=teacher, progress=False, on_round=keep)
        return kept

    def pruned() -> dict:
        teacher, model = load("builtin:digits-ddpm"), load("builtin:digits-ddpm")
        prune(model, StructuralConfig(method=args.prune_method, threshold=0.05, ratio=0.25), data=images)
        finetune(model, images, FinetuneConfig(steps=args.recover_steps), teacher=teacher, progress=False)
        return {"": model}

    jobs = {
        "consistency": (consistency, {"steps": args.steps}),
        "consistency-huber": (lambda: consistency(loss="pseudo-huber"), {"steps": args.steps, "loss": "pseudo-huber"}),
        "progressive": (progressive, {"round_steps": args.round_steps, "from": args.start}),
        "pruned": (pruned, {"prune": f"{args.prune_method} 0.25", "recover_steps": args.recover_steps}),
        "pruned-progressive": (
            lambda: progressive(str(work / "pruned")),
            {"round_steps": args.round_steps, "from": args.start},
        ),
        "pruned-consistency": (lambda: consistency(str(work / "pruned")), {"steps": args.steps}),
    }
    for name in args.only:
        make, settings = jobs[name]
        if name.startswith("pruned-"):  # made from the recovered pruned model: remade when it is
            if "pruned" not in record:
                raise SystemExit(f"{name} needs the pruned model: run with --only pruned {name}")
            settings = settings | {"pruned": record["pruned"]["settings"], "pruned_commit": record["pruned"]["commit"]}
        run(name, settings, make, work, record, code, args.reuse)


if __name__ == "__main__":
    main()
