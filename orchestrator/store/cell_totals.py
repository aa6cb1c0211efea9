"""The cell totals (table ``cell_totals``, migration 0024): one row per cell, kept in step with results.

Every writer of a succeeded result calls :func:`add_result` inside the transaction that stores it, so a
cell's count and sum of medians are never ahead of or behind its results; a result is never removed or
re-marked afterwards (a succeeded job is terminal), so adding is all there is to it.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Float, Integer, bindparam, func, select
from sqlalchemy.orm import Session

from .schema import CellTotalRow, JobRow

TOTALS = CellTotalRow.__table__


@functools.cache
def _upsert(dialect: str) -> Any:
    """The statement, built once per dialect: building it (the ON CONFLICT's ``excluded`` columns) cost more
    CPU than running it."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    cell = select(JobRow.host_id, JobRow.model_id, JobRow.delegate, JobRow.threads,
                  func.coalesce(JobRow.power_mode, ""), bindparam("one", 1, type_=Integer),
                  bindparam("median_ms", type_=Float)).where(JobRow.id == bindparam("job_id", type_=Integer))
    upsert = insert(TOTALS).from_select(["host_id", "model_id", "delegate", "threads", "power_mode", "results",
                                         "total_median_ms"], cell)
    return upsert.on_conflict_do_update(
        index_elements=[column.name for column in TOTALS.primary_key.columns],
        set_={"results": TOTALS.c.results + 1,
              "total_median_ms": TOTALS.c.total_median_ms + upsert.excluded.total_median_ms})


def add_result(session: Session, job_id: int, median_ms: float) -> None:
    """Count one more succeeded result of ``job_id``'s cell: one upsert, the cell read from the job."""
    session.execute(_upsert(session.get_bind().dialect.name), {"job_id": job_id, "median_ms": median_ms})
