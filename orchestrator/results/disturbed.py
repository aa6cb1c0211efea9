"""Which cells of a run were measured while others used their CPUs: what `farm run` says at its end,
what `--retry-disturbed` and the nightly job run again."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from ..store.db import Store
from ..store.schema import HostRow, JobRow, ResultRow


@dataclass(frozen=True)
class DisturbedCell:
    run_id: int
    host: str
    cell_key: str
    reason: str
    cpu_share: float | None
    other_load: float | None


@dataclass
class HostDisturbance:
    host: str
    measured: int = 0  # cells with an interference measurement
    disturbed: list[DisturbedCell] = field(default_factory=list)

    @property
    def mean_other_load(self) -> float | None:
        loads = [cell.other_load for cell in self.disturbed if cell.other_load is not None]
        return sum(loads) / len(loads) if loads else None


def disturbed_cells(store: Store, run_ids: list[int]) -> list[DisturbedCell]:
    """The succeeded jobs of these runs whose agent found the timed loop disturbed, in run and job order."""
    return [cell for cell in _measured(store, run_ids) if cell is not None and cell.reason]


def by_host(store: Store, run_ids: list[int]) -> dict[str, HostDisturbance]:
    """Per host: how many cells were measured and which were disturbed."""
    hosts: dict[str, HostDisturbance] = {}
    for cell in _measured(store, run_ids):
        if cell is None:
            continue
        entry = hosts.setdefault(cell.host, HostDisturbance(cell.host))
        entry.measured += 1
        if cell.reason:
            entry.disturbed.append(cell)
    return hosts


def _measured(store: Store, run_ids: list[int]) -> list[DisturbedCell | None]:
    if not run_ids:
        return []
    with store.session() as session:
        rows = session.execute(
            select(JobRow.run_id, JobRow.cell_key, HostRow.name, ResultRow.detail)
            .join(HostRow, HostRow.id == JobRow.host_id)
            .join(ResultRow, ResultRow.job_id == JobRow.id)
            .where(JobRow.run_id.in_(list(run_ids)), JobRow.status == "succeeded")
            .order_by(JobRow.run_id, JobRow.id)).all()
    out: list[DisturbedCell | None] = []
    for run_id, cell_key, host, detail in rows:
        part = (detail or {}).get("interference")
        if not part:
            out.append(None)  # an agent that did not measure: neither clean nor disturbed
            continue
        reason = (part.get("disturbed_reason") or "disturbed") if part.get("disturbed") else ""
        out.append(DisturbedCell(run_id, host, cell_key, reason, part.get("cpu_share"), part.get("other_load")))
    return out
