"""Terminal tables that read at 80 columns and in a pipe: columns chosen by what the data holds.

The rules, the same for `farm results` and the end-of-run summary:

- a column empty in every row is left out (as `farm report` leaves out an absent dimension);
- a column with one value in every row moves into the title (``run 3 · host local``) when space is short;
- model names are never cut: the model column is as wide as its longest name, and the other columns
  wrap (``median ms`` over two lines) or, if the table still does not fit, are left out one by one,
  least important first, with a caption saying which and how to see them (``--wide``, ``--columns``);
- ``--wide`` keeps every column at full width whatever the terminal; ``--columns a,b`` shows exactly those.

A table of more than ``RICH_MAX_ROWS`` rows follows the same rules as aligned plain text, one line per row
(`plain_table`): Rich measures and lays out every cell, which took 50 s for `farm results` on 10,000 rows.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from ..errors import FarmError
from ..text_table import RICH_MAX_ROWS

KEEP_WHOLE = ("model",)  # never wrapped, never abbreviated: conv_stack-l1/l2/l3 must stay apart
FREE_TEXT = ("reason", "run_labels", "run_tags", "detail")  # sentences: wrapped at words, as narrow as need be
FREE_TEXT_MIN = 16


@dataclass(frozen=True)
class Layout:
    """Which columns a table offers, in display order, and which go first when space is short."""

    columns: Sequence[str]  # display order
    drop_order: Sequence[str]  # least important first; columns not named here are never dropped
    headings: dict[str, str] = field(default_factory=dict)
    right: frozenset[str] = frozenset()  # right-aligned (numbers)
    formats: dict[str, str] = field(default_factory=dict)  # column -> format spec for floats, e.g. ".3f"


def parse_columns(text: Sequence[str] | None, available: Sequence[str]) -> list[str] | None:
    """``--columns host,model --columns median_ms`` as a list, each checked against the frame's columns."""
    if not text:
        return None
    names = [name.strip() for item in text for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise FarmError(f"--columns: no column named {', '.join(repr(n) for n in unknown)}; choose from "
                        f"{', '.join(available)}")
    return names


class RowTable:
    """Columns (name -> one value per row) with the few frame operations a table needs (``in``,
    ``[column].tolist()``, ``len``, ``empty``), so `farm results` prints its table without importing pandas
    (README, "Short commands")."""

    def __init__(self, values: dict[str, list]) -> None:
        self.values = values
        self.columns = list(values)

    def __contains__(self, column: object) -> bool:
        return column in self.values

    def __getitem__(self, column: str) -> _Column:
        return _Column(self.values[column])

    def __len__(self) -> int:
        return len(next(iter(self.values.values()), ()))

    @property
    def empty(self) -> bool:
        return len(self) == 0


class _Column(list):
    def tolist(self) -> list:
        return list(self)


def text_of(value: object, fmt: str | None = None) -> str:
    if value is None:
        return ""
    pd = sys.modules.get("pandas")  # NA and NaT exist only where pandas made the value: never import it here
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format(value, fmt or ".3f")
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds")  # type: ignore[call-arg]
    return str(value)


def _cells(frame, column: str, fmt: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    """text_of for every value of the column; 10,000 rows of 20 columns are 200,000 cells, so a column of one
    type (the usual case) is converted in one comprehension for that type."""
    values = frame[column].tolist()
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {str}:
        return ["" if value is None else value for value in values]
    if kinds == {int}:
        return ["" if value is None else str(value) for value in values]
    if kinds == {float}:
        spec = fmt or ".3f"
        return ["" if value is None or math.isnan(value) else format(value, spec) for value in values]
    return [text_of(value, fmt) for value in values]


def build_table(frame, layout: Layout, *, width: int, title: str = "", wide: bool = False,  # type: ignore[no-untyped-def]
                columns: list[str] | None = None) -> tuple[Table, list[str]]:
    """The table for ``frame`` within ``width`` characters, and the columns it left out."""
    texts = {c: _cells(frame, c, layout.formats.get(c)) for c in (columns or layout.columns) if c in frame}
    if columns is not None:  # exactly what was asked, in that order
        shown, hidden, constant = list(columns), [], {}
    else:
        shown = [c for c in layout.columns if c in texts and any(texts[c])]  # empty everywhere: not a dimension
        hidden, constant = [], {}
    title_parts = [title] if title else []

    def make(names: list[str]) -> Table:
        table = Table(title=" · ".join([*title_parts, *(f"{constant[c]}" for c in constant)]) or None,
                      box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False,
                      collapse_padding=True)
        for name in names:
            whole = name in KEEP_WHOLE or wide
            heading = layout.headings.get(name, name)
            if name in FREE_TEXT and not wide:
                # A sentence wraps between words; a word longer than the column folds.
                words = [len(word) for t in texts[name] for word in t.split()]
                narrowest = min(max(words, default=0), FREE_TEXT_MIN)
            else:
                # A number, a name, a status is never broken: its column is at least as wide as its longest value;
                # the heading wraps between its words ("median" over "ms").
                narrowest = max((len(t) for t in texts[name]), default=0)
            narrowest = max(narrowest, max((len(w) for w in heading.split()), default=0))
            table.add_column(heading, justify="right" if name in layout.right else "left", no_wrap=whole,
                             min_width=narrowest, overflow="fold")
        for row in zip(*(texts[name] for name in names), strict=True):
            table.add_row(*row)
        return table

    table = make(shown)
    if wide or columns is not None:
        return table, []
    # Measured unconstrained: a measurement within the target width is clamped to it and always "fits".
    console = Console(width=100_000, file=_Null(), color_system=None)

    def fits(candidate: Table) -> bool:
        return Measurement.get(console, console.options, candidate).minimum <= width

    # First the columns that say the same thing in every row: their value goes into the title.
    if not fits(table) and len(frame) > 1:
        for name in [c for c in layout.columns if c in shown and c in layout.drop_order]:
            values = set(texts[name])
            if len(values) == 1:
                shown.remove(name)
                constant[name] = f"{layout.headings.get(name, name)} {values.pop()}"
                table = make(shown)
                if fits(table):
                    break
    for name in layout.drop_order:
        if fits(table):
            break
        if name in shown:
            shown.remove(name)
            hidden.append(name)
            table = make(shown)
    if hidden:
        table.caption = f"{len(hidden)} column(s) left out to fit {width} columns: {', '.join(hidden)} " \
                        "(--wide shows every column, --columns chooses)"
        table.caption_justify = "left"
    return table, hidden


def print_table(console: Console, frame, layout: Layout, *, title: str = "", wide: bool = False,  # type: ignore[no-untyped-def]
                columns: list[str] | None = None) -> list[str]:
    """Print the table at the console's width (a pipe: $COLUMNS, else 80); returns the columns left out."""
    if frame.empty:
        console.print("No rows match.")
        return []
    if len(frame) > RICH_MAX_ROWS:
        lines, hidden = plain_table(frame, layout, width=console.width, title=title, wide=wide, columns=columns)
        console.file.write("\n".join(lines) + "\n")
        console.file.flush()
        return hidden
    table, hidden = build_table(frame, layout, width=console.width, title=title, wide=wide, columns=columns)
    if wide:
        # As wide as it needs: a terminal narrower than that scrolls or wraps it, but nothing is cut.
        measuring = Console(width=100_000, file=_Null(), color_system=None)
        needed = Measurement.get(measuring, measuring.options, table).maximum
        before = console._width  # None: follow the terminal (or $COLUMNS), as before
        console.width = max(console.width, needed)  # print() caps a width it is given at the console's own
        try:
            console.print(table, crop=False)
        finally:
            console._width = before
    else:
        console.print(table)
    return hidden


def plain_table(frame, layout: Layout, *, width: int, title: str = "", wide: bool = False,  # type: ignore[no-untyped-def]
                columns: list[str] | None = None) -> tuple[list[str], list[str]]:
    """The table's lines as aligned plain text within ``width``, and the columns it left out.

    Build_table's rules without Rich: empty columns go, constant ones move into the title, then columns are
    left out in ``drop_order`` until the rest fits. A row stays one line (grep, sort and awk read it), so no
    cell wraps; a heading wraps between its words ("median" over "ms") unless the table is ``wide``."""
    texts = {c: _cells(frame, c, layout.formats.get(c)) for c in (columns or layout.columns) if c in frame}
    if columns is not None:
        shown = list(columns)
    else:
        shown = [c for c in layout.columns if c in texts and any(texts[c])]
    longest = {name: max(map(len, texts[name]), default=0) for name in shown}

    def heading(name: str) -> str:
        return layout.headings.get(name, name)

    def column_width(name: str) -> int:
        words = [heading(name)] if wide else heading(name).split()
        return max(longest[name], *(len(word) for word in words)) if words else longest[name]

    def needed(names: list[str]) -> int:
        return sum(column_width(n) for n in names) + 2 * max(len(names) - 1, 0)

    constant: list[str] = []
    hidden: list[str] = []
    if not wide and columns is None:
        if needed(shown) > width and len(frame) > 1:
            for name in [c for c in layout.columns if c in shown and c in layout.drop_order]:
                if len(set(texts[name])) == 1:
                    shown.remove(name)
                    constant.append(f"{heading(name)} {texts[name][0]}")
                    if needed(shown) <= width:
                        break
        for name in layout.drop_order:
            if needed(shown) <= width:
                break
            if name in shown:
                shown.remove(name)
                hidden.append(name)
    widths = [column_width(n) for n in shown]
    right = [n in layout.right for n in shown]
    heads = [_wrap_words(heading(n), w) if not wide else [heading(n)] for n, w in zip(shown, widths, strict=True)]
    depth = max(map(len, heads), default=1)
    heads = [[""] * (depth - len(h)) + h for h in heads]  # bottom-aligned, as Rich sets a wrapped heading

    template = "  ".join(f"{{:{'>' if r else '<'}{w}}}" for w, r in zip(widths, right, strict=True))

    def line(cells: Sequence[str]) -> str:
        return template.format(*cells).rstrip()  # one format per row: 10,000 rows of 16 cells

    heading_text = " · ".join([*([title] if title else []), *constant])
    out = textwrap.wrap(heading_text, max(width, 20)) if heading_text and not wide else [heading_text] * bool(heading_text)
    out += [line([h[level] for h in heads]) for level in range(depth)]
    out.append("  ".join("-" * w for w in widths))
    out += [line(row) for row in zip(*(texts[n] for n in shown), strict=True)]
    if hidden:
        out += textwrap.wrap(f"{len(hidden)} column(s) left out to fit {width} columns: {', '.join(hidden)} "
                             "(--wide shows every column, --columns chooses)", max(width, 20))
    return out, hidden


def _wrap_words(text: str, width: int) -> list[str]:
    """``text`` over as few lines of at most ``width`` as its words allow (a word is never broken)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


class _Null:
    """A file that swallows what a measuring console would write."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
