"""What a search leaves in its run folder: the chosen model, frontier.json / .md / .png and report.html."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from markdown_it import MarkdownIt  # rich's own dependency: the report's tables as HTML

from slimfusion.diffusion.schedulers import build_scheduler, schedule_of, stored_sampler, use_scheduler
from slimfusion.models.meta import get_meta, record_step
from slimfusion.optimize.config import OptimizeConfig
from slimfusion.optimize.space import Builder, Candidate, key_of, label_of
from slimfusion.pipelines import with_denoiser
from slimfusion.plots import frontier_plot
from slimfusion.registry import LEVERS
from slimfusion.skip.plan import store_plan
from slimfusion.subject import Subject

RUNGS = ("screen", "mid", "confirm")


def save_choice(subject: Subject, candidate: Candidate, config: OptimizeConfig, result: dict, folder: Path,
                store: Path | None = None) -> Path:  # fmt: skip
    """The chosen candidate built afresh (its trained models read from the search's `store`) and saved: its levers
    applied, its plan stored, its sampler recorded as the model's own (sample / evaluate use it unless told
    otherwise; pipelines also get it as their scheduler)."""
    sampler, build = Builder(subject.obj, config, keep=1, store=store).build(candidate)
    model = build.model
    if build.plan is not None:
        store_plan(model, build.plan)
    name, steps = build.sampling["scheduler"], build.sampling["steps"]
    stored = stored_sampler(model)
    if stored is not None and stored["scheduler"] == name:  # a student's own sampler (its grid) at the chosen steps
        own = dict(stored) | {"steps": steps}
    else:
        spacing = build.sampling.get("spacing")
        scheduler = build_scheduler(schedule_of(model), name, spacing)
        own = {"scheduler": name, "steps": steps, "spacing": spacing,
               "config": dict(scheduler.config) | {"_class_name": type(scheduler).__name__}}  # fmt: skip
        own["config"].pop("_use_default_values", None)
    if config.conditional:
        own["guidance"] = config.guidance
    get_meta(model)["sampler"] = own
    chosen = result["chosen"]
    record_step(model, "optimize", {"levers": candidate, "quality": config.quality.text(), "batch": config.batch},
                {"speedup": chosen["speed"]["speedup"], "speedup_interval": chosen["speed"]["interval"],
                 "confirmed_on": chosen["num"], "label": label_of(candidate)})  # fmt: skip
    if subject.is_pipeline:
        pipe = with_denoiser(subject.obj, model)
        use_scheduler(pipe, name, own.get("spacing"))
        return Subject(pipe).save(folder)
    return Subject(model).save(folder)


def frontier_rows(result: dict) -> list[dict]:
    """One row per measured candidate: its last rung's figures, why it stopped there, and its Pareto flag."""
    by_key: dict[str, dict] = {}
    for row in result["rows"]:
        if row["rung"] in RUNGS:
            by_key.setdefault(row["key"], {})[row["rung"]] = row
        elif row["rung"] == "speed":
            by_key.setdefault(row["key"], {})["speed"] = row
    batch = result["original_seconds_per_batch"]
    rows = []
    for key, rungs in by_key.items():
        if not any(r in rungs for r in RUNGS):
            continue
        last = next(rungs[r] for r in reversed(RUNGS) if r in rungs)
        candidate = json.loads(key)
        timed = rungs.get("speed")
        speed = (timed["speedup"], *timed["interval"]) if timed else (batch / last["seconds_per_batch"], None, None)
        rows.append({
            "key": key, "label": label_of(candidate), "levers": candidate, "rung": last["rung"], "num": last["num"],
            "speedup": speed[0], "speedup_interval": [speed[1], speed[2]] if timed else None,
            "speed_measured": "alternating with the original" if timed else "screen estimate (not alternated)",
            "metrics": last["metrics"], "intervals": last["intervals"], "differences": last["differences"],
            "detectable": last["detectable"], "holds": last["holds"], "why": last["why"] or result["notes"].get(key),
            "seconds": sum(r.get("elapsed", 0.0) for r in rungs.values()),
        })  # fmt: skip
    chosen = result["chosen"]
    for row in rows:
        row["chosen"] = chosen is not None and row["key"] == key_of(chosen["candidate"])
        row["pareto"] = row["holds"] and not any(
            o["holds"] and o["speedup"] > row["speedup"] and fd(o) <= fd(row) for o in rows)  # fmt: skip
    return sorted(rows, key=lambda r: -r["speedup"])


def fd(row: dict) -> float:
    return row["differences"].get("fd", {}).get("difference", float("inf"))


def hurts(rows: list[dict]) -> list[str]:
    """Per lever, what switching it on did to otherwise identical screened candidates (slower, or the rule broken)."""
    screened = {r["key"]: r for r in rows}
    lines = []
    for name in LEVERS:
        pairs = []
        for row in rows:
            if name in row["levers"]:
                without = {n: k for n, k in row["levers"].items() if n != name}
                other = screened.get(key_of(without))
                if other is not None:
                    pairs.append((other, row))
        if not pairs:
            continue
        slower = sum(a["speedup"] > b["speedup"] for a, b in pairs)
        # a verdict is compared only with one on the same samples (a screen tie and a confirmation's worse are not)
        broke = sum(a["holds"] and not b["holds"] and (a["rung"], a["num"]) == (b["rung"], b["num"]) for a, b in pairs)
        lines.append(f"{name}: on {len(pairs)} otherwise identical candidates, slower in {slower}, "
                     f"broke the quality rule in {broke}")  # fmt: skip
    return lines


