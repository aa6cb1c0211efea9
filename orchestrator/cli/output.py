"""Where commands write, and how a frame becomes a table, CSV or JSON: one way for every command."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import FarmError
from ..output_file import write_output
from ..text_table import RICH_MAX_ROWS, aligned

console = Console()
err_console = Console(stderr=True)

# Verdict colours, the same in `farm compare` and `farm nightly`.
STATE_STYLE = {"regressed": "red", "improved": "green", "invalid": "yellow", "missing": "yellow", "new": "cyan"}


def cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def two_places(value: object) -> str:
    try:
        return f"{float(value):.2f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def share_cell(row: object) -> str:
    """The benchmark's CPU share, marked where the agent found the loop disturbed ('0.48 disturbed')."""
    text = two_places(getattr(row, "cpu_share", None))
    return f"{text} disturbed".strip() if value_of(row, "disturbed") == 1 else text


def result_marks(row: object) -> str:
    """'disturbed', 'invalid' or both, for a result row of v_results; '' for a clean one."""
    marks = [name for name, column, want in (("disturbed", "disturbed", 1), ("invalid", "valid", 0))
             if value_of(row, column) == want]
    return ", ".join(marks)


def marks_column(disturbed: list, valid: list) -> list[str]:
    """result_marks of every row, from its two columns (a few distinct pairs: each judged once)."""
    judged: dict[tuple, str] = {}
    out = []
    for pair in zip(disturbed, valid, strict=True):
        if pair not in judged:
            judged[pair] = result_marks({"disturbed": pair[0], "valid": pair[1]})
        out.append(judged[pair])
    return out


def value_of(row: object, column: str) -> int | None:
    value = row.get(column) if isinstance(row, dict) else getattr(row, column, None)
    try:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)
    except (TypeError, ValueError):
        return None


def print_frame(frame, columns: list[str], headings: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    """A frame as a terminal table; ``headings`` shortens a column's name where space is tight."""
    if frame.empty:
        console.print("No rows match.")
        return
    table = Table()
    for column in columns:
        table.add_column((headings or {}).get(column, column))
    for _, row in frame[columns].iterrows():
        table.add_row(*[cell(row[c]) for c in columns])
    console.print(table)


def print_rows(columns: list[str], records: list[dict], headings: dict[str, str] | None = None) -> None:
    """Rows (dicts) as a table: Rich's for a screenful, aligned plain text for more (see text_table)."""
    if not records:
        console.print("No rows match.")
        return
    header = [(headings or {}).get(column, column) for column in columns]
    cells = [[cell(record.get(column)) for column in columns] for record in records]
    if len(cells) <= RICH_MAX_ROWS:
        table = Table()
        for name in header:
            table.add_column(name)
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    sys.stdout.write("\n".join(aligned(header, cells)) + "\n")
    sys.stdout.flush()


def emit(frame, output_format: str, output: Path | None,  # type: ignore[no-untyped-def]
         headings: dict[str, str] | None = None) -> None:
    """CSV and JSON carry the frame's own column names; only the table may shorten them.

    Every column in its one type (an integer column stays integral when a selection has NULLs in it), and
    timestamps as ISO 8601 text with their UTC offset: the same in CSV, JSON and `farm report --export`.
    """
    if output_format in ("csv", "json"):
        from ..results.columns import iso_timestamps, typed

        frame = iso_timestamps(typed(frame, known_only=True))
    if output_format == "csv":
        text = frame.to_csv(index=False)
    elif output_format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1)
    elif output_format == "table":
        print_frame(frame, list(frame.columns), headings)
        return
    else:
        raise FarmError(f"--format must be table, csv or json, not '{output_format}'")
    if output:
        write_output(output, text)
        err_console.print(f"{len(frame)} rows written to {output}")
    else:
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
