"""`farm baseline`: the accepted reference runs that `farm nightly` and `farm compare --baseline` judge against."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .options import DbOption
from .output import console

baseline_app = typer.Typer(help="Accept and list the baselines nightly runs compare against.", no_args_is_help=True)


@baseline_app.command("accept")
def baseline_accept(run: Annotated[int, typer.Argument(help="Run id (a nightly's other trials come along)")],
                    db: DbOption = None) -> None:
    """Make a run's results the baseline of every cell it ran.

    Example: farm baseline accept 42
    """
    from ..results import baselines as baseline
    from ..store import open_store

    store = open_store(db)
    try:
        run_ids, changed = baseline.accept(store, run)
    finally:
        store.close()
    console.print(f"baseline of {changed} cell(s) set from run(s) {', '.join(map(str, run_ids))}")


@baseline_app.command("show")
def baseline_show(db: DbOption = None) -> None:
    """List every cell's baseline: its runs, median and how it was set.

    Example: farm baseline show --db postgresql+psycopg://127.0.0.1/test
    """
    from ..results import baselines as baseline
    from ..store import open_store

    store = open_store(db)
    try:
        rows = sorted(baseline.baselines(store).values(), key=lambda r: r.lineage_key)
    finally:
        store.close()
    table = Table(title=f"{len(rows)} baseline(s)")
    for column in ("cell", "runs", "median ms", "how", "accepted"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.lineage_key.replace("|", " · "), ", ".join(map(str, row.run_ids)),
                      "" if row.median_ms is None else f"{row.median_ms:.3f}", row.how,
                      f"{row.accepted_at:%Y-%m-%d %H:%M}")
    console.print(table)
