"""The crash-safety side of ``farm run``: its exit codes, its first line, and ``--resume [RUN]``.

Exit codes (README, "Exit codes"; orchestrator/exit_codes.py): 0 every job terminal and none failed;
1 a benchmark job failed; 3 the run is incomplete (jobs in flight or writes waiting in the journal):
``farm run --resume`` finishes it; 4 a host was unreachable or a job failed for the infrastructure's
sake (a link lost for good). Bad input exits 2 before anything runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import exit_codes
from ..errors import FarmError, StoreError
from ..lifecycle import TERMINAL

EXIT_OK, EXIT_FAILED, EXIT_INCOMPLETE = exit_codes.OK, exit_codes.FAILED, exit_codes.INCOMPLETE
EXIT_INFRASTRUCTURE = exit_codes.INFRASTRUCTURE


@contextlib.contextmanager
def store_errors(store: Any) -> Iterator[None]:
    """A database lost where no journal can help (before the run's first job): one paragraph, no traceback."""
    # SQLAlchemy (and through the store, alembic) only once a command opens a store: `farm --help` needs neither.
    from sqlalchemy.exc import DBAPIError, OperationalError

    from ..store.db import safe_url

    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        reason = " ".join(str(exc.orig or exc).split())[:300]
        raise StoreError(f"lost the database at {safe_url(store.url)}: {reason}. Jobs already handed to agents "
                         "keep their results in the agents' spools; when the database is back, run "
                         "`farm run --resume` to collect them and finish the run.") from None


def exit_code(outcome: Any, infrastructure_failed: int = 0) -> int:
    """3 incomplete, else 4 infrastructure (unreachable host, job failed for the link's sake), else 1 failed."""
    if outcome.journal_pending or any(status not in TERMINAL for status in outcome.counts):
        return EXIT_INCOMPLETE
    if outcome.unreachable or infrastructure_failed:
        return EXIT_INFRASTRUCTURE
    return EXIT_FAILED if outcome.counts.get("failed") else EXIT_OK


def infrastructure_failures(store: Any, outcome: Any) -> int:
    """How many of the run's jobs failed for the infrastructure's sake (error_kind), not the benchmark's."""
    if not outcome.counts.get("failed") or outcome.journal_pending:
        return 0
    from sqlalchemy import func, select

    from ..store.retry import with_db_retry
    from ..store.schema import JobRow

    def count() -> int:
        with store.session() as session:
            return int(session.scalar(select(func.count()).select_from(JobRow).where(
                JobRow.run_id == outcome.run_id, JobRow.status == "failed",
                JobRow.error_kind == "infrastructure")) or 0)

    return with_db_retry(count)


def announcer(console: Console, verb: str = "started"):  # type: ignore[no-untyped-def]
    def announce(run_id: int) -> None:
        console.print(f"Run {run_id} {verb}", highlight=False)

    return announce


def report(console: Console, err_console: Console, store: Any, outcome: Any, print_summary: Any) -> int:
    """Print the run's table, its unreachable hosts and counts; return its exit code."""
    if not outcome.journal_pending:
        from ..store.retry import with_db_retry

        with_db_retry(print_summary, store, outcome.run_id)  # a database blinking as the run ends is waited for
    for name, reason in outcome.unreachable.items():
        err_console.print(f"[red]unreachable[/red] {name}: {reason}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items()))
    console.print(f"Run {outcome.run_id} stored in {store.url}: {counts}.", highlight=False)
    retries = sum(lane.retries for lane in outcome.lanes.values())
    reconnects = sum(lane.reconnects for lane in outcome.lanes.values())
    late = sum(lane.collected_late for lane in outcome.lanes.values())
    if retries or reconnects or late or outcome.store_stats.get("journaled"):
        console.print(f"Faults survived: {retries} job retries, {reconnects} reconnects, {late} results "
                      f"collected after a lost link or controller, {outcome.store_stats.get('retried', 0)} "
                      f"database retries, {outcome.store_stats.get('journaled', 0)} writes journaled.",
                      highlight=False)
    if outcome.journal_pending:
        err_console.print(f"[yellow]incomplete[/yellow]: {outcome.journal_pending} write(s) wait in the journal "
                          "for the database; run `farm run --resume` when it is back.")
    return exit_code(outcome, infrastructure_failures(store, outcome))


def resume_run(run_arg: int | None, inventory: Path | None, store: Any, host: list[str] | None,
               tag: list[str] | None, options: dict, observer: Any, console: Console, announce: Any = None) -> Any:
    """Continue run ``run_arg`` (None: the newest unfinished) as it was started: on its inventory and with its
    transport options (known_hosts included), unless the command line gives others."""
    from ..inventory import load_inventory
    from ..replan import resume_options, started_with
    from ..resume import resume, run_to_resume
    from ..scheduler import Runner
    from ..store.retry import with_db_retry

    run = with_db_retry(run_to_resume, store, run_arg)  # a database restarting now is waited for
    started_inventory, started_options = with_db_retry(started_with, store, run.id)
    source: str | Path | None = inventory
    if source is None:
        # The absolute path the run stored; runs from before it did: the path as it was given.
        source = next((p for p in (started_inventory, run.inventory) if p and Path(p).is_file()), None)
    if source is None:
        raise FarmError(f"--resume: run {run.id} ran on the inventory {started_inventory or run.inventory}, "
                        "which is no longer there; give it with --inventory")
    inv = load_inventory(source)
    (announce or announcer(console, "resumed"))(run.id)
    return resume(Runner(store, observer, resume_options(started_options, options)), run.id,
                  list(inv.select(host, tag)))
