"""Verbs that look at models and their images: info, sample, stats, evaluate, compare, report, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slimfusion.cli.app import app
from slimfusion.cli.common import (
    ModelArg,
    OutOpt,
    conditions_from_options,
    given,
    is_main_process,
    make_config,
    print_rows,
    refuse_existing,
    timesteps_from_option,
)
from slimfusion.cli.derived import derived_command
from slimfusion.cli.tables import print_comparison, print_result
from slimfusion.compare import compare as run_compare
from slimfusion.data import load_images
from slimfusion.demo import run_demo
from slimfusion.diffusion import SOLVERS
from slimfusion.errors import SlimfusionError
from slimfusion.evaluate import EvaluateConfig
from slimfusion.evaluate import evaluate as run_evaluate
from slimfusion.info import model_info
from slimfusion.metrics.intervals import DEFAULT_RESAMPLES
from slimfusion.metrics.stats import compute_stats, save_stats
from slimfusion.optimize.output import answer
from slimfusion.pipelines import load_for_sampling
from slimfusion.progress import console
from slimfusion.report import load_results, write_report
from slimfusion.sample import DEFAULT_GUIDANCE, load_samples, sample_to_folder
from slimfusion.skip.plan import solver_of
from slimfusion.verbs.evaluation import EvaluateOptions
from slimfusion.verbs.sampling import SampleOptions


@app.command()
def info(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    component: Annotated[str | None, typer.Option(help="pipeline component (default: unet/transformer)")] = None,
) -> None:
    """Class, parameters, MACs (batch 1, the model's sample size), file size and compression history."""
    summary = model_info(model, component)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return

    table = Table(title=f"{summary['class']}  ({summary['source']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{summary['params']:,}")
    table.add_row("MACs (convs+linears+norms)", f"{summary['macs'] / 1e9:.3f} G")
    table.add_row("MACs (all matmuls)", f"{summary['macs_all'] / 1e9:.3f} G")
    table.add_row("input", summary["input"])
    size = summary["file_bytes"]
    stored = f" ({summary['storage']} storage)" if summary["storage"] != "dense" else ""
    table.add_row("file size", f"{size / 2**20:.2f} MiB{stored}" if size else "not saved (built in memory)")
    sparsity = summary["sparsity"]
    if sparsity:
        table.add_row(
            "sparsity",
            f"{sparsity['sparsity']:.1%} of the sparsified layers, {sparsity['sparsity_of_params']:.1%} of all weights",
        )
    table.add_row("history", " -> ".join(h["step"] for h in summary["history"]) or "none")
    for entry in summary["history"]:
        if entry["step"] == "recipe":
            steps = [f"{verb} {options}" for step in entry["config"]["steps"] for verb, options in step.items()]
            table.add_row("recipe", f"from {entry['config']['model']}: " + "; ".join(steps))
    quantized = [t for t in summary.get("transforms", []) if t["kind"] == "quantize"]
    if quantized:
        table.add_row(
            "quantized", quantized[0]["scheme"] + (" + torch.compile at load" if quantized[0]["compile"] else "")
        )
    plan = summary["skip_plan"]
    if plan:
        steps = f"{plan['steps']} {solver_of(plan['scheduler'])} steps"
        table.add_row("skip plan", f"{plan['method']}, {steps}, {plan['macs_ratio']:.1%} of the MACs kept")
    sampler = summary["sampler"]
    if sampler:
        spacing = f", {sampler['spacing']} spacing" if sampler.get("spacing") else ""
        table.add_row(
            "own sampler (distilled or optimized)", f"{sampler['scheduler']}, {sampler['steps']} steps{spacing}"
        )
    Console().print(table)


PromptsOpt = Annotated[Path | None, typer.Option(help="text-to-image: a file of prompts, one per line")]
LabelsOpt = Annotated[str | None, typer.Option(help="class-conditional (DiT): comma list of labels, e.g. 3,7")]
GuidanceOpt = Annotated[
    float | None,
    typer.Option(help=f"classifier-free guidance of conditional pipelines (1: off; default {DEFAULT_GUIDANCE})"),
]
# steps / scheduler / guidance left unset: a step-distilled model samples with its own sampler, others DDIM 50
PlanOpt = Annotated[Path | None, typer.Option(help="skip plan (from skip-plan) to sample with")]
NoPlanOpt = Annotated[bool, typer.Option(help="ignore a skip plan saved in the model folder")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help=f"solver: {' | '.join(SOLVERS)} (default: ddim, or a distilled model's own)")
]
StepsOpt = Annotated[int | None, typer.Option(help="denoising steps (default: 50, or a distilled model's own)")]
SpacingOpt = Annotated[str | None, typer.Option(help="timestep spacing: leading | trailing | linspace")]
KarrasOpt = Annotated[bool, typer.Option(help="Karras sigmas (dpm++, unipc, deis, euler, heun)")]
TimestepsOpt = Annotated[
    str | None,
    typer.Option(help="explicit descending timesteps, e.g. 999,599,299 (sets --steps; lcm, ddpm, dpm++, euler, heun)"),
]


