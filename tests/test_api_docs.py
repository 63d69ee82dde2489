"""docs/api.md stays true: every public name has an entry, and every example on the page runs."""

from __future__ import annotations

import re
from pathlib import Path

import slimfusion

PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_every_public_name_has_an_entry():
    headings = " ".join(line for line in PAGE.read_text().splitlines() if line.startswith("### "))
    missing = [
        n for n in slimfusion.__all__ if n != "__version__" and f"`{n}" not in headings and f" {n}" not in headings
    ]
    assert not missing, f"docs/api.md has no entry for {missing}"


def test_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 12
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)  # noqa: S102  (our own page)
    printed = capsys.readouterr().out
    assert "torch.Size([8, 1, 16, 16])" in printed and "torch.float32 torch.bfloat16" in printed
    assert "['train', 'prune', 'finetune']" in printed and "'lowrank', 'quantize', 'recipe'" in printed
