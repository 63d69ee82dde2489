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
from slimfusion.cli.common import ModelArg, make_config, refuse_existing
from slimfusion.progress import console
from slimfusion.registry import STEPS
from slimfusion.subject import Subject

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
                    skip: tuple[str, ...] = ("version",), argument: Any = ModelArg) -> Callable:  # fmt: skip
    """Register `slimfusion NAME MODEL [--field ...]` whose options are `options`' fields (plus `extra`:
    name -> (annotation, default)); `run(model, config, **extra_values)` does the work. `argument`: the positional's
    annotation (default: a model)."""
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=argument),
    ]
    for key, (annotation, default) in extra.items():
        parameters.append(
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    fields = {k: f for k, f in options.model_fields.items() if k not in skip}
    for key, field in fields.items():
        kind, default = option_type(field)
        help_text = field_help(options, key)
        shown = field.get_default(call_default_factory=True)
        if default is None and shown not in (None, [], {}):
            help_text += f" (default: {shown_text(shown)})"
        # a "no_x" switch is one flag (--no-x), not --no-x / --no-no-x
        names = (f"--{key.replace('_', '-')}",) if kind is bool and key.startswith("no_") else ()
        annotation = Annotated[kind, typer.Option(*names, help=help_text)]
        parameters.append(
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )

    def command(ctx: typer.Context, model: str, **values) -> None:
        # only what the user typed: the options class applies its own defaults, and a field left unset stays unset
        # (a step-distilled model's own sampler fills those)
        given = {k: v for k, v in values.items() if k in fields and ctx.get_parameter_source(k).name != "DEFAULT"}
        run(model, make_config(options, **given), **{k: values[k] for k in extra})

    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_") + "_command"
    app.command(name)(command)
    return command


def field_help(options: type[BaseModel], name: str) -> str:
    """A field's help: its `description`, else its entry in the Args of the class docstring (or a base class's),
    where the technique configs document their fields once."""
    field = options.model_fields[name]
    if field.description:
        return field.description
    for cls in options.__mro__:
        lines = (inspect.getdoc(cls) or "").splitlines() if cls.__dict__.get("__doc__") else []
        for index, line in enumerate(lines):
            head = line.strip()
            if not head.startswith(f"{name} (") or "):" not in head:
                continue
            indent, text = len(line) - len(line.lstrip()), [head.split("):", 1)[1].strip()]
            for more in lines[index + 1 :]:
                if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                    break
                text.append(more.strip())
            return " ".join(text)
    return ""


def shown_text(value) -> str:
    if isinstance(value, BaseModel):
        return value.text() if hasattr(value, "text") else str(value.model_dump())
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


SAVED = {
    "out": (Annotated[Path, typer.Option(help="output folder")], ...),
    "overwrite": (Annotated[bool, typer.Option(help="replace --out if it exists")], False),
}


def derive_registered() -> list[str]:
    """A command for every registered step that makes a model and has none yet (a technique registered in its own
    module reaches the CLI with nothing else written): load, run the step, save as the recipe does. Returns the
    names added."""
    have = {info.name or info.callback.__name__.replace("_", "-") for info in app.registered_commands}
    added = []
    for name, step in STEPS.items():
        if name in have or not step.makes_model:
            continue

        def run(model: str, options, out: Path, overwrite: bool, step=step) -> None:
            refuse_existing(out, overwrite)
            subject = step.run(Subject.load(model), options) or Subject.load(model)
            console.print(f"{step.name}: saved {subject.save(out, overwrite=overwrite)}", highlight=False)

        doc = (step.run.__doc__ or step.options.__doc__ or name).strip()
        derived_command(name, step.options, run, SAVED, doc=doc)
        added.append(name)
    return added
