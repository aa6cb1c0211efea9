"""`farm compare`: two runs (or runs and their baselines) side by side, with verdicts beyond noise."""

from __future__ import annotations

import math
from typing import Annotated

import typer
from rich.table import Table

from ..errors import FarmError
from .options import DbOption, FormatOption, check_format
from .output import STATE_STYLE, console


def compare(
    a: Annotated[str, typer.Argument(help="Reference run id, trials as 12,13,14, or the runs labelled KEY=VALUE")],
    b: Annotated[str | None, typer.Argument(help="Run id(s) or a KEY=VALUE label judged against A; leave out "
                                            "with --baseline")] = None,
    baseline: Annotated[bool, typer.Option("--baseline", help="Compare run(s) A with each cell's accepted "
                                           "baseline (farm baseline show) instead of a second run")] = False,
    db: DbOption = None,
    min_effect: Annotated[float, typer.Option("--min-effect", min=0.0, max=10.0,
                                              help="Smallest relative change that can count, 0.05 = 5%")] = 0.05,
    alpha: Annotated[float, typer.Option("--alpha", min=1e-9, max=0.5,
                                         help="Significance level of the Mann-Whitney U test")] = 0.002,
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression",
                                                     help="Exit 1 when any cell regressed")] = False,
    include_disturbed: Annotated[bool, typer.Option(
        "--include-disturbed", help="Judge results measured while others used their CPUs too")] = False,
    include_invalid: Annotated[bool, typer.Option(
        "--include-invalid", help="Judge results that broke a validity rule (cut short, too few runs, throttled)")
    ] = False,
    output_format: FormatOption = "table",
) -> None:
    """See COMPARE_HELP."""
    from ..compare import compare_runs, compare_to_baselines
    from ..store import open_store

    check_format(output_format)
    if baseline and b is not None:
        raise FarmError("give either B or --baseline, not both")
    if not baseline and b is None:
        raise FarmError("name a second run B to compare with A, or use --baseline (e.g. farm compare 12 15)")
    store = open_store(db)
    try:
        a_runs = side_runs(store, a, "A")
        if baseline:
            rows = compare_to_baselines(store, a_runs, min_effect=min_effect, alpha=alpha,
                                        include_disturbed=include_disturbed, include_invalid=include_invalid)
        else:
            rows = compare_runs(store, a_runs, side_runs(store, b or "", "B"), min_effect=min_effect, alpha=alpha,
                                include_disturbed=include_disturbed, include_invalid=include_invalid)
    finally:
        store.close()
    _print(rows, output_format, "baseline" if baseline else f"run {a}", f"run {a}" if baseline else f"run {b}")
    if fail_on_regression and any(r.state == "regressed" for r in rows):
        raise typer.Exit(1)


def side_runs(store, text: str, what: str) -> list[int]:  # type: ignore[no-untyped-def]
    """A side's runs: ids ("12" or "12,13,14"), or every run carrying the labels ("commit=abc" or
    "commit=abc,board=nano"), chosen by the same filter `farm results --label` uses."""
    from ..compare import parse_runs
    from ..results import select_runs
    from .options import result_filter

    if "=" not in text:
        return parse_runs(text, what)
    selectors = [part.strip() for part in text.split(",") if part.strip()]
    chosen = select_runs(store, result_filter(run_id=None, since=None, until=None, tag=None, host=None, model=None,
                                              delegate=None, threads=None, power_mode=None, usb_speed=None,
                                              label=selectors))
    if not chosen:
        raise FarmError(f"{what}: no run is labelled {text}; see `farm results --status all --format json` "
                        "(run_labels) for the labels runs carry")
    return chosen


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
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
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
COMPARE_HELP = (
    "Two runs side by side, cell by cell: medians, ratio B/A, and whether the change is beyond noise."
    "\n\n"
    "The test is the nightly job's: Mann-Whitney U on all timed samples of a cell (a rank test, because latency "
    "samples are skewed and long-tailed) at a strict alpha of 0.002, since invokes within one run share the "
    "machine's state and are not independent. A cell regressed (or improved) only if, in addition, its median "
    "moved by at least --min-effect and by more than twice the spread between trials on either side, with every "
    "trial of B beyond every trial of A. Give several runs per side (12,13,14) to make that spread count."
    "\n\n"
    "Results the agent measured as disturbed (others used the benchmark's CPUs) or invalid (cut short by "
    "max_seconds, fewer than min_runs, throttled) are left out; a cell left with none is invalid, with the "
    "reason. --include-disturbed / --include-invalid judge them anyway."
    "\n\n"
    "Examples:\n"
    "  farm compare 12 15\n"
    "  farm compare commit=3f2a9c1 commit=8d0e4b7   # every run labelled so, as trials\n"
    "  farm compare 12,13,14 20,21,22 --fail-on-regression\n"
    "  farm compare 20 --baseline"
)
compare.__doc__ = COMPARE_HELP
