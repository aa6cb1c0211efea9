"""The cell pivot over every stored result, in the database: how many results and their mean median per
board x model family x delegate x threads x power mode (or any subset of those).

Through ``v_results`` the same GROUP BY joins every job to six tables and reads every result row (each
holding its agent document) before grouping: about 9 ms per 1,000 results on SQLite. Here the jobs are
grouped by their ids first, reading only the covering indexes of migration 0022, and the few hundred
groups are joined to hosts and models afterwards: 8x less on the same data (bench/store_scale.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from ..errors import FarmError
from ..store.db import Store

# Pivot dimension -> (the inner aggregate's column, the outer select's expression).
DIMENSIONS = {
    "board": ("j.host_id", "h.board"),
    "host": ("j.host_id", "h.name"),
    "model_family": ("j.model_id", "m.family"),
    "model": ("j.model_id", "m.name"),
    "delegate": ("j.delegate", "c.delegate"),
    "threads": ("j.threads", "c.threads"),
    "power_mode": ("j.power_mode", "c.power_mode"),
}
DEFAULT_BY = ("board", "model_family", "delegate", "threads", "power_mode")


def cell_pivot_sql(by: tuple[str, ...] = DEFAULT_BY, dialect: str = "sqlite") -> str:
    """The pivot's SELECT. On SQLite the results' covering index is named: without ANALYZE statistics
    (farm never runs it) the planner prefers the unique job_id index and reads every result row."""
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown or not by:
        raise FarmError(f"cannot pivot by {unknown[0] if unknown else 'nothing'}: choose from "
                        f"{', '.join(DIMENSIONS)}")
    inner = list(dict.fromkeys(DIMENSIONS[name][0] for name in by))  # each id column once, in order
    aliases = {column: column.split(".", 1)[1] for column in inner}
    outer = []
    for name in by:
        column, expression = DIMENSIONS[name]
        if expression.startswith("c."):
            expression = f"c.{aliases[column]}"
        outer.append(f"{expression} AS {name}")
    joins = []
    if any(DIMENSIONS[name][0] == "j.host_id" for name in by):
        joins.append("JOIN hosts h ON h.id = c.host_id")
    if any(DIMENSIONS[name][0] == "j.model_id" for name in by):
        joins.append("JOIN models m ON m.id = c.model_id")
    groups = ", ".join(expression.split(" AS ")[0] for expression in outer)
    hint = " INDEXED BY ix_results_job_median" if dialect == "sqlite" else ""
    return (f"SELECT {', '.join(outer)}, SUM(c.n) AS results, SUM(c.total_ms) / SUM(c.n) AS mean_median_ms\n"
            f"FROM (SELECT {', '.join(inner)}, COUNT(*) AS n, SUM(res.median_ms) AS total_ms\n"
            f"      FROM jobs j JOIN results res{hint} ON res.job_id = j.id WHERE j.status = 'succeeded'\n"
            f"      GROUP BY {', '.join(inner)}) c\n"
            f"{' '.join(joins)}\nGROUP BY {groups}\nORDER BY {groups}")


def cell_pivot(store: Store, by: tuple[str, ...] = DEFAULT_BY) -> list[dict[str, Any]]:
    """One dict per group: the ``by`` dimensions, ``results`` and ``mean_median_ms``."""
    with store.engine.connect() as connection:
        query = text(cell_pivot_sql(by, store.engine.dialect.name))
        return [dict(row) for row in connection.execute(query).mappings()]
