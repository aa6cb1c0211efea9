"""`farm nightly`: regression runs that fire on toolchain changes, and their schedule."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import FarmError
from .options import (
    AcceptNewHostKeysOption,
    DbOption,
    InventoryOption,
    KnownHostsOption,
    MatrixFileOption,
    transport_options,
)
from .output import STATE_STYLE, console, err_console

nightly_app = typer.Typer(
    help="Nightly regression runs: probe toolchains, run the `nightly` matrix in trials, judge every cell "
         "against its baseline.\n\nExample: farm nightly --matrix-file matrices.yaml --junit nightly.xml",
    invoke_without_command=True, no_args_is_help=False)



@nightly_app.callback()
def nightly(
    ctx: typer.Context,
    matrix: Annotated[str, typer.Option("--matrix", "-m", help="Regression matrix \\[default: 'nightly' from "
                                        "--matrix-file, else 'all']")] = "nightly",
    matrix_file: MatrixFileOption = None,
    inventory: InventoryOption = None,
    db: DbOption = None,
    force: Annotated[bool, typer.Option("--force", help="Run even when no toolchain changed")] = False,
    every_night: Annotated[bool, typer.Option(
        "--every-night", help="Always run (for teams that want numbers every night); still records changes")] = False,
    trials: Annotated[int | None, typer.Option(
        "--trials", min=2, max=20, help="Separate runs of the matrix; slow drifts between them count as noise "
        "\\[default: the matrix's regression.trials, else 3]")] = None,
    min_effect: Annotated[float | None, typer.Option(
        "--min-effect", min=0.0, max=10.0, help="Smallest relative change reported, e.g. 0.05 = 5% "
        "\\[default: the matrix's regression.min_effect, else 0.05]")] = None,
    alpha: Annotated[float | None, typer.Option(
        "--alpha", min=1e-9, max=0.5, help="Significance level of the Mann-Whitney U test "
        "\\[default: the matrix's regression.alpha, else 0.002]")] = None,
    retry_disturbed: Annotated[int, typer.Option(
        "--retry-disturbed", min=0, max=10, metavar="N",
        help="Rounds of re-runs for cells whose trials others disturbed, before judging; a cell left with fewer "
             "than a majority of clean trials is invalid (disturbed: ...), never regressed")] = 2,
    confirm: Annotated[int | None, typer.Option(
        "--confirm", min=0, max=10, metavar="N",
        help="Trials run again, at once, of a cell that looks regressed or improved; the verdict stands only if it "
             "still holds with them pooled in (0: judge at once) \\[default: the matrix's regression.confirm, else 3]")] = None,
    reference_baseline: Annotated[bool, typer.Option(
        "--reference-baseline", help="Judge cells that match a published reference (farm reference import) "
                                     "against it instead of their stored baseline")] = False,
    reference_band: Annotated[float, typer.Option(
        "--reference-band", min=0.0, max=10.0, help="With --reference-baseline: regressed above 1 + band, "
                                                    "improved below 1 - band (pycoral allows 0.30)")] = 0.30,
    compiler: Annotated[str | None, typer.Option(
        "--compiler", help="edgetpu_compiler to probe and to recompile with \\[default: $FARM_EDGETPU_COMPILER, else "
        "edgetpu_compiler on PATH]")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown report here")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here (regressions fail)")] = None,
    notify_url: Annotated[str | None, typer.Option("--notify", help="POST a JSON summary (Slack-compatible "
                                                   "'text' field) to this URL; retried on failure")] = None,
    accept_new_host_keys: AcceptNewHostKeysOption = False,
    known_hosts: KnownHostsOption = None,
) -> None:
    """Run the nightly regression check. Exit 0: nothing regressed; 1: something did; 2: usage or input error
    (a matrix file that is not there: the --junit file still says so); 4: the farm measured nothing.

    Each trial's run is labelled with the nightly, the trial and the toolchain changes seen
    (farm results --label toolchain.libedgetpu).

    Example: farm nightly --matrix-file matrices.yaml --junit out/nightly.xml --html out/nightly.html
             farm nightly install --at 02:30
    """
    if ctx.invoked_subcommand is not None:
        return
    from datetime import datetime, timezone

    from ..nightly import outputs
    from ..nightly.triggers import recompile_for, toolchain_probe
    from ..store import open_store

    started = datetime.now(timezone.utc)
    try:
        inv, spec = _inputs(inventory, matrix, matrix_file)
        store = open_store(db)
    except FarmError as exc:
        # A CI server reading --junit must see why, not "no test report": the error is a test case.
        from ..exit_codes import for_exception

        if junit is not None:
            outputs.write_text(junit, outputs.junit_error_xml(str(exc), for_exception(exc), started))
            err_console.print(f"wrote {junit}")
        raise
    try:
        from ..nightly.runner import Settings, run_nightly
        from ..run_models import models_for_run

        models = models_for_run(store, spec)
        chosen = {"trials": trials, "min_effect": min_effect, "alpha": alpha, "confirm": confirm}
        settings = Settings(**{key: spec.regression[key] for key in chosen if key in spec.regression},
                            force=force, every_night=every_night, retry_disturbed=retry_disturbed,
                            reference_baseline=reference_baseline, reference_band=reference_band)
        for key, value in chosen.items():
            if value is not None:
                setattr(settings, key, value)
        settings.trials, settings.confirm = int(settings.trials), int(settings.confirm)
        options = transport_options(accept_new_host_keys, known_hosts)

        def recompile(triggers: list[dict]) -> list:
            return recompile_for(store, triggers, compiler, say=lambda text: err_console.print(f"[yellow]{text}"))

        with _observer() as observer:
            outcome = run_nightly(store, spec, inv.hosts, models, inv.path, settings, toolchain_probe(options, compiler),
                                  observer, options, before_runs=recompile)
    finally:
        store.close()
    _print_outcome(outcome)
    for path, render in ((markdown, outputs.markdown), (html_path, outputs.html_report), (junit, outputs.junit_xml)):
        if path is not None and (outcome.ran or render is outputs.junit_xml):
            if not outcome.ran and outcome.exit_code:  # failed before any run: say why as the JUnit's error
                outputs.write_text(path, outputs.junit_error_xml(outcome.message, outcome.exit_code,
                                                                 outcome.started_at, outcome.properties))
            elif outcome.ran:
                outputs.write_text(path, render(outcome))
            else:
                continue  # idle: nothing changed, nothing ran, no report
            console.print(f"wrote {path}")
    if notify_url:
        try:
            outputs.notify(notify_url, outcome)
        except outputs.NotifyError as exc:
            # The verdict is already stored; a failed notification must not change the exit code's meaning.
            err_console.print(f"[yellow]notification not delivered[/yellow]: {exc} (the verdict is stored in "
                              f"nightly #{outcome.nightly_id})")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _inputs(inventory: Path | None, matrix: str, matrix_file: Path | None):  # type: ignore[no-untyped-def]
    from ..inventory import load_inventory
    from ..matrix import load_matrix

    if matrix_file is not None and not matrix_file.exists():
        raise FarmError(f"{matrix_file}: the matrix file does not exist")
    inv = load_inventory(inventory)
    if matrix == "nightly" and (matrix_file is None or not _defines(matrix_file, "nightly")):
        console.print("No matrix named 'nightly' in a --matrix-file: using 'all'.")
        matrix = "all"
    return inv, load_matrix(matrix, matrix_file)


def _observer():  # type: ignore[no-untyped-def]
    """Progress in a terminal; in cron's log or a CI job, a line per finished job as it finishes."""
    import sys

    from ..progress import LineObserver, RichObserver

    return RichObserver(console) if console.is_terminal else LineObserver(sys.stdout)