def _sample(model: str, config: SampleOptions, out: Path, component: str | None, overwrite: bool) -> None:
    refuse_existing(out, overwrite)
    sampler = load_for_sampling(model, component)
    result = sample_to_folder(sampler, config, out, overwrite=overwrite)
    if is_main_process():
        console.print(
            f"{config.num} images in {result['seconds']:.1f}s ({result['images_per_s']:.2f} img/s,"
            f" {result['processes']} process(es)) -> {out}/grid.png"
        )


derived_command(
    "sample",
    SampleOptions,
    _sample,
    extra={
        "out": (OutOpt, ...),
        "component": (
            Annotated[str | None, typer.Option(help="pipeline component (default: unet/transformer)")],
            None,
        ),
        "overwrite": (Annotated[bool, typer.Option(help="replace --out if it exists")], False),
    },
    doc="Generate seeded images: one PNG each, grid.png and samples.npz in --out.\n\nConditional pipelines"
    " (text-to-image, DiT) are sampled through their own diffusers pipeline class; image i gets prompt / label i mod"
    " their count. Steps, solver, spacing and guidance left unset: a step-distilled or optimized model samples with"
    " its own sampler, others with DDIM 50. Multi-process: `accelerate launch -m slimfusion sample ...` splits the"
    " seeds across processes; the result is the same folder as a single-process run.",
)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="run folder (replaced if it exists)")] = Path("demo_out"),
    num: Annotated[
        int | None, typer.Option(help="DDPM: fresh confirmation samples (512); text-to-image: per model (256)")
    ] = None,
    finetune_steps: Annotated[
        int | None, typer.Option(help="fine-tuning steps per pruned model (default: 300 DDPM, 800 text-to-image)")
    ] = None,
    budget: Annotated[float, typer.Option(help="DDPM: the search's budget in seconds")] = 480,
    model: Annotated[str, typer.Option(help="builtin:digits-ddpm or builtin:digits-t2i")] = "builtin:digits-ddpm",
) -> None:
    """builtin:digits-ddpm: `optimize` within a budget (solvers, bf16, DeepCache, Diff-Pruning / magnitude pruning
    with recovery) and the answer first; builtin:digits-t2i: its UNet pruned, recovered data-free and evaluated."""
    if (num is not None and num < 8) or (finetune_steps is not None and finetune_steps < 1):
        raise SlimfusionError("--num must be >= 8 and --finetune-steps >= 1")
    result = run_demo(out, num=num, finetune_steps=finetune_steps, model=model, budget=budget)
    if "rows" in result and "chosen" not in result:
        print_rows(result)
    else:
        console.print(f"[bold]{answer(result)}[/bold]", highlight=False, soft_wrap=True)
    console.print(f"report: {result['report_html']}; took {result['wall_s'] / 60:.1f} min", soft_wrap=True)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="run folder holding results.json (e.g. from demo)")]) -> None:
    """Write report.md and a self-contained report.html (table, sample grids, quality-vs-MACs plot)."""
    md, page = write_report(run_dir)
    print_rows(load_results(run_dir))
    console.print(f"wrote {md} and {page}")


