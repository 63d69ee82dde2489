"""The search's journal: every finished measurement, one JSON line each, so a killed search resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

JOURNAL = "journal.jsonl"


class Journal:
    """Finished measurements, one JSON line each, keyed by (candidate, rung): a resumed search reads them back."""

    def __init__(self, folder: Path | None):
        self.path = None if folder is None else folder / JOURNAL
        self.rows: dict[tuple[str, str], dict] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.rows[(row["key"], row["rung"])] = row

    def get(self, key: str, rung: str) -> dict | None:
        return self.rows.get((key, rung))

    def put(self, key: str, rung: str, row: dict) -> dict:
        row = {"key": key, "rung": rung} | row
        self.rows[(key, rung)] = row
        if self.path is not None:
            with self.path.open("a") as file:
                file.write(json.dumps(row) + "\n")
        return row
