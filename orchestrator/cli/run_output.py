"""What `farm run` writes while and after it runs, for a person at a terminal, a CI log, or a program.

- a terminal: live progress lines, then the run's table at the terminal's width;
- a pipe or file: one plain line per finished job as it finishes, then the same table (at $COLUMNS, else 80);
- ``--quiet``: failures on stderr, then only the run id on stdout (``RUN=$(farm run -q …)``);
- ``--json-lines``: one JSON object per line: events as they happen, one ``result`` per job, then ``run_finished``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from ..errors import FarmError
from . import resume as run_resume
from .tables import Layout, parse_columns, print_table

SUMMARY_LAYOUT = Layout(
    columns=["host", "model", "delegate", "threads", "power_mode", "usb_port", "status", "marks", "median_ms",
             "p90_ms", "gops", "samples", "cpu_share", "reason"],
    drop_order=["samples", "cpu_share", "p90_ms", "gops", "usb_port", "power_mode", "delegate", "threads", "host",
                "reason"],
    headings={"threads": "thr", "power_mode": "power", "usb_port": "USB port", "median_ms": "median ms",
              "p90_ms": "p90 ms", "gops": "GOPS", "cpu_share": "cpu share"},
    right=frozenset({"threads", "median_ms", "p90_ms", "gops", "samples", "cpu_share"}),
    formats={"gops": ".2f", "samples": ".0f", "threads": ".0f", "cpu_share": ".2f"},
)
JSON_RESULT_COLUMNS = ["run_id", "job_id", "host", "model", "delegate", "threads", "power_mode", "usb_port",
                       "usb_speed", "status", "reason", "median_ms", "p90_ms", "gops", "samples"]


class RunOutput:
    def __init__(self, console: Console, err_console: Console, *, quiet: bool = False, json_lines: bool = False,
                 wide: bool = False, columns: list[str] | None = None) -> None:
        if quiet and json_lines:
            raise FarmError("choose one of --quiet and --json-lines")
        self.console, self.err_console = console, err_console
        self.quiet, self.json_lines, self.wide, self.columns = quiet, json_lines, wide, columns
        self._json_observer: Any = None

    def observer(self) -> Any:
        from ..progress import JsonLinesObserver, LineObserver, QuietLineObserver, RichObserver

        if self.json_lines:
            self._json_observer = JsonLinesObserver(sys.stdout)
            return self._json_observer
        if self.quiet:
            return QuietLineObserver()
        # Rich's live display needs a terminal; in a pipe it would print nothing until the end.
        return RichObserver(self.console) if self.console.is_terminal else LineObserver(sys.stdout)

    def say(self, text: str) -> None:
        """A line for people ("Run 12 started", "Building the default suite"); programs get it as JSON."""
        if self.json_lines:
            print(json.dumps({"event": "message", "text": text}), flush=True)
        elif not self.quiet:
            self.console.print(text, highlight=False)

    def announcer(self, verb: str = "started"):  # type: ignore[no-untyped-def]
        def announce(run_id: int) -> None:
            if self.json_lines:
                print(json.dumps({"event": f"run_{verb}", "run_id": run_id}), flush=True)
            elif not self.quiet:
                self.console.print(f"Run {run_id} {verb}", highlight=False)

        return announce

    def finish(self, store: Any, outcome: Any) -> int:
        """The run's summary in this output's form; returns the exit code."""
        if self.json_lines:
            return self._finish_json(store, outcome)
        if self.quiet:
            code = run_resume.exit_code(outcome, run_resume.infrastructure_failures(store, outcome))
            for name, reason in outcome.unreachable.items():
                self.err_console.print(f"unreachable {name}: {reason}", highlight=False)
            print(outcome.run_id, flush=True)
            return code
        return run_resume.report(self.console, self.err_console, store, outcome, self.print_summary)

    def print_summary(self, store: Any, run_id: int) -> None:
        from ..labels import format_labels
        from ..results import ResultFilter, results_frame
        from .output import result_marks

        frame = results_frame(store, ResultFilter(runs=(run_id,), status="all"))
        # Disturbed (others used the benchmark's CPUs) and invalid (a validity rule broken): never silent.
        frame = frame.assign(marks=[result_marks(row) for row in frame.itertuples()])
        # A succeeded job's reason is empty; a skipped or failed one's says why: one column serves both.
        labels = _run_labels(store, run_id)
        title = f"Run {run_id}" + (f" ({format_labels(labels)})" if labels else "")
        columns = parse_columns(self.columns, list(frame.columns))
        print_table(self.console, frame, SUMMARY_LAYOUT, title=title, wide=self.wide, columns=columns)

    def _finish_json(self, store: Any, outcome: Any) -> int:
        from ..results import ResultFilter, results_frame
        from ..results.columns import iso_timestamps
        from ..store.retry import with_db_retry

        code = run_resume.exit_code(outcome, run_resume.infrastructure_failures(store, outcome))
        if not outcome.journal_pending:
            frame = with_db_retry(results_frame, store, ResultFilter(runs=(outcome.run_id,), status="all"))
            frame = iso_timestamps(frame[[c for c in JSON_RESULT_COLUMNS if c in frame]])
            for record in json.loads(frame.to_json(orient="records")):
                print(json.dumps({"event": "result", **record}), flush=True)
        print(json.dumps({"event": "run_finished", "run_id": outcome.run_id, "counts": dict(outcome.counts),
                          "unreachable": outcome.unreachable, "journal_pending": outcome.journal_pending,
                          "exit_code": code}), flush=True)
        return code


def _run_labels(store: Any, run_id: int) -> dict[str, Any]:
    from ..store.schema import RunRow

    with store.session() as session:
        row = session.get(RunRow, run_id)
        return dict(row.labels or {}) if row is not None else {}
