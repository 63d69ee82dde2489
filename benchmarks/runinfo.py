"""What every benchmark row records about the run that made it: the code's commit, and a cache keyed by it; the
verdict cell the tables share.

A cached row is reused only when its key (the full settings of the row plus the commit of the code under src/)
matches; a rerun with changed code or settings recomputes the row instead of mixing runs in one table.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """Short commit of HEAD, with "+dirty" when src/ has uncommitted changes."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def stamp() -> str:
    """For a table made in one invocation (nothing cached): "code <commit>", to append to its command line."""
    return f"code {commit()}"


def code_version() -> str:
    """A hash of src/ as committed (tree hash), plus the diff when dirty: equal iff the code is equal."""
    tree = subprocess.run(["git", "rev-parse", "HEAD:src"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--", "src"], capture_output=True, text=True, cwd=ROOT).stdout
    return tree[:12] + (f"+{hashlib.sha1(diff.encode()).hexdigest()[:8]}" if diff else "")


def verdict(row: dict, scale: float = 1.0) -> str:
    """A paired verdict as a table cell: "+0.016 [-0.014, +0.049] tie" (`scale`: e.g. 1000 for KD in thousandths)."""
    low, high = (scale * v for v in row["interval"])
    return f"{scale * row['difference']:+.3f} [{low:+.3f}, {high:+.3f}] {row['verdict']}"


class RowCache:
    """Finished rows in a JSON file, each under a key of its settings and the code version."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        rows = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.rows: dict[str, dict] = rows if isinstance(rows, dict) else {}  # an older, unkeyed list: recompute
        self.version = code_version()
        self.commit = commit()  # of the code this process imported: src/ edited while it runs does not change it

    def key(self, settings: dict) -> str:
        return json.dumps(settings | {"code": self.version}, sort_keys=True)

    def get(self, settings: dict) -> dict | None:
        return self.rows.get(self.key(settings))

    def matching(self, **fixed) -> list[dict]:
        """Rows of this code version whose settings include `fixed` (in the order they were first cached): what a
        table of these settings may show, earlier invocations' rows included."""
        out = []
        for key, row in self.rows.items():
            settings = json.loads(key)
            if settings.get("code") == self.version and all(settings.get(k) == v for k, v in fixed.items()):
                out.append(row)
        return out

    def put(self, settings: dict, row: dict) -> dict:
        row = row | {"commit": self.commit}
        self.rows[self.key(settings)] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")  # a run killed mid-write keeps the old file
        partial.write_text(json.dumps(self.rows, indent=1))
        partial.replace(self.path)
        return row


def model_id(model) -> str:
    """Which model a row measured: sha256 (12 hex) of its weights and of its compression history."""
    import torch

    from slimfusion.models.meta import history

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    steps = hashlib.sha256(json.dumps(history(model), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"weights {digest.hexdigest()[:12]}, history {steps}"
