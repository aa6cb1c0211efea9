"""Reference times in the store: import (re-importing a file replaces its rows), list, and the frame the
report matches results against."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import delete, select

from ..store.db import Store
from ..store.schema import ReferenceRow
from .model import Reference


def import_references(store: Store, references: list[Reference]) -> tuple[int, int]:
    """Store every reference; one already stored for the same board, model, delegate, setting, metric and
    data set takes the new value. Returns (added, replaced)."""
    added = replaced = 0
    with store.session() as session:
        for ref in references:
            existing = session.scalar(select(ReferenceRow).where(
                ReferenceRow.board == ref.board, ReferenceRow.model == ref.model,
                ReferenceRow.delegate == ref.delegate, ReferenceRow.setting_key == ref.setting_key,
                ReferenceRow.metric == ref.metric, ReferenceRow.dataset == ref.dataset))
            if existing is None:
                session.add(ReferenceRow(board=ref.board, model=ref.model, delegate=ref.delegate,
                                         settings=dict(ref.settings), setting_key=ref.setting_key, metric=ref.metric,
                                         dataset=ref.dataset, stat=ref.stat, value_ms=ref.value_ms,
                                         source=ref.source))
                added += 1
            else:
                existing.value_ms, existing.stat, existing.source = ref.value_ms, ref.stat, ref.source
                existing.settings = dict(ref.settings)
                replaced += 1
        session.commit()
    return added, replaced


def list_references(store: Store, board: str | None = None) -> list[Reference]:
    query = select(ReferenceRow).order_by(ReferenceRow.board, ReferenceRow.model, ReferenceRow.setting_key)
    if board:
        query = query.where(ReferenceRow.board == board)
    with store.session() as session:
        return [Reference(row.board, row.model, row.delegate, row.value_ms, row.source, dict(row.settings or {}),
                          row.metric, row.dataset, row.stat) for row in session.scalars(query)]


def remove_references(store: Store, source: str | None = None, board: str | None = None) -> int:
    query = delete(ReferenceRow)
    if source:
        query = query.where(ReferenceRow.source == source)
    if board:
        query = query.where(ReferenceRow.board == board)
    with store.session() as session:
        count = session.execute(query).rowcount
        session.commit()
    return int(count or 0)


def inference_references(store: Store) -> pd.DataFrame:
    refs = [r for r in list_references(store) if r.metric == "inference" and not r.dataset]
    return pd.DataFrame([{"board": r.board, "ref_model": r.model, "delegate": r.delegate, "settings": r.settings,
                          "reference_ms": r.value_ms, "reference_stat": r.stat, "reference_source": r.source}
                         for r in refs])
