"""`farm results` and `farm query`: stored results as a table, CSV or JSON, and read-only SQL on the store."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import FarmError
from .options import (
    DbOption,
    DelegatesOption,
    FormatOption,
    HostsOption,
    ModelsOption,
    OutputOption,
    PowerModesOption,
    RunsOption,
    RunTagsOption,
    SinceOption,
    ThreadsOption,
    UntilOption,
    UsbSpeedsOption,
    check_format,
    result_filter,
)
from .output import emit, print_rows, result_marks

TABLE_COLUMNS = ["run_id", "host", "model", "delegate", "threads", "power_mode", "usb_port", "usb_speed", "status",
                 "median_ms", "p90_ms", "gops", "samples", "cpu_share", "marks", "runtime", "runtime_version", "python"]

# What the table's "marks" and "simulated" columns are read from.
MARKED_BY = ("disturbed", "valid", "simulated")


def results(
    db: DbOption = None,
    host: HostsOption = None,
    model: ModelsOption = None,
    delegate: DelegatesOption = None,
    threads: ThreadsOption = None,
    run_id: RunsOption = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the newest run")] = False,
    status: Annotated[str, typer.Option("--status", help="succeeded, failed, skipped, or all")] = "succeeded",
    output_format: FormatOption = "table",
    output: OutputOption = None,
    power_mode: PowerModesOption = None,
    usb_speed: UsbSpeedsOption = None,
    group_by: Annotated[list[str] | None, typer.Option("--group-by", help="power_mode, usb_speed, host, ...")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    tag: RunTagsOption = None,
) -> None:
    """Show or export stored results, one row per job with its context.

    Example: farm results --model conv_stack --threads 1 --format csv -o conv.csv

    Every cell, run or not, with its reason: farm results --status all --format json

    By power mode and USB speed: farm results --power-mode 5W --usb-speed 480 --group-by power_mode --group-by usb_speed

    CSV and JSON name columns as the v_results view does (run_id, model_family, ...), like farm report --export.

    The table's "marks" column says "disturbed" (others used the benchmark's CPUs during its timed loop:
    disturbed_reason) and "invalid" (cut short by max_seconds, fewer than min_runs, throttled: invalid_reason).
    """
    from ..results.filters import STATUSES
    from ..store import open_store

    if status not in STATUSES:
        raise FarmError(f"--status must be one of {', '.join(STATUSES)}, not '{status}'")
    check_format(output_format)
    selected = result_filter(run_id=run_id, since=since, until=until, tag=tag, host=host, model=model,
                             delegate=delegate, threads=threads, power_mode=power_mode, usb_speed=usb_speed,
                             latest=latest, status=status)
    if output_format == "table" and not group_by and output is None:
        # The table needs no pandas: rows straight from the store (orchestrator/results/rows.py).
        from ..results.rows import results_rows

        store = open_store(db)
        try:
            rows = results_rows(store, selected, [*(c for c in TABLE_COLUMNS if c != "marks"), *MARKED_BY])
        finally:
            store.close()
        for record in rows.records:
            record["marks"] = result_marks(record)
        simulated = any(record.get("simulated") for record in rows.records)
        print_rows(TABLE_COLUMNS + (["simulated"] if simulated else []), rows.records, headings={"run_id": "run"})
        return
    from ..results import GROUPS, grouped, results_frame

    store = open_store(db)
    try:
        frame = results_frame(store, selected)
    finally:
        store.close()
    if group_by:
        bad = [g for g in group_by if g not in GROUPS]
        if bad:
            raise FarmError(f"--group-by {bad[0]}: choose from {', '.join(GROUPS)}")
        frame = grouped(frame, list(group_by))
        emit(frame, output_format, output)
        return
    if output_format == "table" and not frame.empty:
        # Results from the simulated lab's stand-in Edge TPU say so, next to their numbers; disturbed (others
        # used the benchmark's CPUs) and invalid (a validity rule broken) ones are never silent either.
        marked = "simulated" in frame and frame["simulated"].notna().any()
        frame = frame.assign(marks=[result_marks(row) for row in frame.itertuples()])
        frame = frame[TABLE_COLUMNS + (["simulated"] if marked else [])]
    # CSV and JSON keep v_results' names, the same as `farm report --export` writes; the table may be terse.
    emit(frame, output_format, output, headings={"run_id": "run"})


def query(
    sql: Annotated[str, typer.Argument(help="A SELECT statement; name parameters as :name")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, bound, never pasted")] = None,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Run read-only SQL on the store (try the v_results view); writes are refused.

    Example: farm query "SELECT host, threads, median_ms FROM v_results WHERE model = :m" -p m=conv_stack-l1
    """
    from ..query import read_only_query
    from ..store import open_store

    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise FarmError(f"--param must be NAME=VALUE, not '{item}'")
        params[name] = value
    check_format(output_format)
    store = open_store(db)
    try:
        frame = read_only_query(store, sql, params)
    finally:
        store.close()
    emit(frame, output_format, None)
