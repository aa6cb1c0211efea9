"""The cell totals (table ``cell_totals``, migration 0024): one row per cell, kept in step with results.

Every writer of a succeeded result calls :func:`add_result` inside the transaction that stores it, so a
cell's count and sum of medians are never ahead of or behind its results; a result is never removed or
re-marked afterwards (a succeeded job is terminal), so adding is all there is to it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .schema import CellTotalRow, JobRow


def add_result(session: Session, job_id: int, median_ms: float) -> None:
    """Count one more succeeded result of ``job_id``'s cell: an upsert, one statement on either database."""
    cell = session.execute(select(JobRow.host_id, JobRow.model_id, JobRow.delegate, JobRow.threads,
                                  JobRow.power_mode).where(JobRow.id == job_id)).one()
    values = {"host_id": cell.host_id, "model_id": cell.model_id, "delegate": cell.delegate,
              "threads": cell.threads, "power_mode": cell.power_mode or "", "results": 1,
              "total_median_ms": median_ms}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    upsert = insert(CellTotalRow).values(**values)
    table = CellTotalRow.__table__
    session.execute(upsert.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns],
        set_={"results": table.c.results + 1, "total_median_ms": table.c.total_median_ms + median_ms}))