@app.command()
def stats(
    data: Annotated[str, typer.Argument(help="digits, digits:test, digits:all, an image folder or a samples folder")],
    out: Annotated[Path, typer.Option("--out", help="statistics file (.npz) to write")],
    space: Annotated[str, typer.Option(help="digits-features (offline FD) or inception-v3 (FID)")] = (
        "digits-features"
    ),
    inception_weights: Annotated[str | None, typer.Option(help="InceptionV3 weights (.safetensors) for FID")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Precompute reference statistics (mean, covariance of features) for `evaluate --ref`."""
    if out.suffix != ".npz":
        raise SlimfusionError(f"--out {out}: statistics are written as .npz")
    refuse_existing(out, overwrite)
    is_samples = (Path(data) / "samples.npz").exists()
    images = load_samples(data)[0] if is_samples else load_images(data, size=16, channels=1)
    save_stats(compute_stats(images, space, inception_weights), out)
    console.print(f"{space} statistics of {len(images)} images -> {out}")


RefOpt = Annotated[str | None, typer.Option(help="reference data or statistics .npz, for fd / kd / fid / kid")]
OriginalOpt = Annotated[str | None, typer.Option(help="uncompressed model or its samples, for ssim / psnr")]
MetricsOpt = Annotated[
    str | None,
    typer.Option(help="comma list of fd,kd,fid,kid,accuracy,clip,ssim,psnr,cost (default: all possible)"),
]
ClipOpt = Annotated[str | None, typer.Option(help="local CLIP model folder (safetensors) for the CLIP score")]
NumOpt = Annotated[int, typer.Option(help="images to sample from a model")]
SeedOpt = Annotated[int, typer.Option(help="sampling seed (every model uses the same noise)")]
BatchOpt = Annotated[int, typer.Option(help="images per forward when sampling")]
InceptionOpt = Annotated[str | None, typer.Option(help="InceptionV3 weights (.safetensors) for FID / KID")]
ResamplesOpt = Annotated[int, typer.Option(help="bootstrap resamples behind each 95% interval")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="also write the result as JSON here")]


def _evaluate_config(
    metrics: str | None, prompts, class_labels, steps, scheduler, spacing, guidance, timesteps, **fields
):
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    return make_config(
        EvaluateConfig,
        metrics=names,
        **fields,
        **given(steps=steps, scheduler=scheduler, spacing=spacing, guidance=guidance),
        **conditions_from_options(prompts, class_labels),
        **timesteps_from_option(timesteps),
    )


def _write_json(result: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))


def _evaluate(target: str, options: EvaluateOptions, as_json: Path | None) -> None:
    result = run_evaluate(target, options.technique(), ref=options.ref, original=options.original)
    print_result(result)
    _write_json(result, as_json)


derived_command(
    "evaluate",
    EvaluateOptions,
    _evaluate,
    extra={"as_json": (JsonOpt, None)},
    doc="Quality (FD / KD / FID / KID vs --ref, prompt / class accuracy, CLIP score), consistency (SSIM / PSNR vs"
    " --original from identical noise and identical prompts / labels) and cost, each quality metric with its 95%"
    " interval. Conditional pipelines are sampled with --prompts / --class-labels through their own diffusers"
    " pipeline.",
    argument=Annotated[str, typer.Argument(help="model (folder, builtin:NAME) or samples folder")],
)


@app.command()
def compare(
    subjects: Annotated[
        list[str], typer.Argument(help="models or samples folders; the first is the baseline the rest are compared to")
    ],
    ref: RefOpt = None,
    original: OriginalOpt = None,
    metrics: MetricsOpt = None,
    prompts: PromptsOpt = None,
    class_labels: LabelsOpt = None,
    guidance: GuidanceOpt = None,
    clip_model: ClipOpt = None,
    num: NumOpt = 1000,
    steps: StepsOpt = None,
    scheduler: SchedulerOpt = None,
    spacing: SpacingOpt = None,
    karras: KarrasOpt = False,
    timesteps: TimestepsOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 250,
    inception_weights: InceptionOpt = None,
    no_plan: NoPlanOpt = False,
    resamples: ResamplesOpt = DEFAULT_RESAMPLES,
    as_json: JsonOpt = None,
) -> None:
    """Side by side on identical noise and prompts / labels: each metric's difference to the first subject with its
    95% interval and a verdict (better, worse, or tie when the interval covers zero)."""
    config = _evaluate_config(
        metrics, prompts, class_labels, steps, scheduler, spacing, guidance, timesteps,
        num=num, seed=seed, batch_size=batch_size, inception_weights=inception_weights, clip_model=clip_model,
        no_plan=no_plan, karras=karras, resamples=resamples,
    )  # fmt: skip
    result = run_compare(subjects, config, ref=ref, original=original)
    print_comparison(result)
    _write_json(result, as_json)
