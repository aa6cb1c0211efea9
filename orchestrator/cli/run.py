"""`farm run`: a matrix on the inventory's hosts, or `--resume` of a run whose controller died."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import FarmError
from . import resume as run_resume
from .options import (
    AcceptNewHostKeysOption,
    ColumnsOption,
    DbOption,
    HostsOption,
    HostTagsOption,
    InventoryOption,
    KnownHostsOption,
    MatrixFileOption,
    MatrixNameOption,
    NewRunLabelsOption,
    WideOption,
    transport_options,
)
from .output import console, err_console
from .run_output import RunOutput

QuietOption = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress and no table: failures on stderr, then the run id on stdout")]
JsonLinesOption = Annotated[bool, typer.Option(
    "--json-lines", help="One JSON object per line: each event as it happens, each job's result, then the run's")]


def run(
    matrix: MatrixNameOption = "all",
    matrix_file: MatrixFileOption = None,
    inventory: InventoryOption = None,
    db: DbOption = None,
    host: HostsOption = None,
    tag: HostTagsOption = None,
    label: NewRunLabelsOption = None,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue run RUN (default: the newest unfinished) whose controller died")] = False,
    run_arg: Annotated[int | None, typer.Argument(metavar="[RUN]", help="The run --resume continues")] = None,
    quiet: QuietOption = False,
    json_lines: JsonLinesOption = False,
    wide: WideOption = False,
    columns: ColumnsOption = None,
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
    the reason. In a terminal it shows progress per host and overall (done/total,
    elapsed, time left); in a pipe it prints one line per finished job as it finishes.

    Exit codes: 0 ok; 1 a job failed; 2 usage or input error; 3 the run is
    incomplete (finish it with --resume; see README, Crash safety); 4 a host was
    unreachable or the infrastructure failed.

    The run ends with a line per host whose cells were disturbed (others used the benchmark's CPUs
    during its timed loop; see README, Interference); --retry-disturbed N runs those cells again.

    Example: farm run --matrix all              # this machine alone
             farm run --matrix all -i lab.yaml  # an inventory's hosts
             farm run -m all -i "$(farm lab up --hosts 6 | tail -n 1)"
             farm run -m sweep --matrix-file matrices.yaml -i lab.yaml --tag lab-a
             farm run -m all -i lab.yaml --label commit=3f2a9c1 --label compiler=16.0
             farm run -m all -i lab.yaml --db postgresql+psycopg://127.0.0.1/test
             farm run -m all --json-lines | jq -c 'select(.event == "result")'
             farm run --resume        # continue the newest run whose controller died
             farm run -m all -i lab.yaml --submit --db postgresql+psycopg://db/farm  # for `farm serve`
    """
    from ..inventory import load_inventory
    from ..labels import parse_labels
    from ..matrix import load_matrix
    from ..retry_disturbed import disturbed_lines, rerun_disturbed
    from ..run_models import models_for_run
    from ..scheduler import Runner
    from ..store import open_store

    if submit:
        if resume or run_arg is not None:
            raise FarmError("--submit stores a new run; --resume continues one: give one of them")
        from .sites import submit_run

        return submit_run(matrix, matrix_file, inventory, db, host, tag, accept_new_host_keys, known_hosts,
                          parse_labels(label))
    output = RunOutput(console, err_console, quiet=quiet, json_lines=json_lines, wide=wide, columns=columns)
    if resume or run_arg is not None:
        if label:
            raise FarmError("--label is set when a run starts; a resumed run keeps the labels it was started with")
        return _resume(resume, run_arg, inventory, db, host, tag, accept_new_host_keys, known_hosts, output)
    labels = parse_labels(label)
    inv = load_inventory(inventory)
    spec = load_matrix(matrix, matrix_file)
    hosts = inv.select(host, tag)
    if spec.hosts or spec.tags:  # the matrix's own host selection narrows the command line's
        chosen = {h.name for h in inv.select(list(spec.hosts) or None, list(spec.tags) or None)}
        hosts = [h for h in hosts if h.name in chosen]
    store = open_store(db)
    try:
        models = models_for_run(store, spec, output.say)
        options = transport_options(accept_new_host_keys, known_hosts)
        with run_resume.store_errors(store), output.observer() as observer:
            runner = Runner(store, observer, options)
            runner.on_run_created = output.announcer()  # "Run N started": what --resume takes
            outcome = runner.run(spec, hosts, models, inv.path, labels=labels)
            retries = rerun_disturbed(runner, spec, hosts, models, inv.path, outcome.run_id, retry_disturbed,
                                      say=output.say) if retry_disturbed and not outcome.journal_pending else []
        code = output.finish(store, outcome)
        # With writes still journaled the database is away: the disturbed lines wait for --resume.
        if not quiet and not json_lines and not outcome.journal_pending:
            for line in disturbed_lines(store, outcome.run_id, retries):
                console.print(f"[yellow]{line}[/yellow]", highlight=False)  # one per host, wrapped to the width
        if code:
            raise typer.Exit(code)
    finally:
        store.close()


def _resume(resume: bool, run_arg: int | None, inventory: Path | None, db: str | None, host: list[str] | None,
            tag: list[str] | None, accept_new_host_keys: bool, known_hosts: Path | None, output: RunOutput) -> None:
    from ..store import open_store

    if not resume:
        raise FarmError(f"a run number ({run_arg}) is only taken with --resume: farm run --resume {run_arg}")
    store = open_store(db)
    try:
        options = transport_options(accept_new_host_keys, known_hosts)
        with run_resume.store_errors(store), output.observer() as observer:
            outcome = run_resume.resume_run(run_arg, inventory, store, host, tag, options, observer, console,
                                            announce=output.announcer("resumed"))
        code = output.finish(store, outcome)
        if code:
            raise typer.Exit(code)
    finally:
        store.close()


def print_run_summary(store, run_id: int) -> None:  # type: ignore[no-untyped-def]
    """The end-of-run table as `farm run` prints it (the nightly and other callers use it too)."""
    RunOutput(console, err_console).print_summary(store, run_id)
