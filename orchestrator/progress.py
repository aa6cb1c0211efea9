"""Show a run as it happens, in the form the output goes to.

- a terminal: one progress line per host and one for the whole run, each with done/total, elapsed time
  and an estimate of the time left (RichObserver);
- a pipe or a file (a CI log): one plain line per finished job, written and flushed as it finishes, so
  the log grows while the run does (LineObserver);
- ``--json-lines``: one JSON object per event for programs (JsonLinesObserver);
- ``--quiet``: nothing but failures, on stderr (QuietLineObserver).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text
from typing_extensions import Self

from .matrix import Cell


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class Tally:
    """Done/total and the time it took, for one host or the whole run; estimates from the mean job time."""

    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    first_done: float | None = None

    def finish_one(self) -> None:
        self.done += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        """Seconds left at the pace so far; None before the first job finished (nothing to go by)."""
        if not self.done or self.total <= self.done:
            return 0.0 if self.total and self.total <= self.done else None
        return self.elapsed() / self.done * (self.total - self.done)


class _Tallies:
    """Per-host and overall counts, shared by the plain-text observers."""

    def __init__(self) -> None:
        self.hosts: dict[str, Tally] = {}
        self.overall = Tally()
        self.lock = threading.Lock()

    def planned(self, host: str, total: int) -> None:
        with self.lock:
            tally = self.hosts.setdefault(host, Tally())
            # Cells finished before planning (skipped, or failed on an unreachable host) already count as done.
            self.overall.total += total
            tally.total += total

    def finished(self, host: str, counted: bool) -> tuple[Tally, Tally]:
        with self.lock:
            tally = self.hosts.get(host) or Tally()  # a host not planned yet gets no entry: it is not counted
            if counted:
                tally.finish_one()
                self.overall.finish_one()
            return tally, self.overall


def job_text(cell: Cell) -> str:
    parts = [cell.model.name, cell.delegate, f"t{cell.threads}"]
    if getattr(cell, "power_mode", None):
        parts.append(str(cell.power_mode))
    if getattr(cell, "usb_port", None):
        parts.append(f"usb {cell.usb_port}")
    return " ".join(parts)


class EtaColumn(ProgressColumn):
    """Time left at the mean pace of the jobs done so far: a job's length, not rich's 30-second speed window,
    which has no estimate until several jobs finished close together."""

    def render(self, task: Task) -> Text:
        if task.total is None or task.elapsed is None or not task.completed:
            return Text(clock(None))
        return Text(clock(task.elapsed / task.completed * max(0.0, task.total - task.completed)))


NAME_WIDTH, BAR_WIDTH = 18, 10
# name, "12/345", "0:01:02", "eta", "0:00:40", the bar, and the one-space gaps between the seven columns
FIXED_WIDTH = NAME_WIDTH + 7 + 7 + 3 + 7 + BAR_WIDTH + 7


class RichObserver:
    """A terminal: progress lines that keep count, elapsed and estimate however long the state text gets."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # The state text is last and cut first (to what the line leaves, _state): the name, the count, the times
        # and the bar keep their width at 80 columns, whatever a job's state says.
        fixed = Column(no_wrap=True)
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, width=NAME_WIDTH, overflow="ellipsis")),
            MofNCompleteColumn(table_column=fixed), TimeElapsedColumn(table_column=fixed),
            TextColumn("eta", table_column=fixed), EtaColumn(table_column=fixed),
            BarColumn(bar_width=BAR_WIDTH, table_column=fixed),
            TextColumn("{task.fields[state]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console)
        self._tasks: dict[str, TaskID] = {}
        self._overall: TaskID | None = None
        self._planned: set[str] = set()
        self._overall_total = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _overall_task(self) -> TaskID:
        with self._lock:
            if self._overall is None:
                self._overall = self.progress.add_task("all hosts", total=0, state="")
            return self._overall

    def _task(self, host: str) -> TaskID:
        self._overall_task()
        with self._lock:
            if host not in self._tasks:
                self._tasks[host] = self.progress.add_task(host, total=None, state="")
            return self._tasks[host]

    def _state(self, text: str) -> str:
        room = max(8, self.console.width - FIXED_WIDTH)
        return text if len(text) <= room else text[:room - 1] + "…"

    def host_state(self, host: str, text: str) -> None:
        self.progress.update(self._task(host), state=self._state(text))

    def host_note(self, host: str, text: str) -> None:
        """Something the user must see after the run too (a power mode restored), not a passing state."""
        self.console.print(f"[yellow]{host}[/yellow]: {text}")

    def jobs_planned(self, host: str, total: int) -> None:
        task, overall = self._task(host), self._overall_task()
        self.progress.update(task, total=total, completed=0)
        with self._lock:
            self._planned.add(host)
            self._overall_total += total
            self.progress.update(overall, total=self._overall_total)

    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None:
        if status == "skipped":
            return
        task = self._task(host)
        if status == "failed":
            self.console.print(f"[red]failed[/red] {host} {job_text(cell)}: {detail}")
        if host not in self._planned:
            return  # finished before planning (a cell of an unreachable host): not one of the planned jobs
        self.progress.update(task, advance=1, state=self._state(f"{job_text(cell)}: {status} {detail}"))
        self.progress.update(self._overall_task(), advance=1, state=self._state(f"{host}: {status}"))


class LineObserver:
    """A pipe: one plain line per finished job, flushed at once; the counts and times on every line."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.tallies = _Tallies()
        self._write_lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.flush()

    def _line(self, text: str) -> None:
        with self._write_lock:
            self.out.write(text + "\n")
            self.out.flush()

    def host_state(self, host: str, text: str) -> None:
        # Connecting, deploying, retrying: said once each, so the log shows where a host spent its time.
        if text.startswith(("unreachable", "retry", "ready")):
            self._line(f"{host}: {text}")

    def host_note(self, host: str, text: str) -> None:
        self._line(f"{host}: {text}")

    def jobs_planned(self, host: str, total: int) -> None:
        self.tallies.planned(host, total)

    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None:
        planned = host in self.tallies.hosts
        if status == "skipped" and not planned:
            return  # a cell the host cannot run: the summary lists it with its reason
        tally, overall = self.tallies.finished(host, counted=planned and status != "skipped")
        if status == "skipped":
            return
        count = f"[{tally.done}/{tally.total} {host}; {overall.done}/{overall.total} all]" if planned else f"[{host}]"
        times = (f"elapsed {clock(overall.elapsed())}, eta {host} {clock(tally.remaining())}, "
                 f"all {clock(overall.remaining())}") if planned else ""
        words = f"{count} {job_text(cell)}: {status}{' ' + detail if detail else ''}"
        self._line(f"{words} ({times})" if times else words)


class QuietLineObserver(LineObserver):
    """``--quiet``: only what went wrong, on stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def host_state(self, host: str, text: str) -> None:
        if text.startswith("unreachable"):
            self._line(f"{host}: {text}")

    def host_note(self, host: str, text: str) -> None:
        self._line(f"{host}: {text}")

    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None:
        self.tallies.finished(host, counted=host in self.tallies.hosts and status != "skipped")
        if status == "failed":
            self._line(f"failed {host} {job_text(cell)}: {detail}")


class JsonLinesObserver(LineObserver):
    """``--json-lines``: one JSON object per line and event, flushed as it happens."""

    def emit(self, event: str, **fields: Any) -> None:
        self._line(json.dumps({"event": event, **fields}, default=str))

    def host_state(self, host: str, text: str) -> None:
        self.emit("host_state", host=host, state=text)

    def host_note(self, host: str, text: str) -> None:
        self.emit("host_note", host=host, note=text)

    def jobs_planned(self, host: str, total: int) -> None:
        super().jobs_planned(host, total)
        self.emit("jobs_planned", host=host, total=total)

    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None:
        planned = host in self.tallies.hosts
        tally, overall = self.tallies.finished(host, counted=planned and status != "skipped")
        self.emit("job_finished", host=host, model=cell.model.name, delegate=cell.delegate, threads=cell.threads,
                  power_mode=getattr(cell, "power_mode", None), usb_port=getattr(cell, "usb_port", None),
                  status=status, detail=detail, host_done=tally.done, host_total=tally.total, done=overall.done,
                  total=overall.total, elapsed_s=round(overall.elapsed(), 3),
                  eta_s=None if overall.remaining() is None else round(overall.remaining() or 0.0, 3))
