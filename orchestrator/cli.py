"""The ``farm`` command line."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import cli_resume
from .errors import FarmError

app = typer.Typer(
    help="farm: run edge-AI benchmark matrices on a farm of devices and keep every result.\n\n"
         "Example: farm run --matrix all   (this machine, default SQLite database)",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)
inventory_app = typer.Typer(help="Inspect inventories of hosts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(inventory_app, name="inventory")

from .cli_models import models_app, toolchain
from .cli_nightly import baseline_app, nightly_app

app.add_typer(models_app, name="models")
app.command("toolchain")(toolchain)

app.add_typer(nightly_app, name="nightly")
app.add_typer(baseline_app, name="baseline")

from .cli_report import compare as compare_command
from .cli_report import report as report_command

app.command("report")(report_command)
app.command("compare")(compare_command)

console = Console()
err_console = Console(stderr=True)

# "\\[" in help texts: typer reads them as Rich markup, where a bare "[default: ...]" is a tag and vanishes.
DbOption = Annotated[str | None, typer.Option(
    "--db", help="Database URL, e.g. sqlite:///farm.db or postgresql+psycopg://user@host/db "
                 "\\[default: $FARM_DB_URL, else SQLite in the user data dir]")]
InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", "-i", help="Inventory: farm YAML, or Ansible INI, YAML or --list JSON \\[default: this machine only]")]


def _open(db: str | None):  # type: ignore[no-untyped-def]
    from .store import open_store

    return open_store(db)


@app.command()
def run(
    matrix: Annotated[str, typer.Option("--matrix", "-m", help="Matrix name; 'all' needs no file")] = "all",
    matrix_file: Annotated[Path | None, typer.Option("--matrix-file", help="YAML file of named matrices")] = None,
    inventory: InventoryOption = None,
    db: DbOption = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="Only these hosts (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only hosts with this tag (repeatable)")] = None,
    accept_new_host_keys: Annotated[bool, typer.Option(
        "--accept-new-host-keys", help="Trust and remember SSH host keys never seen before")] = False,
    known_hosts: Annotated[Path | None, typer.Option(
        "--known-hosts",
        help="known_hosts file for SSH hosts \\[default: the inventory's known_hosts, else ~/.ssh/known_hosts]")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue run RUN (default: the newest unfinished) whose controller died")] = False,
    run_arg: Annotated[int | None, typer.Argument(metavar="[RUN]", help="The run --resume continues")] = None,
) -> None:
    """Run a benchmark matrix on the inventory's hosts and store every result.

    One benchmark at a time on each host, all hosts at once; each result is
    stored as it finishes, with the host's Python and runtime versions. Cells
    a host cannot run (no runtime, no Edge TPU) are stored as skipped, with
    the reason. Exits with 1 when a job failed or a host was unreachable,
    3 when the run is incomplete (finish it with --resume; see README, Crash safety).

    Example: farm run --matrix all              # this machine alone
             farm run --matrix all -i lab.yaml  # an inventory's hosts
             farm run -m all -i "$(farm lab up --hosts 6 | tail -n 1)"
             farm run -m sweep --matrix-file matrices.yaml -i lab.yaml --tag lab-a
             farm run -m all -i lab.yaml --db postgresql+psycopg://127.0.0.1/test
             farm run --resume        # continue the newest run whose controller died
    """
    from .inventory import load_inventory
    from .matrix import load_matrix
    from .models import registry
    from .progress import RichObserver
    from .scheduler import Runner

    if resume or run_arg is not None:
        return _resume(resume, run_arg, inventory, db, host, tag, accept_new_host_keys, known_hosts)
    inv = load_inventory(inventory)
    spec = load_matrix(matrix, matrix_file)
    hosts = inv.select(host, tag)
    if spec.hosts or spec.tags:  # the matrix's own host selection narrows the command line's
        chosen = {h.name for h in inv.select(list(spec.hosts) or None, list(spec.tags) or None)}
        hosts = [h for h in hosts if h.name in chosen]
    store = _open(db)
    try:
        if not registry.list_models(store):
            console.print("No models registered yet: building the default suite "
                          f"({', '.join(f'{f} {v}' for f, v in registry.DEFAULT_SUITE)}).")
            registry.ensure_default_suite(store)
        models = registry.find_models(store, spec.models)
        options = _transport_options(accept_new_host_keys, known_hosts)
        with cli_resume.store_errors(store), RichObserver(console) as observer:
            runner = Runner(store, observer, options)
            runner.on_run_created = cli_resume.announcer(console)  # "Run N started": what --resume takes
            outcome = runner.run(spec, hosts, models, inv.path)
        code = cli_resume.report(console, err_console, store, outcome, _print_run_summary)
        if code:
            raise typer.Exit(code)
    finally:
        store.close()


def _resume(resume: bool, run_arg: int | None, inventory: Path | None, db: str | None, host: list[str] | None,
            tag: list[str] | None, accept_new_host_keys: bool, known_hosts: Path | None) -> None:
    from .progress import RichObserver

    if not resume:
        raise FarmError(f"a run number ({run_arg}) is only taken with --resume: farm run --resume {run_arg}")
    store = _open(db)
    try:
        options = _transport_options(accept_new_host_keys, known_hosts)
        with cli_resume.store_errors(store), RichObserver(console) as observer:
            outcome = cli_resume.resume_run(run_arg, inventory, store, host, tag, options, observer, console)
        code = cli_resume.report(console, err_console, store, outcome, _print_run_summary)
        if code:
            raise typer.Exit(code)
    finally:
        store.close()


def _transport_options(accept_new_host_keys: bool, known_hosts: Path | None) -> dict:
    """The command line's options; without --known-hosts each host's inventory names its file (or none)."""
    options: dict = {"accept_new_host_keys": accept_new_host_keys}
    if known_hosts is not None:
        options["known_hosts"] = known_hosts
    return options


def _print_run_summary(store, run_id: int) -> None:  # type: ignore[no-untyped-def]
    from .results import ResultFilter, results_frame

    frame = results_frame(store, ResultFilter(runs=(run_id,), status="all"))
    table = Table(title=f"Run {run_id}")
    # Power mode and USB port columns only for runs that have those dimensions.
    extra = [c for c in ("power_mode", "usb_port") if not frame.empty and frame[c].notna().any()]
    for column in ("host", "model", "delegate", "threads", *extra, "status", "median ms", "p90 ms", "GOPS",
                   "samples"):
        table.add_column(column, justify="right" if column[0].islower() and " " in column else "left")
    for row in frame.itertuples():
        if row.status == "succeeded":
            cells = [f"{row.median_ms:.3f}", f"{row.p90_ms:.3f}", _fmt(row.gops), str(row.samples)]
        else:
            cells = [(row.reason or "")[:60], "", "", ""]
        dims = [_cell(getattr(row, c)) for c in extra]
        table.add_row(row.host, row.model, row.delegate, str(row.threads), *dims, row.status, *cells)
    console.print(table)


def _fmt(value: object) -> str:
    try:
        return f"{float(value):.2f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


@app.command()
def results(
    db: DbOption = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="Filter by host (repeatable)")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Filter by model name or family")] = None,
    delegate: Annotated[list[str] | None, typer.Option("--delegate", help="cpu or edgetpu")] = None,
    threads: Annotated[list[int] | None, typer.Option("--threads", help="Filter by thread count")] = None,
    run_id: Annotated[list[int] | None, typer.Option("--run", help="Filter by run id")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the newest run")] = False,
    status: Annotated[str, typer.Option("--status", help="succeeded, failed, skipped, or all")] = "succeeded",
    output_format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file")] = None,
    power_mode: Annotated[list[str] | None, typer.Option("--power-mode", help="Requested mode, e.g. 5W")] = None,
    usb_speed: Annotated[list[int] | None, typer.Option("--usb-speed", help="Mb/s: 480 (USB2), 5000 (USB3)")] = None,
    group_by: Annotated[list[str] | None, typer.Option("--group-by", help="power_mode, usb_speed, host, ...")] = None,
) -> None:
    """Show or export stored results, one row per job with its context.

    Example: farm results --model conv_stack --threads 1 --format csv -o conv.csv

    Every cell, run or not, with its reason: farm results --status all --format json

    By power mode and USB speed: farm results --power-mode 5W --usb-speed 480 --group-by power_mode --group-by usb_speed
    """
    from .results import GROUPS, STATUSES, ResultFilter, grouped, results_frame

    if status not in STATUSES:
        raise FarmError(f"--status must be one of {', '.join(STATUSES)}, not '{status}'")
    _check_format(output_format)
    store = _open(db)
    try:
        frame = results_frame(store, ResultFilter(tuple(host or ()), tuple(model or ()), tuple(delegate or ()),
                                                  tuple(threads or ()), tuple(run_id or ()), status, latest,
                                                  tuple(power_mode or ()), tuple(usb_speed or ())))
    finally:
        store.close()
    if group_by:
        bad = [g for g in group_by if g not in GROUPS]
        if bad:
            raise FarmError(f"--group-by {bad[0]}: choose from {', '.join(GROUPS)}")
        frame = grouped(frame, list(group_by))
        _emit(frame, output_format, output)
        return
    columns = ["run", "host", "model", "delegate", "threads", "power_mode", "usb_port", "usb_speed", "status",
               "median_ms", "p90_ms", "gops", "samples", "runtime", "runtime_version", "python"]
    _emit(frame[columns] if output_format == "table" and not frame.empty else frame, output_format, output)


def _print_frame(frame, columns: list[str]) -> None:  # type: ignore[no-untyped-def]
    if frame.empty:
        console.print("No rows match.")
        return
    table = Table()
    for column in columns:
        table.add_column(column)
    for _, row in frame[columns].iterrows():
        table.add_row(*[_cell(row[c]) for c in columns])
    console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="A SELECT statement; name parameters as :name")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, bound, never pasted")] = None,
    db: DbOption = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
) -> None:
    """Run read-only SQL on the store (try the v_results view); writes are refused.

    Example: farm query "SELECT host, threads, median_ms FROM v_results WHERE model = :m" -p m=conv_stack-l1
    """
    from .query import read_only_query

    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise FarmError(f"--param must be NAME=VALUE, not '{item}'")
        params[name] = value
    _check_format(output_format)
    store = _open(db)
    try:
        frame = read_only_query(store, sql, params)
    finally:
        store.close()
    _emit(frame, output_format, None)


def _check_format(output_format: str) -> None:
    if output_format not in ("table", "csv", "json"):
        raise FarmError(f"--format must be table, csv or json, not '{output_format}'")


def _emit(frame, output_format: str, output: Path | None) -> None:  # type: ignore[no-untyped-def]
    if output_format == "csv":
        text = frame.to_csv(index=False)
    elif output_format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1)
    elif output_format == "table":
        _print_frame(frame, list(frame.columns))
        return
    else:
        raise FarmError(f"--format must be table, csv or json, not '{output_format}'")
    if output:
        output.write_text(text)
        err_console.print(f"{len(frame)} rows written to {output}")
    else:
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Migrate the database to the schema this farm needs.

    Example: farm db upgrade --db postgresql+psycopg://127.0.0.1:5432/test
    """
    from .store import db as store_db

    url = db or store_db.default_db_url()
    before, after = store_db.upgrade(url)
    if before == after:
        console.print(f"{store_db.safe_url(url)} is already at schema {after}.")
    else:
        console.print(f"{store_db.safe_url(url)} migrated from {before or 'empty'} to {after}.")


