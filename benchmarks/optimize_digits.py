"""`slimfusion optimize` on builtin:digits-ddpm with the training-free levers, and the search's choice against the
hand-made rows of steps_digits.md that were within the noise there, at the same quality rule.

Regenerates benchmarks/results/optimize_digits.md:

    .venv/bin/python benchmarks/optimize_digits.py --budget 15m
    .venv/bin/python benchmarks/optimize_digits.py --budget 60m --levers all --data digits --work runs/optimize_all
    (-> benchmarks/results/optimize_digits_all.md)

The search runs as `slimfusion optimize builtin:digits-ddpm --budget 15m` does (batch 64, quality rule "tie": FD and KD
tie or better, paired on identical noise; confirmed on 2,000 fresh samples; the original is DDIM 50 float32). Then
each hand-made row is judged the same way (the same 2,000 fresh samples, the same rule) and timed in alternation with
the original and the choice in one run: the search is within 5% of the best hand row when the choice's speedup is at
least 0.95 x the fastest hand row that holds the rule. Run it alone on the machine: every speed is a wall-clock ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from runinfo import stamp

from slimfusion.metrics.timing import cell, interleaved, ratio
from slimfusion.models.io import load
from slimfusion.optimize import OptimizeConfig, optimize
from slimfusion.optimize.measure import Arena, sample_config
from slimfusion.optimize.space import label_of
from slimfusion.sample import sample

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "optimize_digits.md"
# steps_digits.md's fewest evaluations within its noise floor per solver (float32), and its fastest bf16 row
HAND = [  # at the solvers' own spacings, as steps_digits.md sampled them
    {"solver": {"scheduler": "unipc", "steps": 6, "spacing": "linspace"}},
    {"solver": {"scheduler": "dpm++3m", "steps": 6, "spacing": "linspace"}},
    {"solver": {"scheduler": "dpm++2m", "steps": 8, "spacing": "linspace"}},
    {"solver": {"scheduler": "deis", "steps": 8, "spacing": "linspace"}},
    {"solver": {"scheduler": "ddim", "steps": 15, "spacing": "leading"}},
    {"solver": {"scheduler": "unipc", "steps": 6, "spacing": "linspace"}, "precision": {"scheme": "bf16"}},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="15m")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "optimize_digits")
    parser.add_argument("--resume", action="store_true", help="continue the search in --work")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds of the hand-row comparison")
    parser.add_argument("--levers", default="training-free", help="'all' adds the training levers (with --data)")
    parser.add_argument("--data", default=None, help="training images of the training levers, e.g. digits")
    args = parser.parse_args()
    args.stamp = stamp()  # the code that runs (src/ may change while a long search runs)
    args.result = RESULT if args.levers == "training-free" else RESULT.with_name(f"optimize_digits_{args.levers}.md")
    if args.work.exists() and not args.resume:
        shutil.rmtree(args.work)
    config = OptimizeConfig(budget=args.budget, levers=args.levers.split(","), data=args.data)
    result = optimize("builtin:digits-ddpm", config, out=args.work, resume=args.resume)
    chosen = result["chosen"]
    arena = Arena(load("builtin:digits-ddpm"), config, args.work / "cache")
    arena.builder.store = args.work / "models"  # the search's trained models, not trained again
    fresh = config.seed + 1
    hand = []
    for candidate in HAND:
        row = arena.judge(candidate, fresh, config.confirm_num)
        hand.append({"candidate": candidate, **row})
        print(f"{label_of(candidate)}: holds {row['holds']} {row['why'] or ''}", flush=True)
    runs = {"original": sample_config(config, {"scheduler": "ddim", "steps": 50}, fresh, config.batch)}
    samplers = {"original": arena.builder.sampler}
    for name, candidate in [("chosen", chosen["candidate"] if chosen else None)] + [
        (label_of(h["candidate"]), h["candidate"]) for h in hand
    ]:
        if candidate is None:
            continue
        sampler, build = arena.builder.build(candidate)
        runs[name] = sample_config(config, build.sampling, fresh, config.batch)
        samplers[name] = sampler
    times = interleaved({n: (lambda n=n: sample(samplers[n], runs[n], progress=False)) for n in runs}, 1, args.rounds)
    speed = {n: ratio(times["original"], t) for n, t in times.items()}
    write(result, hand, speed, args)
    print(f"wrote {args.result}")


def write(result: dict, hand: list[dict], speed: dict, args) -> None:
    frontier = (args.work / "frontier.md").read_text().split("\n", 2)[2]
    chosen = result["chosen"]
    holding = [h for h in hand if h["holds"]]
    best = max(holding, key=lambda h: speed[label_of(h["candidate"])][0], default=None)
    lines = [
        f"# slimfusion optimize on builtin:digits-ddpm ({args.levers} levers)",
        "",
        f"Command: `.venv/bin/python benchmarks/optimize_digits.py --budget {args.budget}"
        + (f" --levers {args.levers} --data {args.data}" if args.levers != "training-free" else "")
        + f"` ({args.stamp})",
        "",
        __doc__.split("\n\n")[3].strip().replace("\n", " "),
        "",
        "## The search",
        "",
        frontier.strip(),
        "",
        "## The choice against the hand-made rows (same rule, same 2,000 fresh samples, one timing run)",
        "",
        "| row | holds | FD diff [95%] | KD diff x1000 [95%] | speedup over DDIM 50 (alternating) |",
        "|---|---|---|---|---|",
    ]
    if chosen:
        lines.append(row_line("**search's choice: " + label_of(chosen["candidate"]) + "**", chosen, speed["chosen"]))
    for h in hand:
        lines.append(row_line(label_of(h["candidate"]), h, speed[label_of(h["candidate"])]))
    lines.append("")
    if chosen and best:
        share = speed["chosen"][0] / speed[label_of(best["candidate"])][0]
        verdict = "within 5%" if share >= 0.95 else "more than 5% slower"
        lines.append(f"The choice runs at {share:.2f}x the speed of the fastest hand row that holds the rule "
                     f"({label_of(best['candidate'])}): {verdict}.")  # fmt: skip
    args.result.write_text("\n".join(lines) + "\n")
    (args.work / "hand.json").write_text(json.dumps({"hand": hand, "speed": speed}, indent=2, default=str))
    print(args.result.read_text())


def row_line(name: str, row: dict, speed: tuple) -> str:
    fd, kd = row["differences"]["fd"], row["differences"]["kd"]
    holds = "yes" if row["holds"] else "no: " + row["why"]
    fd_text = f"{fd['difference']:+.3f} [{fd['interval'][0]:+.3f}, {fd['interval'][1]:+.3f}] {fd['verdict']}"
    kd_low, kd_high = (v * 1000 for v in kd["interval"])
    kd_text = f"{kd['difference'] * 1000:+.2f} [{kd_low:+.2f}, {kd_high:+.2f}] {kd['verdict']}"
    return f"| {name} | {holds} | {fd_text} | {kd_text} | {cell(*speed)} |"


if __name__ == "__main__":
    main()
