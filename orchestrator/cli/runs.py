"""`farm runs` and `farm status`: runs with their job counts, and one run's jobs per site and controller."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .options import DbOption
from .output import console


def _age(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.0f} s"


def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", help="The newest N runs")] = 20,
) -> None:
    """List the newest runs: status, shared (submitted for `farm serve`) or not, jobs by status and site.

    Example: farm runs --db postgresql+psycopg://db.lab/farm --limit 5
    """
    from ..sites.overview import runs as run_lines
    from ..store import open_store

    store = open_store(db)
    try:
        lines = run_lines(store, limit)
    finally:
        store.close()
    table = Table()
    for column in ("run", "matrix", "status", "shared", "started", "jobs", "per site"):
        table.add_column(column)
    for line in lines:
        jobs = ", ".join(f"{n} {s}" for s, n in sorted(line.counts.items()))
        sites = ", ".join(f"{site}: {n}" for site, n in sorted(line.sites.items()))
        table.add_row(str(line.run_id), line.matrix, line.status, "yes" if line.shared else "",
                      line.started_at.strftime("%Y-%m-%d %H:%M:%S"), jobs, sites)
    console.print(table)


def status(
    run_id: Annotated[int | None, typer.Argument(metavar="[RUN]", help="The run (default: the newest)")] = None,
    db: DbOption = None,
) -> None:
    """One run's jobs per site and controller, with claim ages, lease left and each controller's heartbeat.

    Example: farm status 7 --db postgresql+psycopg://db.lab/farm
    """
    from ..errors import FarmError
    from ..sites.overview import claims_of
    from ..sites.overview import runs as run_lines
    from ..store import open_store

    store = open_store(db)
    try:
        if run_id is None:
            newest = run_lines(store, 1)
            if not newest:
                raise FarmError(f"there is no run in {store.url}")
            run_id = newest[0].run_id
        lines = claims_of(store, run_id)
    finally:
        store.close()
    table = Table(title=f"Run {run_id}")
    for column in ("site", "controller", "status", "jobs", "oldest claim", "lease left", "heartbeat"):
        table.add_column(column)
    for line in lines:
        table.add_row(line.site or "-", line.controller or "(unclaimed)", line.status, str(line.jobs),
                      _age(line.oldest_claim_s), _age(line.lease_left_s), _age(line.heartbeat_s))
    console.print(table)
