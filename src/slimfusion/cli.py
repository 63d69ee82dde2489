"""The `slimfusion` command: one thin sub-command per verb; parsing and printing only, the work is in the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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


@app.command()
def train(
    out: OutOpt,
    data: Annotated[str, typer.Option(help="digits, digits:all or an image folder")] = "digits",
    arch: Annotated[str, typer.Option(help="architecture to initialise (see slimfusion.models.zoo.ARCHITECTURES)")] = (
        "digits-ddpm"
    ),
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 8000,
    batch_size: Annotated[int, typer.Option(help="images per step")] = 64,
    lr: Annotated[float, typer.Option(help="peak AdamW learning rate")] = 5e-4,
    seed: Annotated[int, typer.Option(help="seed for init, batches and noise")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="save the EMA model every N steps (0: only at the end)")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
) -> None:
    """Train a diffusion model from scratch with the DDPM loss (how builtin:digits-ddpm was made)."""
    import torch

    from slimfusion.data import load_images
    from slimfusion.models.io import save
    from slimfusion.models.zoo import build_architecture
    from slimfusion.train import TrainConfig, train_diffusion

    if out.exists() and not overwrite:
        raise SlimfusionError(f"{out} already exists; pass --overwrite to replace it")
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    torch.manual_seed(seed)
    model = build_architecture(arch)
    images = load_images(data, size=model.config.sample_size, channels=model.config.in_channels)

    def checkpoint(snapshot, step: int) -> None:
        save(snapshot, out, overwrite=True)
        console.log(f"checkpoint at step {step} -> {out}")

    train_diffusion(model, images, config, on_checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    save(model, out, overwrite=True)
    console.print(f"saved {out}")


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 2, never a traceback."""
    _quiet_libraries()
    try:
        app()  # typer reports usage errors itself (exit 2)
    except (SlimfusionError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
