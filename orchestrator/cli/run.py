"""`farm run`: a matrix on the inventory's hosts, or `--resume` of a run whose controller died."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import FarmError
from . import resume as run_resume
from .options import (
    AcceptNewHostKeysOption,
    DbOption,
    HostsOption,
    InventoryOption,
    KnownHostsOption,
    MatrixFileOption,
    transport_options,
)
from .output import cell, console, err_console, share_cell, two_places, value_of


def run(
    matrix: Annotated[str, typer.Option("--matrix", "-m", help="Matrix name; 'all' needs no file")] = "all",
    matrix_file: MatrixFileOption = None,
    inventory: InventoryOption = None,
    db: DbOption = None,
    host: HostsOption = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only hosts with this tag (repeatable)")] = None,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue run RUN (default: the newest unfinished) whose controller died")] = False,
    run_arg: Annotated[int | None, typer.Argument(metavar="[RUN]", help="The run --resume continues")] = None,
    submit: Annotated[bool, typer.Option(
        "--submit", help="Store the run and its jobs for `farm serve` controllers and return (PostgreSQL)")] = False,
    retry_disturbed: Annotated[int, typer.Option(
        "--retry-disturbed", min=0, max=20, metavar="N",
        help="Re-run cells whose timed loop was disturbed by other load, up to N times (each attempt is its "
             "own run, tagged retry-of:RUN; every attempt is kept)")] = 0,
) -> None:
    """Run a benchmark matrix on the inventory's hosts and store every result.

    One benchmark at a time on each host, all hosts at once; each result is
    stored as it finishes, with the host's Python and runtime versions. Cells
    a host cannot run (no runtime, no Edge TPU) are stored as skipped, with
    the reason. Exits with 1 when a job failed or a host was unreachable,
    3 when the run is incomplete (finish it with --resume; see README, Crash safety).

    The run ends with a line per host whose cells were disturbed (others used the benchmark's CPUs
    during its timed loop; see README, Interference); --retry-disturbed N runs those cells again.

    Example: farm run --matrix all              # this machine alone
             farm run --matrix all -i lab.yaml  # an inventory's hosts
             farm run -m all -i "$(farm lab up --hosts 6 | tail -n 1)"
             farm run -m sweep --matrix-file matrices.yaml -i lab.yaml --tag lab-a
             farm run -m all -i lab.yaml --db postgresql+psycopg://127.0.0.1/test
             farm run --resume        # continue the newest run whose controller died
             farm run -m all -i lab.yaml --submit --db postgresql+psycopg://db/farm  # for `farm serve`
    """
    from ..inventory import load_inventory
    from ..matrix import load_matrix
    from ..progress import RichObserver
    from ..retry_disturbed import disturbed_lines, rerun_disturbed
    from ..run_models import models_for_run
    from ..scheduler import Runner
    from ..store import open_store

    if submit:
        if resume or run_arg is not None:
            raise FarmError("--submit stores a new run; --resume continues one: give one of them")
        from .sites import submit_run

        return submit_run(matrix, matrix_file, inventory, db, host, tag, accept_new_host_keys, known_hosts)
    if resume or run_arg is not None:
        return _resume(resume, run_arg, inventory, db, host, tag, accept_new_host_keys, known_hosts)
    inv = load_inventory(inventory)
    spec = load_matrix(matrix, matrix_file)
    hosts = inv.select(host, tag)
    if spec.hosts or spec.tags:  # the matrix's own host selection narrows the command line's
        chosen = {h.name for h in inv.select(list(spec.hosts) or None, list(spec.tags) or None)}
        hosts = [h for h in hosts if h.name in chosen]
    store = open_store(db)
    try:
        models = models_for_run(store, spec, console.print)
        options = transport_options(accept_new_host_keys, known_hosts)
        with run_resume.store_errors(store), RichObserver(console) as observer:
            runner = Runner(store, observer, options)
            runner.on_run_created = run_resume.announcer(console)  # "Run N started": what --resume takes
            outcome = runner.run(spec, hosts, models, inv.path)
            retries = rerun_disturbed(runner, spec, hosts, models, inv.path, outcome.run_id, retry_disturbed,
                                      say=console.print) if retry_disturbed and not outcome.journal_pending else []
        code = run_resume.report(console, err_console, store, outcome, print_run_summary)
        for line in disturbed_lines(store, outcome.run_id, retries):
            console.print(f"[yellow]{line}[/yellow]", highlight=False, soft_wrap=True)  # one line per host
        if code:
            raise typer.Exit(code)
    finally:
        store.close()


def _resume(resume: bool, run_arg: int | None, inventory: Path | None, db: str | None, host: list[str] | None,
            tag: list[str] | None, accept_new_host_keys: bool, known_hosts: Path | None) -> None:
    from ..progress import RichObserver
    from ..store import open_store

    if not resume:
        raise FarmError(f"a run number ({run_arg}) is only taken with --resume: farm run --resume {run_arg}")
    store = open_store(db)
    try:
        options = transport_options(accept_new_host_keys, known_hosts)
        with run_resume.store_errors(store), RichObserver(console) as observer:
            outcome = run_resume.resume_run(run_arg, inventory, store, host, tag, options, observer, console)
        code = run_resume.report(console, err_console, store, outcome, print_run_summary)
        if code:
            raise typer.Exit(code)
    finally:
        store.close()


def print_run_summary(store, run_id: int) -> None:  # type: ignore[no-untyped-def]
    from ..results import ResultFilter, results_frame

    frame = results_frame(store, ResultFilter(runs=(run_id,), status="all"))
    table = Table(title=f"Run {run_id}")
    # Power mode and USB port columns only for runs that have those dimensions.
    extra = [c for c in ("power_mode", "usb_port") if not frame.empty and frame[c].notna().any()]
    for column in ("host", "model", "delegate", "threads", *extra, "status", "median ms", "p90 ms", "GOPS",
                   "samples", "cpu share"):
        table.add_column(column, justify="right" if column[0].islower() and " " in column else "left")
    for row in frame.itertuples():
        if row.status == "succeeded":
            cells = [f"{row.median_ms:.3f}", f"{row.p90_ms:.3f}", two_places(row.gops), str(row.samples),
                     share_cell(row)]
        else:
            cells = [(row.reason or "")[:60], "", "", "", ""]
        dims = [cell(getattr(row, c)) for c in extra]
        status = f"{row.status} (invalid)" if value_of(row, "valid") == 0 else row.status
        table.add_row(row.host, row.model, row.delegate, str(row.threads), *dims, status, *cells)
    console.print(table)