def _defines(matrix_file: Path, name: str) -> bool:
    from ..matrix import load_matrix

    try:
        load_matrix(name, matrix_file)
    except FarmError:
        return False
    return True


def _print_outcome(outcome) -> None:  # type: ignore[no-untyped-def]
    from ..nightly import outputs

    if not outcome.ran:
        console.print(f"farm nightly #{outcome.nightly_id}: {outcome.message}")
        return
    table = Table(title=f"Nightly #{outcome.nightly_id} (runs {', '.join(map(str, outcome.run_ids))})")
    for column in ("cell", "state", "baseline ms", "tonight ms", "ratio", "detail", "likely cause"):
        table.add_column(column, justify="right" if "ms" in column or column == "ratio" else "left")
    for row in outputs.rows(outcome):
        style = STATE_STYLE.get(row["state"], "")
        state = row["state"] + (" · drifting" if row["drift"] else "")
        table.add_row(row["cell"], f"[{style}]{state}[/{style}]" if style else state, outputs._ms(row["baseline_ms"]),
                      outputs._ms(row["tonight_ms"]), outputs._ratio(row["ratio"]), row["detail"],
                      outputs._cause_text(row))
    console.print(table)
    console.print(outputs.summary_text(outcome).splitlines()[0])
    for line in outputs.cause_lines(outcome):
        console.print(f"  toolchain change: {line}")