def answer(result: dict) -> str:
    chosen = result["chosen"]
    if chosen is None:
        return "no candidate held the quality rule on fresh noise within the budget: keep the original"
    speed, verdicts = chosen["speed"], chosen["differences"]
    kept = " / ".join(f"{m.upper()} {verdicts[m]['verdict']}" for m in ("fd", "kd", "accuracy") if m in verdicts)
    return (f"{speed['speedup']:.2f}x faster [{speed['interval'][0]:.2f}, {speed['interval'][1]:.2f}] than the "
            f"original at batch {result['config']['batch']}, quality {kept} on {chosen['num']} fresh samples; "
            f"levers: {label_of(chosen['candidate'])}")  # fmt: skip


def markdown(result: dict, rows: list[dict]) -> str:
    config = result["config"]
    lines = [
        "# Optimize: the frontier", "", f"**Answer:** {answer(result)}.", "",
        f"Quality rule: {config['quality']['kind']}"
        + (f" {config['quality']['value']:g}" if config["quality"]["value"] is not None else "")
        + f"; FD / KD in digits-features space (not FID) against {config['ref']}; paired on identical noise."
        f" Rungs: screen {config['screen_num']}, mid {config['mid_num']} (seed {config['seed']}), confirm"
        f" {config['confirm_num']} fresh (seed {config['seed'] + 1}). Search time {result['seconds']:.0f} s of"
        f" {config['budget']:.0f} s.", "",
        "| candidate | rung | n | speedup | FD diff [95%] | KD diff [95%] | SSIM | holds | detectable FD | note |",
        "|---|---|---:|---|---|---|---:|---|---:|---|",
    ]  # fmt: skip
    for r in rows:
        span = r["speedup_interval"]
        speed = f"{r['speedup']:.2f}x" + (f" [{span[0]:.2f}, {span[1]:.2f}]" if span else " (screen)")
        name = (
            ("**" + r["label"] + "** (chosen)") if r["chosen"] else r["label"] + (" (frontier)" if r["pareto"] else "")
        )
        lines.append(f"| {name} | {r['rung']} | {r['num']} | {speed} | {diff(r, 'fd')} | {diff(r, 'kd')} | "
                     f"{r['metrics'].get('ssim', float('nan')):.3f} | {'yes' if r['holds'] else 'no'} | "
                     f"{r['detectable'].get('fd', float('nan')):.3f} | {r['why'] or ''} |")  # fmt: skip
    lines += ["", "## What each lever did in composition", "", *[f"- {line}" for line in hurts(rows)]]
    if result["refused"]:
        lines += ["", "## Settings the levers cannot run here", "",
                  *[f"- {why} (e.g. {example})" for why, example in result["refused"].items()]]  # fmt: skip
    skipped = [f"- {json_label(k)}: {why}" for k, why in result["notes"].items() if k not in {r["key"] for r in rows}]
    if skipped:
        lines += ["", f"## Not measured ({len(skipped)})", "", *skipped[:60]]
        if len(skipped) > 60:
            lines.append(f"- ... and {len(skipped) - 60} more (frontier.json lists them)")
    return "\n".join(lines) + "\n"


def json_label(key: str) -> str:
    return label_of(json.loads(key))


def diff(row: dict, metric: str) -> str:
    d = row["differences"].get(metric)
    if d is None:
        return ""
    scale = 1000 if metric in ("kd", "kid") else 1
    low, high = (v * scale for v in d["interval"])
    return f"{d['difference'] * scale:+.3f} [{low:+.3f}, {high:+.3f}] {d['verdict']}" + (
        " (x1000)" if scale > 1 else ""
    )


def write_outputs(result: dict, folder: Path) -> None:
    """frontier.json, frontier.md, frontier.png and report.html (each written whole, then moved into place)."""
    rows = frontier_rows(result)
    data = {k: v for k, v in result.items() if k != "rows"} | {"frontier": rows}
    write(folder / "frontier.json", json.dumps(data, indent=2, default=str))
    write(folder / "frontier.md", markdown(result, rows))
    picture = frontier_plot(rows, folder / "frontier.png")
    image = base64.b64encode(picture.read_bytes()).decode()
    body = MarkdownIt("commonmark").enable("table").render(markdown(result, rows).split("\n", 3)[3])
    write(folder / "report.html", "<!doctype html><meta charset=utf-8><title>slimfusion optimize</title>"
          f"<style>{STYLE}</style><h1>{html.escape(answer(result))}</h1>"
          f"<img alt='speedup against FD difference' src='data:image/png;base64,{image}'>{body}")  # fmt: skip


STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:1400px}img{max-width:100%}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
)


def write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
