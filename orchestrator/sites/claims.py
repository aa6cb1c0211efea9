"""Job claims with leases on PostgreSQL: claim in batches (SKIP LOCKED), renew, release, close a run.

Leases are compared with the database's clock (``now()``), never a controller's, so controllers at
two sites with skewed clocks agree on when a claim has expired. A host is served by one controller at
a time: a host with a live claim of another controller is not claimed (the agent's per-device lock
stays the last line of defence when two claims meet anyway).
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import aliased

from ..errors import FarmError
from ..lifecycle import TERMINAL
from ..store.db import Store, safe_url
from ..store.schema import ControllerRow, JobRow, RunRow


def require_postgres(store: Store, what: str = "sites") -> None:
    """SQLite has no row locks to share work by: say so before anything is stored."""
    if store.engine.dialect.name != "postgresql":
        raise FarmError(f"{what} need PostgreSQL: controllers share a run's jobs with row locks "
                        f"(SELECT ... FOR UPDATE SKIP LOCKED), which {safe_url(store.url)} does not have. "
                        "Give --db postgresql+psycopg://user@host/db (or FARM_DB_URL); SQLite stays the "
                        "single-controller default of `farm run`.")


def _open() -> object:
    return JobRow.status.not_in(TERMINAL)


def claim(store: Store, owner: str, site: str, host_ids: list[int], *, lease: float,
          per_host: int) -> list[JobRow]:
    """Claim up to ``per_host`` open jobs of each host in ``host_ids`` from shared runs, oldest run first.

    A job is free when nobody claims it or its lease ran out; rows another controller is claiming at this
    moment are skipped, not waited for. Returns the claimed rows (status as stored: a dead controller's
    dispatched or running job comes back with its spool key, for the lane to look for it first).
    """
    if not host_ids:
        return []
    other = aliased(JobRow)
    held_elsewhere = exists().where(other.host_id == JobRow.host_id, other.claim_owner != owner,
                                    other.lease_expires_at > func.now(), other.status.not_in(TERMINAL))
    query = (select(JobRow).join(RunRow, RunRow.id == JobRow.run_id)
             .where(RunRow.shared.is_(True), _open(), JobRow.host_id.in_(host_ids),
                    or_(JobRow.claim_owner.is_(None), JobRow.lease_expires_at <= func.now(),
                        JobRow.claim_owner == owner), ~held_elsewhere)
             .order_by(JobRow.run_id, JobRow.host_id, JobRow.id)
             .limit(per_host * len(host_ids))
             .with_for_update(skip_locked=True, of=JobRow))
    with store.session() as session:
        taken: dict[int, list[JobRow]] = defaultdict(list)
        for row in session.scalars(query):
            if len(taken[row.host_id]) < per_host:  # the rest stay free: locked only until this commit
                taken[row.host_id].append(row)
        rows = [row for rows in taken.values() for row in rows]
        if not rows:
            session.rollback()
            return []
        ids = [row.id for row in rows]
        session.execute(update(JobRow).where(JobRow.id.in_(ids)).values(
            claim_owner=owner, claim_site=site, claimed_at=func.now(),
            lease_expires_at=func.now() + timedelta(seconds=lease)).execution_options(synchronize_session=False))
        session.execute(update(RunRow).where(RunRow.id.in_({row.run_id for row in rows}),
                                             RunRow.status == "submitted").values(status="running"))
        session.commit()
        for row in rows:
            session.refresh(row)
        return rows


def renew(store: Store, owner: str, lease: float) -> set[int]:
    """Extend every open claim of ``owner``; returns the jobs it still holds (and beats its heartbeat)."""
    with store.session() as session:
        held = session.scalars(update(JobRow).where(JobRow.claim_owner == owner, _open())
                               .values(lease_expires_at=func.now() + timedelta(seconds=lease))
                               .returning(JobRow.id)).all()
        session.execute(update(ControllerRow).where(ControllerRow.id == owner).values(last_seen=func.now()))
        session.commit()
        return set(held)


def lost(store: Store, owner: str, job_ids: list[int]) -> set[int]:
    """Those of ``job_ids`` still open but claimed by another controller now: ``owner``'s lease ran out
    (it stalled, it did not die) and the jobs were taken over; its lane must stop driving them."""
    if not job_ids:
        return set()
    with store.session() as session:
        return set(session.scalars(select(JobRow.id).where(JobRow.id.in_(job_ids), _open(),
                                                           or_(JobRow.claim_owner.is_(None),
                                                               JobRow.claim_owner != owner))))


def release(store: Store, owner: str, job_ids: list[int]) -> int:
    """Give back the claims on the jobs among ``job_ids`` that are still open: any controller may take them."""
    if not job_ids:
        return 0
    with store.session() as session:
        done = session.execute(update(JobRow).where(JobRow.id.in_(job_ids), JobRow.claim_owner == owner, _open())
                               .values(claim_owner=None, lease_expires_at=None)).rowcount
        session.commit()
        return done


def finish_if_done(store: Store, run_id: int) -> bool:
    """Close a shared run once its last job is terminal (whichever controller got there); True if this did."""
    with store.session() as session:
        pending = exists().where(JobRow.run_id == run_id, _open())
        done = session.execute(update(RunRow).where(RunRow.id == run_id, RunRow.status != "finished", ~pending)
                               .values(status="finished", finished_at=func.now())).rowcount
        session.commit()
        return bool(done)


def open_jobs_on(store: Store, host_ids: list[int]) -> int:
    """Open jobs of shared runs on these hosts, claimed or not: what keeps a `--until-idle` controller up."""
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(JobRow).join(RunRow, RunRow.id == JobRow.run_id)
                              .where(RunRow.shared.is_(True), _open(), JobRow.host_id.in_(host_ids))) or 0


def register(store: Store, controller_id: str, site: str) -> None:
    with store.session() as session:
        session.add(ControllerRow(id=controller_id, site=site, hostname=socket.gethostname(), pid=os.getpid(),
                                  started_at=func.now(), last_seen=func.now()))
        session.commit()


def stopped(store: Store, controller_id: str) -> None:
    with store.session() as session:
        session.execute(update(ControllerRow).where(ControllerRow.id == controller_id)
                        .values(stopped_at=func.now(), last_seen=func.now()))
        session.commit()


__all__ = ["claim", "finish_if_done", "lost", "open_jobs_on", "register", "release", "renew", "require_postgres",
           "stopped"]