@nightly_app.command("install")
def nightly_install(
    at: Annotated[str, typer.Option("--at", help="Time of day, HH:MM (24 h)")] = "02:00",
    systemd: Annotated[bool, typer.Option("--systemd", help="A systemd user timer (default where systemd runs)")] = False,
    cron: Annotated[bool, typer.Option("--cron", help="A line in your crontab")] = False,
    args: Annotated[list[str] | None, typer.Argument(help="Options passed to `farm nightly`, after --")] = None,
) -> None:
    """Schedule `farm nightly` every day with systemd or cron. Installing again replaces the entry.

    Example: farm nightly install --at 02:30 --cron -- --matrix-file /srv/farm/matrices.yaml --junit /srv/farm/n.xml
    """
    from ..nightly import schedule

    if systemd and cron:
        raise FarmError("choose one of --systemd and --cron")
    use_cron = cron or (not systemd and not Path("/run/systemd/system").exists())
    workdir = Path.cwd()
    if use_cron:
        log = Path(os.environ.get("FARM_DATA_DIR") or Path.home() / ".local/state/farm") / "nightly.log"
        entry = schedule.install_cron(at, list(args or []), workdir, log)
        console.print(f"crontab: `farm nightly` every day at {entry.at}; output appended to {log}")
    else:
        entry, note = schedule.install_systemd(at, list(args or []), workdir)
        console.print(f"systemd user timer {schedule.UNIT}.timer in {entry.where}: every day at {entry.at}")
        console.print(note)
    for line in schedule.describe(entry):
        console.print(f"  {line}", markup=False)


@nightly_app.command("uninstall")
def nightly_uninstall() -> None:
    """Remove exactly what `farm nightly install` wrote (timer files or crontab line), nothing else.

    Example: farm nightly uninstall
    """
    from ..nightly import schedule

    removed = schedule.uninstall_systemd()
    if removed:
        console.print(f"removed {removed} systemd unit file(s) from {schedule.systemd_dir()}")
    cron_removed = schedule.uninstall_cron() if _has_crontab() else 0
    if cron_removed:
        console.print(f"removed {cron_removed} crontab line(s)")
    if not removed and not cron_removed:
        console.print("no farm nightly schedule was installed")


def _has_crontab() -> bool:
    import shutil

    return shutil.which("crontab") is not None


@nightly_app.command("status")
def nightly_status(db: DbOption = None) -> None:
    """Show the installed schedule, the next run, and the last nightly runs with their verdicts.

    Example: farm nightly status
    """
    from sqlalchemy import select

    from ..nightly import schedule
    from ..store import open_store
    from ..store.schema import NightlyRow

    entries = schedule.installed()
    now = datetime.now().astimezone()
    if not entries:
        console.print("No schedule installed (see `farm nightly install --help`).")
    for entry in entries:
        console.print(f"{entry.kind}: every day at {entry.at}; next run {schedule.next_run(entry.at, now):%Y-%m-%d %H:%M}"
                      f" ({entry.where})")
        for line in schedule.describe(entry):
            console.print(f"  {line}", markup=False)
    # The runs to list are in the database the schedule writes to, unless told otherwise.
    store = open_store(db or os.environ.get("FARM_DB_URL") or schedule.recorded_db_url(entries))
    try:
        with store.session() as session:
            last = list(session.scalars(select(NightlyRow).order_by(NightlyRow.id.desc()).limit(5)))
    finally:
        store.close()
    table = Table(title="Last nightly runs")
    for column in ("#", "started", "status", "exit", "runs", "outcome"):
        table.add_column(column)
    for row in last:
        table.add_row(str(row.id), f"{row.started_at:%Y-%m-%d %H:%M}", row.status, str(row.exit_code),
                      ", ".join(map(str, row.run_ids or [])), row.message or "")
    console.print(table)
