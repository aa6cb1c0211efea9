"""`farm report`: the seeds' tables and plots from stored results, in the terminal, Markdown or HTML."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FarmError
from .options import (
    DbOption,
    DelegatesOption,
    HostsOption,
    ModelsOption,
    PowerModesOption,
    RunLabelsOption,
    RunsOption,
    RunTagsOption,
    SinceOption,
    ThreadsOption,
    UntilOption,
    UsbSpeedsOption,
    result_filter,
)
from .output import console, err_console


class Stat(str, Enum):
    median = "median"
    mean = "mean"
    p90 = "p90"


def report(
    db: DbOption = None,
    run_id: RunsOption = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the newest run left by the other run options "
                                         "[the default when no run option is given]")] = False,
    all_runs: Annotated[bool, typer.Option("--all-runs", help="Every run (newest result per cell)")] = False,
    since: SinceOption = None,
    until: UntilOption = None,
    tag: RunTagsOption = None,
    label: RunLabelsOption = None,
    host: HostsOption = None,
    model: ModelsOption = None,
    delegate: DelegatesOption = None,
    threads: ThreadsOption = None,
    power_mode: PowerModesOption = None,
    usb_speed: UsbSpeedsOption = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write Markdown here (plots as PNGs in "
                                                  "NAME_plots/ beside it)")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write one self-contained HTML file here "
                                                   "(plots embedded, opens offline)")] = None,
    export_path: Annotated[Path | None, typer.Option("--export", help="Also write the selected rows of v_results "
                                                     "to .csv or .parquet")] = None,
    stat: Annotated[Stat, typer.Option("--stat", help="Centre of the latency and thread-sweep tables and plots: "
                                       "median (with p90), mean (with std; SEEDS §1 tabled means) or p90 "
                                       "(with p99)")] = "median",  # type: ignore[assignment]
    reference_band: Annotated[float, typer.Option("--reference-band", min=0.0, max=10.0,
                                                  help="Flag a result further than this fraction from its "
                                                  "published reference (pycoral allows 0.30)")] = 0.30,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No tables in the terminal")] = False,
    include_invalid: Annotated[bool, typer.Option(
        "--include-invalid", help="Compute speed-ups from invalid results too (cut short, too few runs, throttled)")
    ] = False,
) -> None:
    """See REPORT_HELP."""
    from ..report import build_report
    from ..report.render import to_html, to_markdown, to_terminal
    from ..results import export, results_frame
    from ..store import open_store

    by_run = bool(run_id or since or until or tag or label)
    if all_runs and (by_run or latest):
        raise FarmError("--all-runs cannot be combined with --run, --latest, --since, --until, --tag or --label")
    selection = result_filter(run_id=run_id, since=since, until=until, tag=tag, label=label, host=host, model=model,
                              delegate=delegate, threads=threads, power_mode=power_mode, usb_speed=usb_speed,
                              latest=latest or not (by_run or all_runs))
    store = open_store(db)
    try:
        built = build_report(store, selection, with_plots=bool(markdown or html_path), stat=Stat(stat).value,
                             reference_band=reference_band, include_invalid=include_invalid)
        if export_path:
            written = export(results_frame(store, selection), export_path)
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


# Typer keeps the docstring's line breaks, so each paragraph is one string here.
REPORT_HELP = (
    "Build the seeds' tables and plots from stored results: latency (median, p90), thread sweep, Edge TPU "
    "speed-up over CPU, achieved GOPS/TOPS, the compiler report, published references beside the results, and "
    "latency-vs-layers and thread-sweep charts with error bars."
    "\n\n"
    "Tables show only the dimensions the data has; a cell measured in several selected runs shows its newest "
    "result. Without a run option the newest run is reported; --label KEY=VALUE reports every run "
    "labelled so (farm run --label), --tag every run tagged so (the nightly's runs are tagged nightly)."
    "\n\n"
    "Examples:\n"
    "  farm report\n"
    "  farm report --label commit=3f2a9c1 --since 2026-11-01 --html report.html\n"
    "  farm report --run 12 --run 13 --delegate edgetpu --markdown report.md\n"
    "  farm report --all-runs --model conv_stack --export conv.parquet\n"
    "  farm report --stat mean --reference-band 0.2   (after farm reference import)"
)
report.__doc__ = REPORT_HELP
