"""Tables as aligned plain text, for outputs too long for Rich.

Rich measures and lays out every cell of a table (wrapping, folding, borders): right for a screenful,
but `farm results` on a year of nightlies prints thousands of rows, and Rich took 15 s for 10,000 rows of
16 columns on the lab controller, where this takes milliseconds. The commands print Rich tables up to
``RICH_MAX_ROWS`` rows and these beyond, which also read well through grep, sort and awk.
"""

from __future__ import annotations

from collections.abc import Sequence

RICH_MAX_ROWS = 100


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> list[str]:
    """The header, a rule and the rows, columns two spaces apart; ``right`` right-justifies a column."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    flags = list(right) if right is not None else [False] * len(headers)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(text.rjust(width) if flag else text.ljust(width)
                         for text, width, flag in zip(cells, widths, flags, strict=True)).rstrip()

    return [line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in rows)]
