"""One rich progress bar style for every long loop (training, sampling, calibration)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _LoggedProgress(Progress):
    """When stderr is not a terminal (CI, log files) rich draws nothing; print a line every 10% instead."""

    def update(self, task_id, **kwargs) -> None:  # type: ignore[override]
        task = self._tasks[task_id]
        before = task.completed
        super().update(task_id, **kwargs)
        if self.console.is_terminal or self.disable or not task.total:
            return
        tenth = task.total / 10
        if int(before // tenth) != int(task.completed // tenth) or task.completed >= task.total > before:
            status = task.fields.get("status", "")
            elapsed = task.elapsed or 0.0
            self.console.print(
                f"{task.description}: {task.completed:g}/{task.total:g} ({elapsed:.0f}s) {status}", highlight=False
            )


def progress_bar(enabled: bool = True) -> Progress:
    """A progress bar on stderr with count, elapsed, remaining and a free-text status field (`status=`)."""
    return _LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not enabled,
    )
