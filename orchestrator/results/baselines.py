"""Baselines: the accepted reference runs of every cell, which `farm compare --baseline` and the nightly
job judge against."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import FarmError
from ..store.db import Store
from ..store.schema import BaselineRow, NightlyRow, RunRow
from ..verdict import median_of_trials
from .trials import CellTrials, collect_runs


def baselines(store: Store) -> dict[str, BaselineRow]:
    with store.session() as session:
        return {row.lineage_key: row for row in session.scalars(select(BaselineRow))}


def set_baselines(store: Store, cells: list[CellTrials], how: str) -> int:
    """Make these cells' trials the baseline of their lineage; returns how many cells changed."""
    changed = 0
    with store.session() as session:
        existing = {row.lineage_key: row for row in session.scalars(select(BaselineRow))}
        for cell in cells:
            if not cell.trials:
                continue
            row = existing.get(cell.lineage_key)
            if row is None:
                row = BaselineRow(lineage_key=cell.lineage_key)
                session.add(row)
            row.cell_key = cell.cell_key
            row.run_ids = sorted(set(cell.run_ids))
            row.median_ms = median_of_trials(cell.trials)
            row.how = how
            changed += 1
        session.commit()
    return changed


def runs_of(store: Store, run_id: int) -> list[int]:
    """A run, with the other trials of the nightly it belongs to."""
    with store.session() as session:
        if session.get(RunRow, run_id) is None:
            raise FarmError(f"no run {run_id} in this database; see `farm results` for run ids")
        for nightly in session.scalars(select(NightlyRow).order_by(NightlyRow.id.desc())):
            if run_id in (nightly.run_ids or []):
                return list(nightly.run_ids)
    return [run_id]


def accept(store: Store, run_id: int) -> tuple[list[int], int]:
    run_ids = runs_of(store, run_id)
    cells = [c for c in collect_runs(store, run_ids).values() if c.trials]
    if not cells:
        raise FarmError(f"run {run_id} has no succeeded results to accept as a baseline")
    return run_ids, set_baselines(store, cells, "accepted")
