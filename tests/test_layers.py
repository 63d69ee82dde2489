"""The layers of docs/architecture.md: every import points down (or sideways), never back up."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "slimfusion"
# bottom to top, as docs/architecture.md draws them
LAYERS = [
    {"errors", "progress", "version", "images", "grids", "plots", "hooks", "data", "metrics", "models"},
    {"diffusion", "pipelines", "pipeline_sample", "sample", "skip"},  # the runtime: sampling applies skip plans
    {"prune", "sparsify", "train", "lowrank", "quantize", "export"},  # the techniques
    {"evaluate", "quality", "compare", "report", "sweep", "info"},  # measuring
    {"registry", "subject"},
    {"optimize"},
    {"verbs"},
    {"recipe", "demo"},
    {"cli", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imported(tree: ast.AST) -> set[str]:
    """Every project module an import runs, the packages above it included (importing a.b.c runs a/b/__init__)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = [node.module]
        elif isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        else:
            continue
        for name in found:
            parts = name.split(".")
            if parts[0] == "slimfusion":
                names |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
    return names


def test_no_import_points_back_up_a_layer():
    back_up = []
    for file in sorted(ROOT.rglob("*.py")):
        parts = file.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "slimfusion":  # the package root is the public API: it imports everything
            continue
        mine = layer_of(module)
        for target in imported(ast.parse(file.read_text())):
            if layer_of(target) > mine:
                back_up.append(f"{module} -> {target}")
    assert not back_up, back_up


def test_every_module_has_a_layer():
    tops = {
        p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert tops - {"__init__"} <= set().union(*LAYERS)
