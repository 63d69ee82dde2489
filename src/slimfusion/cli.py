"""The `slimfusion` command: one thin sub-command per verb; parsing and printing only, the work is in the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from slimfusion.errors import SlimfusionError
from slimfusion.progress import console

app = typer.Typer(
    help="Make diffusion models smaller and faster, and prove what it cost in image quality.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Make diffusion models smaller and faster, and prove what it cost in image quality."""


ModelArg = Annotated[str, typer.Argument(help="model folder, pipeline folder, builtin:NAME or hub id")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder (created atomically)")]


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


@app.command()
def info(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    component: Annotated[str | None, typer.Option(help="pipeline component (default: unet/transformer)")] = None,
) -> None:
    """Class, parameters, MACs (batch 1, the model's sample size), file size and compression history."""
    import json

    from slimfusion.models.info import model_info

    summary = model_info(model, component)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{summary['class']}  ({summary['source']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{summary['params']:,}")
    table.add_row("MACs (convs+linears+norms)", f"{summary['macs'] / 1e9:.3f} G")
    table.add_row("MACs (all matmuls)", f"{summary['macs_all'] / 1e9:.3f} G")
    table.add_row("input", summary["input"])
    size = summary["file_bytes"]
    table.add_row("file size", f"{size / 2**20:.2f} MiB" if size else "not saved (built in memory)")
    table.add_row("history", " -> ".join(h["step"] for h in summary["history"]) or "none")
    Console().print(table)


@app.command()
def sample(
    model: ModelArg,
    out: OutOpt,
    num: Annotated[int, typer.Option(help="number of images")] = 64,
    steps: Annotated[int, typer.Option(help="denoising steps")] = 50,
    scheduler: Annotated[str, typer.Option(help="ddim (deterministic) or ddpm (ancestral)")] = "ddim",
    seed: Annotated[int, typer.Option(help="base seed; image i uses (seed, i)")] = 0,
    batch_size: Annotated[int, typer.Option(help="images per forward")] = 64,
    component: Annotated[str | None, typer.Option(help="pipeline component (default: unet/transformer)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Generate seeded images: one PNG each, grid.png and samples.npz in --out.

    Multi-process: `accelerate launch -m slimfusion sample ...` splits the seeds across processes; the result is
    the same folder as a single-process run.
    """
    from slimfusion.models.io import load
    from slimfusion.sample import SampleConfig, sample_to_folder

    config = _config(SampleConfig, num=num, steps=steps, scheduler=scheduler, seed=seed, batch_size=batch_size)
    result = sample_to_folder(load(model, component), config, out, overwrite=overwrite)
    if _is_main_process():
        console.print(
            f"{num} images in {result['seconds']:.1f}s ({result['images_per_s']:.2f} img/s,"
            f" {result['processes']} process(es)) -> {out}/grid.png"
        )


def _is_main_process() -> bool:
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="run folder (replaced if it exists)")] = Path("demo_out"),
    num: Annotated[int, typer.Option(help="images sampled per model")] = 256,
    finetune_steps: Annotated[int, typer.Option(help="fine-tuning steps per pruned model")] = 300,
) -> None:
    """Prune builtin:digits-ddpm to ~half its MACs (diff-pruning, magnitude), fine-tune, evaluate, report."""
    from slimfusion.demo import run_demo

    if num < 2 or finetune_steps < 1:
        raise SlimfusionError("--num must be >= 2 and --finetune-steps >= 1")
    result = run_demo(out, num=num, finetune_steps=finetune_steps)
    _print_rows(result)
    console.print(f"report: {result['report_html']} (and report.md); took {result['wall_s'] / 60:.1f} min")


def _print_rows(results: dict) -> None:
    from rich.table import Table

    from slimfusion.report import COLUMNS, cell

    rows = results["rows"]
    original = next((r for r in rows if r.get("original")), None)
    columns = [c for c in COLUMNS if any(r["metrics"].get(c[0]) is not None for r in rows)]
    table = Table(title=results["title"])
    table.add_column("model")
    for _, header, _ in columns:
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(r["name"], *(cell(r, key, fmt, original) for key, _, fmt in columns))
    wide = Console()
    Console(width=None if wide.is_terminal else 160).print(table)
    console.print(results["quality_metric"], highlight=False, soft_wrap=True)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="run folder holding results.json (e.g. from demo)")]) -> None:
    """Write report.md and a self-contained report.html (table, sample grids, quality-vs-MACs plot)."""
    from slimfusion.report import load_results, write_report

    md, page = write_report(run_dir)
    _print_rows(load_results(run_dir))
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
    from slimfusion.data import load_images
    from slimfusion.metrics.stats import compute_stats, save_stats
    from slimfusion.sample import load_samples

    if out.suffix != ".npz":
        raise SlimfusionError(f"--out {out}: statistics are written as .npz")
    _refuse_existing(out, overwrite)
    is_samples = (Path(data) / "samples.npz").exists()
    images = load_samples(data)[0] if is_samples else load_images(data, size=16, channels=1)
    save_stats(compute_stats(images, space, inception_weights), out)
    console.print(f"{space} statistics of {len(images)} images -> {out}")


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(help="model (folder, builtin:NAME) or samples folder")],
    ref: Annotated[str | None, typer.Option(help="reference data or statistics .npz, for fd / fid")] = None,
    original: Annotated[str | None, typer.Option(help="uncompressed model or its samples, for ssim / psnr")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma list of fd,fid,ssim,psnr,cost (default: all possible)")] = (
        None
    ),
    num: Annotated[int, typer.Option(help="images to sample from a model")] = 1000,
    steps: Annotated[int, typer.Option(help="DDIM steps when sampling a model")] = 50,
    seed: Annotated[int, typer.Option(help="sampling seed (the original uses the same)")] = 0,
    batch_size: Annotated[int, typer.Option(help="images per forward when sampling")] = 250,
    inception_weights: Annotated[str | None, typer.Option(help="InceptionV3 weights (.safetensors) for FID")] = None,
    as_json: Annotated[Path | None, typer.Option("--json", help="also write the result as JSON here")] = None,
) -> None:
    """Quality (FD / FID vs --ref), consistency (SSIM / PSNR vs --original, identical noise) and cost."""
    import json

    from slimfusion.evaluate import EvaluateConfig, print_result
    from slimfusion.evaluate import evaluate as run_evaluate

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    config = _config(
        EvaluateConfig,
        metrics=names,
        num=num,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        inception_weights=inception_weights,
    )
    result = run_evaluate(target, config, ref=ref, original=original)
    print_result(result)
    if as_json is not None:
        as_json.parent.mkdir(parents=True, exist_ok=True)
        as_json.write_text(json.dumps(result, indent=2))


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """Fail before any work when --out exists (saves are atomic, but an hour of pruning should not be lost)."""
    if out.exists() and not overwrite:
        raise SlimfusionError(f"{out} already exists; pass --overwrite to replace it")


def _first_error(exc) -> str:
    """One line from a pydantic ValidationError: the field and what is wrong with it."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "value"
    return f"--{field.replace('_', '-')}: {err['msg']} (got {err.get('input')!r})"


@app.command("prune")
def prune_command(
    model: ModelArg,
    out: OutOpt,
    method: Annotated[str, typer.Option(help="random | magnitude | taylor | diff-pruning | reinit")] = "diff-pruning",
    ratio: Annotated[float, typer.Option(help="fraction of channels removed per layer group, in (0, 1)")] = 0.3,
    data: Annotated[
        str | None, typer.Option(help="calibration images: digits or a folder (taylor, diff-pruning)")
    ] = None,
    threshold: Annotated[float, typer.Option(help="diff-pruning T: stop when loss < T x max loss")] = 0.05,
    calib_batches: Annotated[int, typer.Option(help="calibration batches per timestep")] = 1,
    batch_size: Annotated[int, typer.Option(help="images per calibration batch")] = 64,
    round_to: Annotated[int | None, typer.Option(help="keep widths multiples of K")] = None,
    compat: Annotated[str, typer.Option(help="torch-pruning (TP 1.6 rounding) or paper (Diff-Pruning's TP 1.3)")] = (
        "torch-pruning"
    ),
    seed: Annotated[int, typer.Option(help="seed for random importance and calibration")] = 0,
    prompts: Annotated[
        Path | None, typer.Option(help="text-to-image: calibrate on the model's own samples of these prompts")
    ] = None,
    class_labels: Annotated[
        str | None, typer.Option(help="class-conditional (DiT): calibrate on the model's own samples, e.g. 1,207")
    ] = None,
    calib_sample_steps: Annotated[int, typer.Option(help="DDIM steps of those calibration samples")] = 25,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Structural pruning (Diff-Pruning and baselines); prints the widths and the params / MACs reduction.

    MODEL may be a pipeline folder: its unet / transformer is pruned and saved as a model folder.
    """
    from pydantic import ValidationError

    from slimfusion.data import load_images
    from slimfusion.errors import ConfigError
    from slimfusion.models.families import example_inputs
    from slimfusion.models.io import load, save
    from slimfusion.models.meta import history
    from slimfusion.prune import StructuralConfig, prune

    _refuse_existing(out, overwrite)
    try:
        config = StructuralConfig(
            method=method,
            ratio=ratio,
            threshold=threshold,
            calib_batches=calib_batches,
            batch_size=batch_size,
            round_to=round_to,
            compat=compat,
            seed=seed,
            calib_sample_steps=calib_sample_steps,
        )
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from exc
    if prompts is not None and class_labels is not None:
        raise ConfigError("give --prompts (text-to-image) or --class-labels (class-conditional), not both")
    denoiser = load(model)
    conditions = _calibration_conditions(model, denoiser, prompts, class_labels)
    images = None
    if data is not None:
        images = load_images(data, size=denoiser.config.sample_size, channels=denoiser.config.in_channels)
        expected = tuple(example_inputs(denoiser, 1).values())[0].shape[1:]
        if tuple(images.shape[1:]) != tuple(expected):
            raise ConfigError(
                f"--data gives samples of shape {tuple(images.shape[1:])}; the model takes {tuple(expected)}"
            )
    if images is not None and conditions is not None:
        raise ConfigError("--data and --prompts / --class-labels exclude each other (conditions come with samples)")
    prune(denoiser, config, data=images, conditions=conditions)
    save(denoiser, out, overwrite=overwrite)
    _print_prune_effect(history(denoiser)[-1]["effect"], out)


def _calibration_conditions(source: str, denoiser, prompts: Path | None, class_labels: str | None):
    """Per-image conditioning from --prompts (encoded by the pipeline's text encoder) or --class-labels."""
    from slimfusion.errors import ConfigError
    from slimfusion.models.families import family_name
    from slimfusion.prune.conditioning import encode_prompts, parse_class_labels, read_prompts

    kind = family_name(denoiser)
    if prompts is not None:
        if kind != "UNet2DConditionModel":
            raise ConfigError(f"--prompts is for text-to-image UNets, not {kind}")
        return encode_prompts(source, read_prompts(prompts))
    if class_labels is not None:
        if kind not in ("DiTTransformer2DModel", "Transformer2DModel"):
            raise ConfigError(f"--class-labels is for class-conditional DiTs, not {kind}")
        return parse_class_labels(class_labels, denoiser.config.num_embeds_ada_norm)
    return None


MAX_WIDTH_ROWS = 40


def _print_prune_effect(effect: dict, out: Path) -> None:
    from rich.table import Table

    changed = effect["widths"]
    widths = Table(title=f"pruned widths ({len(changed)} layers changed)")
    widths.add_column("layer")
    widths.add_column("before", justify="right")
    widths.add_column("after", justify="right")
    shown = list(changed.items()) if len(changed) <= MAX_WIDTH_ROWS else list(changed.items())[:MAX_WIDTH_ROWS]
    for name, (before, after) in shown:
        widths.add_row(name, str(before), str(after))
    if len(shown) < len(changed):
        widths.add_row(f"... {len(changed) - len(shown)} more in {out}/slimfusion.json", "", "")
    summary = Table(title="effect")
    summary.add_column("")
    for column in ("before", "after", "ratio"):
        summary.add_column(column, justify="right")
    for label, key, scale, unit in (("params", "params", 1e6, "M"), ("MACs", "macs", 1e9, "G")):
        before, after = effect[f"{key}_before"], effect[f"{key}_after"]
        summary.add_row(label, f"{before / scale:.3f} {unit}", f"{after / scale:.3f} {unit}", f"{after / before:.3f}")
    out_console = Console()
    out_console.print(widths)
    out_console.print(summary)
    if effect.get("timesteps_used") is not None:
        out_console.print(f"gradients accumulated over {effect['timesteps_used']} timesteps")
    out_console.print(f"saved {out} ({effect['wall_s']:.1f}s)")


@app.command()
def train(
    out: OutOpt,
    data: Annotated[str, typer.Option(help="digits, digits:all or an image folder")] = "digits",
    arch: Annotated[str, typer.Option(help="architecture to initialise (see slimfusion.models.zoo.ARCHITECTURES)")] = (
        "digits-ddpm"
    ),
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 8000,
    batch_size: Annotated[int, typer.Option(help="images per step (per process)")] = 64,
    lr: Annotated[float, typer.Option(help="peak AdamW learning rate")] = 5e-4,
    seed: Annotated[int, typer.Option(help="seed for init, batches and noise")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="checkpoint (EMA model + training state) every N steps")] = 0,
    resume: Annotated[bool, typer.Option(help="continue exactly from the checkpoint in --out")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Train a diffusion model from scratch with the DDPM loss (how builtin:digits-ddpm was made)."""
    import torch

    from slimfusion.data import load_images
    from slimfusion.models.zoo import build_architecture
    from slimfusion.train import TrainConfig, train_diffusion

    config = _config(TrainConfig, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    _check_run_folder(out, resume, overwrite)
    torch.manual_seed(seed)
    model = build_architecture(arch)
    images = load_images(data, size=model.config.sample_size, channels=model.config.in_channels)
    train_diffusion(model, images, config, out=out, checkpoint_every=checkpoint_every, resume=resume)
    _save_final(model, out)


@app.command()
def finetune(
    model: ModelArg,
    out: OutOpt,
    data: Annotated[str, typer.Option(help="digits, digits:all or an image folder")] = "digits",
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 1000,
    teacher: Annotated[str | None, typer.Option(help="original model to distil from")] = None,
    distill: Annotated[float, typer.Option(help="output distillation weight W in [0, 1]")] = 0.0,
    feature_distill: Annotated[float, typer.Option(help="weight of block-output distillation")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="images per step (per process)")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW learning rate after warm-up")] = 2e-4,
    warmup_steps: Annotated[int, typer.Option(help="linear warm-up steps")] = 50,
    ema_decay: Annotated[float, typer.Option(help="EMA decay (the EMA weights are saved)")] = 0.999,
    grad_clip: Annotated[float, typer.Option(help="max gradient norm")] = 1.0,
    mixed_precision: Annotated[str, typer.Option(help="no | bf16 | fp16 (GPU)")] = "no",
    seed: Annotated[int, typer.Option(help="seed for batches and noise")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="checkpoint (EMA model + training state) every N steps")] = 0,
    resume: Annotated[bool, typer.Option(help="continue exactly from the checkpoint in --out")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Recover a compressed model: DDPM loss, optional distillation from --teacher, EMA weights saved.

    Multi-process / multi-GPU: `accelerate launch -m slimfusion finetune ...`.
    """
    from slimfusion.data import load_images
    from slimfusion.models.families import check_trainable
    from slimfusion.models.io import load
    from slimfusion.train import FinetuneConfig
    from slimfusion.train import finetune as run_finetune

    config = _config(
        FinetuneConfig,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        ema_decay=ema_decay,
        grad_clip=grad_clip,
        mixed_precision=mixed_precision,
        seed=seed,
        distill=distill,
        feature_distill=feature_distill,
    )
    if (distill or feature_distill) and teacher is None:
        raise SlimfusionError("--distill / --feature-distill need --teacher (the original model)")
    _check_run_folder(out, resume, overwrite)
    student = load(model)
    check_trainable(student)
    original = load(teacher) if teacher is not None else None
    if original is not None and original.config.sample_size != student.config.sample_size:
        raise SlimfusionError("--teacher works on another image size than the model")
    images = load_images(data, size=student.config.sample_size, channels=student.config.in_channels)
    run_finetune(student, images, config, teacher=original, out=out, checkpoint_every=checkpoint_every, resume=resume)
    _save_final(student, out)


def _config(cls, **values):
    """Build a pydantic config, turning a validation error into one CLI line."""
    from pydantic import ValidationError

    from slimfusion.errors import ConfigError

    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from exc


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not out.exists():
            raise SlimfusionError(f"--resume: {out} does not exist (no checkpoint to continue from)")
        return
    _refuse_existing(out, overwrite)


def _save_final(model, out: Path) -> None:
    """Save the finished EMA model over the run folder (the training state of checkpoints is dropped)."""
    from slimfusion.models.io import save

    if _is_main_process():
        save(model, out, overwrite=True)
        console.print(f"saved {out}")


@app.command("train-features")
def train_features(
    out: OutOpt,
    epochs: Annotated[int, typer.Option(help="passes over the digits train split")] = 40,
    seed: Annotated[int, typer.Option(help="seed for init, order and augmentation")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Train the digit classifier that gives the offline FD feature space (how builtin:digits-features was made)."""
    from slimfusion.data import load_digits_split
    from slimfusion.models.io import save
    from slimfusion.models.meta import history
    from slimfusion.train.classifier import ClassifierConfig, train_classifier

    _refuse_existing(out, overwrite)
    config = ClassifierConfig(epochs=epochs, seed=seed)
    model = train_classifier(*load_digits_split("train"), config, test=load_digits_split("test"))
    effect = history(model)[-1]["effect"]
    save(model, out, overwrite=True)
    console.print(f"test accuracy {effect['test_accuracy']:.4f} (train {effect['train_accuracy']:.4f}); saved {out}")


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""
    _quiet_libraries()
    try:
        app()  # typer reports usage errors itself (exit 2)
    except (SlimfusionError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
