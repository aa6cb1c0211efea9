"""`farm report` and `farm compare`: the seeds' tables and plots from stored results, and run-vs-run verdicts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import FarmError

console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL \\[default: $FARM_DB_URL, else SQLite]")]
STATE_STYLE = {"regressed": "red", "improved": "green", "invalid": "yellow", "missing": "yellow", "new": "cyan"}


def report(
    db: DbOption = None,
    run_id: Annotated[list[int] | None, typer.Option("--run", help="These runs (repeatable)")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the newest run left by the other run options "
                                         "[the default when no run option is given]")] = False,
    all_runs: Annotated[bool, typer.Option("--all-runs", help="Every run (newest result per cell)")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Runs started on or after, YYYY-MM-DD[THH:MM]")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Runs started before (a bare date includes that "
                                              "day), YYYY-MM-DD[THH:MM]")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Runs with this tag (repeatable: all of them)")] = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="Only these hosts (repeatable)")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Model names or families (repeatable)")] = None,
    delegate: Annotated[list[str] | None, typer.Option("--delegate", help="cpu or edgetpu (repeatable)")] = None,
    threads: Annotated[list[int] | None, typer.Option("--threads", help="Thread counts (repeatable)")] = None,
    power_mode: Annotated[list[str] | None, typer.Option("--power-mode", help="Power modes (repeatable)")] = None,
    usb_speed: Annotated[list[int] | None, typer.Option("--usb-speed", help="USB speed in Mb/s: 480 (USB2), "
                                                        "5000 (USB3) (repeatable)")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write Markdown here (plots as PNGs in "
                                                  "NAME_plots/ beside it)")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write one self-contained HTML file here "
                                                   "(plots embedded, opens offline)")] = None,
    export_path: Annotated[Path | None, typer.Option("--export", help="Also write the selected rows of v_results "
                                                     "to .csv or .parquet")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No tables in the terminal")] = False,
) -> None:
    """See REPORT_HELP."""
    from .report import Selection, build_report, export, parse_when
    from .report.render import to_html, to_markdown, to_terminal
    from .store import open_store

    by_run = bool(run_id or since or until or tag)
    if all_runs and (by_run or latest):
        raise FarmError("--all-runs cannot be combined with --run, --latest, --since, --until or --tag")
    selection = Selection(
        runs=tuple(run_id or ()), latest=latest or not (by_run or all_runs),
        since=parse_when(since) if since else None, until=parse_when(until, end_of_day=True) if until else None,
        tags=tuple(tag or ()), hosts=tuple(host or ()), models=tuple(model or ()), delegates=tuple(delegate or ()),
        threads=tuple(threads or ()), power_modes=tuple(power_mode or ()), usb_speeds=tuple(usb_speed or ()))
    store = open_store(db)
    try:
        built = build_report(store, selection, with_plots=bool(markdown or html_path))
        if export_path:
            from .report.data import load_results

            written = export(load_results(store, selection), export_path)
            err_console.print(f"{built.rows} rows written to {export_path} ({written})")
    finally:
        store.close()
    if not quiet:
        to_terminal(built, console)
    if markdown:
        files = to_markdown(built, markdown)
        err_console.print(f"Markdown written to {markdown} ({len(files) - 1} plot(s))")
    if html_path:
        html_path.write_text(to_html(built))
        err_console.print(f"HTML written to {html_path} ({len(built.plots)} plot(s) embedded)")


def compare(
    a: Annotated[str, typer.Argument(help="Reference run id, or trials as 12,13,14")],
    b: Annotated[str | None, typer.Argument(help="Run id(s) judged against A; leave out with --baseline")] = None,
    baseline: Annotated[bool, typer.Option("--baseline", help="Compare run(s) A with each cell's accepted "
                                           "baseline (farm baseline show) instead of a second run")] = False,
    db: DbOption = None,
    min_effect: Annotated[float, typer.Option("--min-effect", min=0.0, max=10.0,
                                              help="Smallest relative change that can count, 0.05 = 5%")] = 0.05,
    alpha: Annotated[float, typer.Option("--alpha", min=1e-9, max=0.5,
                                         help="Significance level of the Mann-Whitney U test")] = 0.002,
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression",
                                                     help="Exit 1 when any cell regressed")] = False,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
) -> None:
    """See COMPARE_HELP."""
    from .compare import compare_runs, compare_to_baselines, parse_runs
    from .store import open_store

    if output_format not in ("table", "csv", "json"):
        raise FarmError(f"--format must be table, csv or json, not '{output_format}'")
    if baseline and b is not None:
        raise FarmError("give either B or --baseline, not both")
    if not baseline and b is None:
        raise FarmError("name a second run B to compare with A, or use --baseline (e.g. farm compare 12 15)")
    a_runs = parse_runs(a, "A")
    store = open_store(db)
    try:
        if baseline:
            rows = compare_to_baselines(store, a_runs, min_effect=min_effect, alpha=alpha)
        else:
            rows = compare_runs(store, a_runs, parse_runs(b or "", "B"), min_effect=min_effect, alpha=alpha)
    finally:
        store.close()
    _print(rows, output_format, "baseline" if baseline else f"run {a}", f"run {a}" if baseline else f"run {b}")
    if fail_on_regression and any(r.state == "regressed" for r in rows):
        raise typer.Exit(1)


def _print(rows, output_format: str, a_name: str, b_name: str) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    frame = pd.DataFrame([vars(r) for r in rows], columns=["label", "lineage_key", "a_ms", "b_ms", "ratio",
                                                           "p_value", "threshold", "state", "detail"])
    if output_format == "csv":
        console.file.write(frame.to_csv(index=False))
        return
    if output_format == "json":
        console.file.write(frame.to_json(orient="records", indent=1) + "\n")
        return
    table = Table(title=f"{b_name} against {a_name}")
    for column, justify in (("cell", "left"), (f"{a_name} ms", "right"), (f"{b_name} ms", "right"),
                            ("ratio", "right"), ("p", "right"), ("verdict", "left"), ("why", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        style = STATE_STYLE.get(r.state)
        table.add_row(r.label, _num(r.a_ms), _num(r.b_ms), _num(r.ratio, "{:.3f}"), _num(r.p_value, "{:.2g}"),
                      f"[{style}]{r.state}[/{style}]" if style else r.state, r.detail)
    console.print(table)
    counts = pd.Series([r.state for r in rows]).value_counts()
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) or "No cells to compare.")


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


# Typer keeps the docstring's line breaks, so each paragraph is one string here.
REPORT_HELP = (
    "Build the seeds' tables and plots from stored results: latency (median, p90), thread sweep, Edge TPU "
    "speed-up over CPU, achieved GOPS/TOPS, the compiler report, and latency-vs-layers and thread-sweep charts."
    "\n\n"
    "Tables show only the dimensions the data has; a cell measured in several selected runs shows its newest "
    "result. Without a run option the newest run is reported."
    "\n\n"
    "Examples:\n"
    "  farm report\n"
    "  farm report --tag lab-a --since 2026-11-01 --html report.html\n"
    "  farm report --run 12 --run 13 --delegate edgetpu --markdown report.md\n"
    "  farm report --all-runs --model conv_stack --export conv.parquet"
)
COMPARE_HELP = (
    "Two runs side by side, cell by cell: medians, ratio B/A, and whether the change is beyond noise."
    "\n\n"
    "The test is the nightly job's: Mann-Whitney U on all timed samples of a cell (a rank test, because latency "
    "samples are skewed and long-tailed) at a strict alpha of 0.002, since invokes within one run share the "
    "machine's state and are not independent. A cell regressed (or improved) only if, in addition, its median "
    "moved by at least --min-effect and by more than twice the spread between trials on either side, with every "
    "trial of B beyond every trial of A. Give several runs per side (12,13,14) to make that spread count."
    "\n\n"
    "Examples:\n"
    "  farm compare 12 15\n"
    "  farm compare 12,13,14 20,21,22 --fail-on-regression\n"
    "  farm compare 20 --baseline"
)
report.__doc__ = REPORT_HELP
compare.__doc__ = COMPARE_HELP