@inventory_app.command("show")
def inventory_show(inventory: InventoryOption = None) -> None:
    """Validate an inventory and list its hosts.

    Example: farm inventory show --inventory inventory/example.yaml
    """
    from .inventory import load_inventory

    inv = load_inventory(inventory)
    table = Table(title=f"{inv.path} ({inv.kind})")
    for column in ("name", "transport", "address", "port", "user", "board", "python", "tags"):
        table.add_column(column)
    for h in inv.hosts:
        table.add_row(h.name, h.transport, h.address, str(h.port), h.user or "", h.board or "", h.python,
                      ", ".join(h.tags))
    console.print(table)


@inventory_app.command("convert")
def inventory_convert(
    inventory: InventoryOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write \\[default: print it]")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output file if it exists")] = False,
) -> None:
    """Write an inventory (an Ansible INI, YAML or --list JSON one) as farm YAML.

    Example: farm inventory convert -i hosts.ini -o farm.yaml
    """
    from .inventory import load_inventory
    from .inventory_writer import farm_yaml, save

    inv = load_inventory(inventory)
    text = farm_yaml(inv)
    if output is None:
        typer.echo(text, nl=False)
        return
    save(text, output, force=force)
    console.print(f"Wrote {len(inv.hosts)} host(s) from {inv.path} ({inv.kind}) to {output}.")


