"""Family knowledge lives in slimfusion/models/families/ only: no other module names a UNet's, DiT's or pipeline's
attributes (issue 21). Config classes may spell the component names users type; those must equal the family table's."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from slimfusion.models.families.pipeline import COMPONENTS
from slimfusion.sparsify.config import SparsityConfig
from slimfusion.sweep.points import SweepConfig

SRC = Path(__file__).resolve().parent.parent / "src" / "slimfusion"
ATTRIBUTES = {"down_blocks", "up_blocks", "mid_block", "transformer_blocks", "resnets", "attentions", "downsamplers"}
ATTRIBUTES |= {"upsamplers", "unet", "transformer", "text_encoder", "tokenizer"}
NAMES = re.compile(
    r"^(unet|transformer|text_encoder|tokenizer)$|^(down_blocks|up_blocks|mid_block|transformer_blocks)\b"
)
CONSTRUCTS_PIPELINES = "train/builtins/"  # making the built-ins calls diffusers' pipeline constructors by keyword


def _offences(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text())
    in_config_class = set()  # pydantic configs spell the user's vocabulary (checked against the table below)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            in_config_class |= {
                id(n) for stmt in node.body if not isinstance(stmt, ast.FunctionDef) for n in ast.walk(stmt)
            }
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node, clean=False)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ATTRIBUTES:
            found.append(f"{rel}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg in ATTRIBUTES and not rel.startswith(CONSTRUCTS_PIPELINES):
            found.append(f"{rel}:{node.lineno} {node.arg}=")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and NAMES.match(node.value)
            and id(node) not in docstrings
            and id(node) not in in_config_class
        ):
            found.append(f"{rel}:{node.lineno} {node.value!r}")
    return found


def test_no_module_outside_families_names_a_family_attribute():
    offences = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        if not path.relative_to(SRC).as_posix().startswith("models/families/")
        for hit in _offences(path, path.relative_to(SRC).as_posix())
    ]
    assert offences == []


def test_the_scan_finds_an_offence(tmp_path):
    """The scan itself can fail: a module reaching into a UNet's blocks or naming a component is reported."""
    bad = tmp_path / "probe.py"
    bad.write_text('def f(model):\n    return len(model.down_blocks), "unet"\n')
    assert sorted(_offences(bad, "probe.py")) == ["probe.py:2 'unet'", "probe.py:2 .down_blocks"]


def test_config_vocabulary_matches_the_family_table():
    sweep = typing.get_args(typing.get_args(SweepConfig.model_fields["components"].annotation)[0])
    assert set(sweep) == set(COMPONENTS)
    sparsify = typing.get_args(SparsityConfig.model_fields["component"].annotation)
    assert set(sparsify) == set(COMPONENTS) | {"denoiser", "all"}
