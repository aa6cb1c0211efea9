"""`farm results` and `farm query`: stored results as a table, CSV or JSON, and read-only SQL on the store."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import FarmError
from ..gc_pause import collector_paused, skip_exit_collection
from .options import (
    ColumnsOption,
    DbOption,
    DelegatesOption,
    FormatOption,
    HostsOption,
    ModelsOption,
    OutputOption,
    PowerModesOption,
    RunLabelsOption,
    RunsOption,
    RunTagsOption,
    SinceOption,
    ThreadsOption,
    UntilOption,
    UsbSpeedsOption,
    WideOption,
    check_format,
    result_filter,
)
from .output import console, emit, marks_column
from .tables import Layout, RowTable, parse_columns, print_table

# "simulated": results from the simulated lab's stand-in Edge TPU say so next to their numbers (a column only
# where some row has it: the table leaves out columns no row fills); "marks": disturbed (others used the
# benchmark's CPUs during its timed loop) and invalid (a validity rule broken) results are never silent.
TABLE_COLUMNS = ["run_id", "host", "model", "delegate", "threads", "power_mode", "usb_port", "usb_speed", "simulated",
                 "status", "median_ms", "p90_ms", "gops", "samples", "cpu_share", "marks", "runtime",
                 "runtime_version", "python", "run_labels"]
# What the table's "marks" column is read from.
MARKED_BY = ("disturbed", "valid")
# What goes first when the terminal is narrow: the toolchain (also in `farm results --format json`), then
# the detail statistics; the model, its median, its status and its marks stay.
RESULTS_LAYOUT = Layout(
    columns=TABLE_COLUMNS,
    drop_order=["run_labels", "python", "runtime_version", "runtime", "samples", "cpu_share", "p90_ms", "gops",
                "usb_port", "power_mode", "usb_speed", "delegate", "run_id", "threads", "host", "simulated",
                "status"],
    headings={"run_id": "run", "threads": "thr", "power_mode": "power", "usb_port": "USB port",
              "usb_speed": "USB Mb/s", "median_ms": "median ms", "p90_ms": "p90 ms", "gops": "GOPS",
              "runtime_version": "runtime version", "run_labels": "labels", "cpu_share": "cpu share"},
    right=frozenset({"run_id", "threads", "usb_speed", "median_ms", "p90_ms", "gops", "samples", "cpu_share"}),
    formats={"gops": ".2f", "samples": ".0f", "usb_speed": ".0f", "threads": ".0f", "run_id": ".0f",
             "cpu_share": ".2f"},
)


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
    label: RunLabelsOption = None,
    wide: WideOption = False,
    columns: ColumnsOption = None,
) -> None:
    """Show or export stored results, one row per job with its context.

    Example: farm results --model conv_stack --threads 1 --format csv -o conv.csv

    Every cell, run or not, with its reason: farm results --status all --format json

    By power mode and USB speed: farm results --power-mode 5W --usb-speed 480 --group-by power_mode --group-by usb_speed

    Runs labelled by farm run --label: farm results --label commit=3f2a9c1

    The table keeps the columns the rows fill and fits the terminal (model names whole); --wide shows every
    column, --columns run_id,model,median_ms exactly those. CSV and JSON carry every v_results column under
    its view name (run_id, model_family, ...), like farm report --export; timestamps are UTC with the offset.

    The table's "marks" column says "disturbed" (others used the benchmark's CPUs during its timed loop:
    disturbed_reason) and "invalid" (cut short by max_seconds, fewer than min_runs, throttled: invalid_reason).
    """
    # One read and one print: collections while thousands of rows (and SQLAlchemy's import) are made, or when
    # the process exits, would find nothing to free (orchestrator/gc_pause.py).
    skip_exit_collection()
    with collector_paused():
        from ..results.filters import STATUSES
        from ..store import open_store

        if status not in STATUSES:
            raise FarmError(f"--status must be one of {', '.join(STATUSES)}, not '{status}'")
        check_format(output_format)
        selected = result_filter(run_id=run_id, since=since, until=until, tag=tag, host=host, model=model,
                                 delegate=delegate, threads=threads, power_mode=power_mode, usb_speed=usb_speed,
                                 label=label, latest=latest, status=status)
        if output_format == "table" and not group_by and output is None:
            # The table needs no pandas: columns straight from the store (orchestrator/results/rows.py).
            from ..results.rows import results_columns

            store = open_store(db)
            try:
                # --columns may name any view column: then every one is read, to check the names against.
                wanted = None if columns else [*(c for c in TABLE_COLUMNS if c != "marks"), *MARKED_BY]
                values = results_columns(store, selected, wanted)
            finally:
                store.close()
            values["marks"] = marks_column(values["disturbed"], values["valid"])
            shown_labels: dict[object, str] = {}  # a run's labels, once per run rather than once per row
            labels = []
            for stored in values["run_labels"]:
                if not isinstance(stored, str):
                    labels.append(_labels_text(stored))
                    continue
                if stored not in shown_labels:
                    shown_labels[stored] = _labels_text(stored)
                labels.append(shown_labels[stored])
            values["run_labels"] = labels
            chosen = parse_columns(columns, list(values))
            print_table(console, RowTable(values), RESULTS_LAYOUT, wide=wide, columns=chosen)
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
        if columns:  # CSV and JSON: the asked columns, under v_results' names
            frame = frame[parse_columns(columns, list(frame.columns))]
        # CSV and JSON keep v_results' names, the same as `farm report --export` writes; the table may be terse.
        emit(frame, output_format, output, headings={"run_id": "run"})


def _labels_text(stored: object) -> str:
    """The view's run_labels (JSON text) as the table shows them: 'commit=abc, firmware=5.1'; '' for none."""
    import json

    from ..labels import format_labels

    if not stored:
        return ""
    try:
        labels = json.loads(stored) if isinstance(stored, str) else stored
    except ValueError:
        return str(stored)
    return format_labels(labels) if isinstance(labels, dict) and labels else ""


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
