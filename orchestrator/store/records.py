"""Writes to the store: hosts and their facts, runs, jobs and results with samples."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from agent.result_reader import ResultView

from .. import __version__
from ..inventory import Host
from .cell_totals import add_result as add_to_cell_totals
from .db import Store
from .jobs import result_columns
from .schema import HostFactsRow, HostRow, JobRow, ResultRow, RunRow, SampleRow, utcnow


def upsert_host(store: Store, host: Host) -> int:
    try:
        return _upsert_host_once(store, host)
    except IntegrityError:
        # Two runs met the same new host at once and the other inserted it first: now it is an update.
        return _upsert_host_once(store, host)


def _upsert_host_once(store: Store, host: Host) -> int:
    with store.session() as session:
        row = session.scalar(select(HostRow).where(HostRow.name == host.name))
        if row is None:
            row = HostRow(name=host.name, address=host.address, board=host.board, transport=host.transport)
            session.add(row)
        else:
            row.address, row.transport, row.last_seen = host.address, host.transport, utcnow()
            row.board = host.board or row.board
        session.commit()
        return row.id


def add_facts(store: Store, host_id: int, facts: dict[str, Any]) -> int:
    with store.session() as session:
        row = HostFactsRow(host_id=host_id, facts=facts)
        session.add(row)
        host = session.get(HostRow, host_id)
        if host is not None and not host.board and facts.get("board"):
            host.board = facts["board"]
        session.commit()
        return row.id


def record_checks(store: Store, checks: list[tuple[Host, dict[str, Any] | None]]) -> list[int]:
    """Upsert every host and add the facts of those that answered, in one transaction; returns the host ids.

    `farm inventory check` used to write two transactions per host after the fan-out, each a commit (an
    fsync on SQLite, a round trip on PostgreSQL): a third of a 20-host check's wall time on a busy disk.
    """
    try:
        return _record_checks_once(store, checks)
    except IntegrityError:
        return _record_checks_once(store, checks)  # another run inserted one of the hosts first


def _record_checks_once(store: Store, checks: list[tuple[Host, dict[str, Any] | None]]) -> list[int]:
    # Bulk statements, not ORM objects: the unit of work's bookkeeping per host row cost more CPU than
    # the statements themselves (bench/ctrl_cpu.py). Rows and defaults are those the ORM would write.
    names = list(dict.fromkeys(host.name for host, _ in checks))
    with store.session() as session:
        known = {name: (row_id, board) for name, row_id, board in
                 session.execute(select(HostRow.name, HostRow.id, HostRow.board).where(HostRow.name.in_(names)))}
        now = utcnow()
        updates: dict[str, dict[str, Any]] = {}
        inserts: dict[str, dict[str, Any]] = {}
        for host, facts in checks:
            if host.name in known:
                row = updates.setdefault(host.name, {"id": known[host.name][0], "board": known[host.name][1]})
                row.update(address=host.address, transport=host.transport, last_seen=now)
            else:
                row = inserts.setdefault(host.name, {"name": host.name, "board": None})
                row.update(address=host.address, transport=host.transport)
            row["board"] = host.board or row["board"]
            if facts is not None and not row["board"] and facts.get("board"):
                row["board"] = facts["board"]
        if updates:
            session.execute(update(HostRow), list(updates.values()))
        ids = {name: row_id for name, (row_id, _) in known.items()}
        if inserts:
            ids.update((name, row_id) for row_id, name in session.execute(
                insert(HostRow).returning(HostRow.id, HostRow.name, sort_by_parameter_order=True),
                list(inserts.values())))
        snapshots = [{"host_id": ids[host.name], "facts": facts} for host, facts in checks if facts is not None]
        if snapshots:
            session.execute(insert(HostFactsRow), snapshots)
        session.commit()
        return [ids[host.name] for host, _ in checks]


def create_run(store: Store, matrix: str, inventory: str, tags: list[str], plan: dict[str, Any] | None = None,
               labels: dict[str, str] | None = None) -> int:
    with store.session() as session:
        row = RunRow(matrix=matrix, inventory=inventory, controller_version=__version__, tags=tags, plan=plan,
                     labels=dict(labels or {}))
        session.add(row)
        session.commit()
        return row.id


def finish_run(store: Store, run_id: int, status: str) -> None:
    with store.session() as session:
        row = session.get(RunRow, run_id)
        assert row is not None
        row.status, row.finished_at = status, utcnow()
        session.commit()


def add_jobs(store: Store, run_id: int, jobs: list[dict[str, Any]]) -> list[int]:
    """Insert the run's jobs (one per cell) and return their ids in the same order."""
    with store.session() as session:
        rows = [JobRow(run_id=run_id, **job) for job in jobs]
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows]


def mark_job(store: Store, job_id: int, status: str, *, reason: str | None = None,
             error_kind: str | None = None) -> None:
    with store.session() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        row.status = status
        if status == "running":
            row.started_at = utcnow()
            row.attempt += 1
        else:
            row.finished_at = utcnow()
        row.reason, row.error_kind = reason, error_kind
        session.commit()


def store_result(store: Store, job_id: int, facts_id: int | None, python_version: str | None,
                 result: dict[str, Any]) -> int:
    """Store a succeeded result and its samples, and close the job, in one transaction."""
    view = ResultView(result)
    samples = view.samples_ns
    with store.session() as session:
        row = ResultRow(job_id=job_id, facts_id=facts_id, python_version=python_version, **result_columns(view))
        session.add(row)
        session.flush()
        session.execute(insert(SampleRow), [
            {"result_id": row.id, "idx": index, "duration_ns": value} for index, value in enumerate(samples)
        ])
        add_to_cell_totals(session, job_id, row.median_ms)
        job = session.get(JobRow, job_id)
        assert job is not None
        job.status, job.finished_at, job.reason, job.error_kind = "succeeded", utcnow(), None, None
        session.commit()
        return row.id
