"""Show a run as it happens: one progress bar per host and one for the whole run."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from typing_extensions import Self

from .matrix import Cell


class RichObserver:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[state]}"), console=console)
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _task(self, host: str) -> TaskID:
        with self._lock:
            if host not in self._tasks:
                self._tasks[host] = self.progress.add_task(host, total=None, state="")
            return self._tasks[host]

    def host_state(self, host: str, text: str) -> None:
        self.progress.update(self._task(host), state=text[:80])

    def host_note(self, host: str, text: str) -> None:
        """Something the user must see after the run too (a power mode restored), not a passing state."""
        self.console.print(f"[yellow]{host}[/yellow]: {text}")

    def jobs_planned(self, host: str, total: int) -> None:
        self.progress.update(self._task(host), total=total, completed=0)

    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None:
        if status == "skipped":
            return
        task = self._task(host)
        self.progress.update(task, advance=1,
                             state=f"{cell.model.name} {cell.delegate} t{cell.threads}: {status} {detail}"[:80])
        if status == "failed":
            self.console.print(f"[red]failed[/red] {host} {cell.model.name} {cell.delegate} "
                               f"t{cell.threads}: {detail}")