@inventory_app.command("check")
def inventory_check(
    inventory: InventoryOption = None,
    db: DbOption = None,
    accept_new_host_keys: Annotated[bool, typer.Option(
        "--accept-new-host-keys", help="Trust and remember SSH host keys never seen before")] = False,
    known_hosts: Annotated[Path | None, typer.Option(
        "--known-hosts",
        help="known_hosts file for SSH hosts \\[default: the inventory's known_hosts, else ~/.ssh/known_hosts]")] = None,
) -> None:
    """Reach every host at once, deploy the agent, store and show its facts.

    Shows per host: reachable or why not, board, OS, Python, TFLite runtime
    and version, CPUs, whether the agent was uploaded, and what the host
    says that contradicts the inventory. Exits with 1 if a host is
    unreachable. Unknown SSH host keys are refused until you check them and
    pass --accept-new-host-keys once.

    Example: farm inventory check -i lab.yaml
             farm inventory check -i "$(farm lab up --hosts 6 | tail -n 1)"
             farm inventory check -i lab.yaml --accept-new-host-keys
             farm inventory check -i lab.yaml --known-hosts ~/.ssh/farm_known_hosts
    """
    from .facts_check import check_hosts
    from .inventory import load_inventory

    inv = load_inventory(inventory)
    store = _open(db)
    try:
        with console.status(f"checking {len(inv.hosts)} host(s)"):
            checks = check_hosts(list(inv.hosts), _transport_options(accept_new_host_keys, known_hosts),
                                  store)
    finally:
        store.close()
    table = Table(title=f"{inv.path} ({inv.kind})")
    for column in ("host", "reachable", "board", "OS", "Python", "runtime", "CPUs", "agent", "notes"):
        table.add_column(column)
    for check in checks:
        facts = check.facts
        runtime = facts.get("runtime") or {}
        runtime_text = f"{runtime.get('name')} {runtime.get('version')}" if runtime.get("name") else "[red]none[/red]"
        if check.reachable:
            table.add_row(check.host.name, "yes", facts.get("board") or f"({check.host.board or '?'})",
                          facts.get("os") or "", (facts.get("python") or {}).get("version", ""), runtime_text,
                          str(facts.get("cpu_count", "")), "uploaded" if check.uploaded_agent else "present",
                          "; ".join(check.contradictions))
        else:
            table.add_row(check.host.name, "[red]no[/red]", check.host.board or "", "", "", "", "", "",
                          check.error or "")
    console.print(table)
    down = [c for c in checks if not c.reachable]
    console.print(f"{len(checks) - len(down)} of {len(checks)} host(s) reachable.")
    if down:
        raise typer.Exit(1)


def main() -> None:
    from .lab_command import register_lab

    register_lab(app)
    try:
        app()
    except FarmError as exc:
        # escape: "[web:vars]" or "www[01:50]" in a message is the user's text, not Rich markup
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
