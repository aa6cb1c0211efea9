"""What ``farm runs`` and ``farm status`` show: runs with their job counts, and one run's jobs per site
and controller with claim ages, leases and heartbeats (ages in database time, as leases are)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from ..lifecycle import TERMINAL
from ..store.db import Store
from ..store.schema import ControllerRow, JobRow, RunRow


@dataclass(frozen=True)
class RunLine:
    run_id: int
    matrix: str
    status: str
    shared: bool
    started_at: datetime
    counts: dict[str, int]
    sites: dict[str, int]  # jobs per site that claimed them (shared runs only)


@dataclass(frozen=True)
class ClaimLine:
    site: str | None  # None: not claimed (a plain `farm run`, or a shared job nobody holds)
    controller: str | None
    status: str
    jobs: int
    oldest_claim_s: float | None  # seconds since the oldest claim of these jobs was made
    lease_left_s: float | None  # seconds until the first of their leases runs out (negative: expired)
    heartbeat_s: float | None  # seconds since the controller last renewed its leases


def _seconds(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else (now - then).total_seconds()


def runs(store: Store, limit: int = 20) -> list[RunLine]:
    with store.session() as session:
        rows = list(session.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit)))
        counts: dict[int, dict[str, int]] = {row.id: {} for row in rows}
        sites: dict[int, dict[str, int]] = {row.id: {} for row in rows}
        if rows:
            for run_id, status, site, count in session.execute(
                    select(JobRow.run_id, JobRow.status, JobRow.claim_site, func.count())
                    .where(JobRow.run_id.in_(list(counts)))
                    .group_by(JobRow.run_id, JobRow.status, JobRow.claim_site)):
                counts[run_id][status] = counts[run_id].get(status, 0) + count
                if site is not None:
                    sites[run_id][site] = sites[run_id].get(site, 0) + count
        return [RunLine(row.id, row.matrix, row.status, bool(row.shared), row.started_at, counts[row.id],
                        sites[row.id]) for row in rows]


def claims_of(store: Store, run_id: int) -> list[ClaimLine]:
    """The run's jobs by site, controller and status; claim ages only for open jobs (a terminal job's
    controller is the one that finished it)."""
    with store.session() as session:
        now = session.scalar(select(func.now()))
        heartbeats = {row.id: row.last_seen for row in session.scalars(select(ControllerRow))}
        grouped = session.execute(
            select(JobRow.claim_site, JobRow.claim_owner, JobRow.status, func.count(), func.min(JobRow.claimed_at),
                   func.min(JobRow.lease_expires_at))
            .where(JobRow.run_id == run_id)
            .group_by(JobRow.claim_site, JobRow.claim_owner, JobRow.status)
            .order_by(JobRow.claim_site, JobRow.claim_owner, JobRow.status)).all()
    lines = []
    for site, owner, status, count, claimed, lease in grouped:
        open_job = status not in TERMINAL and owner is not None
        lines.append(ClaimLine(site, owner, status, count,
                               _seconds(now, claimed) if open_job else None,
                               -(_seconds(now, lease) or 0.0) if open_job and lease is not None else None,
                               _seconds(now, heartbeats.get(owner)) if owner else None))
    return lines
