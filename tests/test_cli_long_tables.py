"""Tables longer than a screenful are aligned plain text that keeps the short tables' rules.

`farm results` on a year of nightlies prints thousands of rows; Rich's layout of every cell took 50 s for
10,000 of them. Past ``RICH_MAX_ROWS`` rows the table is one line per row, and still leaves out empty
columns, moves constant ones into the title, leaves out the least important ones to fit, keeps model names
whole and says what it left out.
"""

from __future__ import annotations

import io

from rich.console import Console

from orchestrator.cli.results import RESULTS_LAYOUT
from orchestrator.cli.tables import RowTable, print_table
from orchestrator.text_table import RICH_MAX_ROWS

LONG_MODEL = "ssd_mobilenet_v2_coco_quant_postprocess_edgetpu"


def rows(count: int) -> dict[str, list]:
    return {
        "run_id": [7] * count,
        "host": [f"pi-{n % 3}" for n in range(count)],
        "model": [LONG_MODEL if n == 5 else f"conv_stack-l{n % 4}" for n in range(count)],
        "delegate": ["cpu"] * count,
        "threads": [n % 4 + 1 for n in range(count)],
        "usb_port": [None] * count,  # empty everywhere: not a column
        "median_ms": [n / 7 for n in range(count)],
        "p90_ms": [n / 6 for n in range(count)],
        "gops": [float("nan")] * count,  # NaN everywhere: empty too
        "runtime_version": ["2.14.0"] * count,
        "marks": ["disturbed" if n == 3 else "" for n in range(count)],
    }


def printed(values: dict[str, list], width: int, **options: object) -> tuple[list[str], list[str]]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    hidden = print_table(console, RowTable(values), RESULTS_LAYOUT, **options)  # type: ignore[arg-type]
    return out.getvalue().splitlines(), hidden


def test_a_long_table_is_one_line_per_row_and_fits_the_width() -> None:
    count = RICH_MAX_ROWS + 400
    lines, hidden = printed(rows(count), 80)
    body = [line for line in lines if line.startswith(("pi-", "  7", "7 "))]
    assert len(body) == count  # no row wraps onto a second line
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "─" not in "".join(lines) and "│" not in "".join(lines)  # plain text, not Rich's table
    assert any(LONG_MODEL in line.split() for line in body)  # whole, never cut
    assert "USB port" not in "\n".join(lines) and "GOPS" not in "\n".join(lines)  # empty columns left out
    # One run, one delegate, one runtime version: said once in the title, not on every row.
    assert lines[0].split(" · ")[:2] == ["run 7", "delegate cpu"]
    assert "disturbed" in body[3]
    if hidden:
        assert "left out to fit 80 columns" in " ".join(lines) and all(name in " ".join(lines) for name in hidden)


def test_a_narrow_terminal_leaves_columns_out_in_the_layouts_order_and_says_so() -> None:
    # The long model name (47 characters), its median and its marks are never left out: 66 columns at least.
    lines, hidden = printed(rows(RICH_MAX_ROWS + 1), 70)
    assert hidden and hidden == [name for name in RESULTS_LAYOUT.drop_order if name in hidden]
    assert "median" in "\n".join(lines[:4]) and "marks" in "\n".join(lines[:4])
    assert max(len(line) for line in lines) <= 70
    text = " ".join(" ".join(lines).split())
    assert f"{len(hidden)} column(s) left out to fit 70 columns: {', '.join(hidden)}" in text
    wider, fewer = printed(rows(RICH_MAX_ROWS + 1), 90)
    assert len(fewer) < len(hidden) and max(len(line) for line in wider) <= 90


def test_headings_wrap_between_words_and_cells_line_up_under_them() -> None:
    values = rows(RICH_MAX_ROWS + 1)
    lines, _ = printed(values, 200, columns=["model", "median_ms", "threads"])
    # --columns: exactly these, in this order; "median ms" over two lines at its column's width.
    assert lines[0].split() == ["median"] and lines[1].split() == ["model", "ms", "thr"]
    start = lines[1].index("model")
    assert all(line[start:].split()[0] in (LONG_MODEL, *(f"conv_stack-l{n}" for n in range(4)))
               for line in lines[3:])
    end = lines[1].index("ms") + len("ms")  # right-aligned numbers end where their heading does
    assert all(line[:end].endswith(f"{m:.3f}") for line, m in zip(lines[3:], values["median_ms"], strict=True))


def test_wide_keeps_every_column_at_full_width() -> None:
    lines, hidden = printed(rows(RICH_MAX_ROWS + 1), 40, wide=True)
    assert hidden == [] and "runtime version" in lines[0] and max(len(line) for line in lines) > 40


def test_a_short_table_is_still_richs() -> None:
    lines, _ = printed(rows(RICH_MAX_ROWS), 200)
    assert any(set(line.strip()) <= {"─", " "} and "─" in line for line in lines)


def test_every_cell_reads_as_text_of_its_value_whatever_its_column_holds() -> None:
    from datetime import datetime, timezone

    from orchestrator.cli.tables import _cells, text_of

    columns = {"names": ["a", None, "b"], "ints": [1, None, 30], "floats": [1.5, float("nan"), None],
               "mixed": [1, 2.25, "x"], "flags": [True, False, None],
               "times": [datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), None, None]}
    table = RowTable(columns)
    for name, values in columns.items():
        assert _cells(table, name, ".1f") == [text_of(v, ".1f") for v in values], name
