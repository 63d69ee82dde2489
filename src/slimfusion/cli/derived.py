"""Commands derived from a registered step's options: every option, its type, default and help come from the
pydantic fields (declared once, beside the technique); the command only parses and calls the library.

Hand-written because typer builds commands from function signatures only: this makes the signature from the
fields (`inspect.Signature`, which typer reads).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from slimfusion.cli.app import app
from slimfusion.cli.common import ModelArg, make_config

SIMPLE = (bool, int, float, str, Path)


def option_type(field: FieldInfo) -> tuple[type, Any]:
    """(the command-line type, the default shown) of one field: lists, mappings, literals and models are text
    parsed by the options' own validators; a field whose default is not simple shows none (its default applies)."""
    annotation = field.annotation
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = len(args) < len(typing.get_args(annotation)), args[0]
    if annotation not in SIMPLE:
        annotation = str
    default = field.get_default(call_default_factory=True)
    if optional or not isinstance(default, SIMPLE) or isinstance(default, Path):
        return annotation | None, None
    return annotation, default


def derived_command(name: str, options: type[BaseModel], run: Callable[..., None], extra: dict, doc: str,
                    skip: tuple[str, ...] = ("version",)) -> Callable:  # fmt: skip
    """Register `slimfusion NAME MODEL [--field ...]` whose options are `options`' fields (plus `extra`:
    name -> (annotation, default)); `run(model, config, **extra_values)` does the work."""
    parameters = [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ModelArg)]
    for key, (annotation, default) in extra.items():
        parameters.append(
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    fields = {k: f for k, f in options.model_fields.items() if k not in skip}
    for key, field in fields.items():
        kind, default = option_type(field)
        help_text = field.description or ""
        shown = field.get_default(call_default_factory=True)
        if default is None and shown not in (None, [], {}):
            help_text += f" (default: {shown_text(shown)})"
        annotation = Annotated[kind, typer.Option(help=help_text)]
        parameters.append(
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )

    def command(model: str, **values) -> None:
        given = {k: v for k, v in values.items() if k in fields and v is not None}
        run(model, make_config(options, **given), **{k: values[k] for k in extra})

    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_") + "_command"
    app.command(name)(command)
    return command


def shown_text(value) -> str:
    if isinstance(value, BaseModel):
        return value.text() if hasattr(value, "text") else str(value.model_dump())
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
