"""The typer app that every verb module registers its command on."""

import typer

app = typer.Typer(
    help="Make diffusion models smaller and faster, and prove what it cost in image quality.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Make diffusion models smaller and faster, and prove what it cost in image quality."""
