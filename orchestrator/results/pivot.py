"""The cell pivot over every stored result, in the database: how many results and their mean median per
board x model family x delegate x threads x power mode (or any subset of those).

Through ``v_results`` the same GROUP BY joins every job to six tables and reads every result row (each
holding its agent document) before grouping: seconds at a year of nightlies. Here it reads ``cell_totals``
(migration 0024), one row per cell that the store adds each result to as it stores it: a few thousand
rows whatever the number of results, grouped and joined to hosts and models (bench/store_scale.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from ..errors import FarmError
from ..store.db import Store

# Pivot dimension -> (the cell column, the outer select's expression).
DIMENSIONS = {
    "board": ("host_id", "h.board"),
    "host": ("host_id", "h.name"),
    "model_family": ("model_id", "m.family"),
    "model": ("model_id", "m.name"),
    "delegate": ("delegate", "c.delegate"),
    "threads": ("threads", "c.threads"),
    # A cell without a power mode is keyed '' (a key column cannot be NULL); the view shows NULL.
    "power_mode": ("power_mode", "NULLIF(c.power_mode, '')"),
}
DEFAULT_BY = ("board", "model_family", "delegate", "threads", "power_mode")


def cell_pivot_sql(by: tuple[str, ...] = DEFAULT_BY, dialect: str = "sqlite") -> str:
    """The pivot's SELECT (the same on both databases; ``dialect`` is kept for callers that pass it)."""
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown or not by:
        raise FarmError(f"cannot pivot by {unknown[0] if unknown else 'nothing'}: choose from "
                        f"{', '.join(DIMENSIONS)}")
    expressions = [DIMENSIONS[name][1] for name in by]
    joins = []
    if any(DIMENSIONS[name][0] == "host_id" for name in by):
        joins.append("JOIN hosts h ON h.id = c.host_id")
    if any(DIMENSIONS[name][0] == "model_id" for name in by):
        joins.append("JOIN models m ON m.id = c.model_id")
    outer = ", ".join(f"{expression} AS {name}" for expression, name in zip(expressions, by, strict=True))
    groups = ", ".join(expressions)
    return (f"SELECT {outer}, SUM(c.results) AS results, SUM(c.total_median_ms) / SUM(c.results) AS mean_median_ms\n"
            f"FROM cell_totals c {' '.join(joins)}\nGROUP BY {groups}\nORDER BY {groups}")


def cell_pivot(store: Store, by: tuple[str, ...] = DEFAULT_BY) -> list[dict[str, Any]]:
    """One dict per group: the ``by`` dimensions, ``results`` and ``mean_median_ms``."""
    with store.engine.connect() as connection:
        query = text(cell_pivot_sql(by, store.engine.dialect.name))
        return [dict(row) for row in connection.execute(query).mappings()]
