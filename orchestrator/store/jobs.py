"""Job state changes, idempotent ingest of results, and host health, in the store.

Every change is one short transaction, so a controller killed at any moment
leaves each job in a state a resumed controller can reason about: queued
(never sent), dispatched/running (in an agent's spool under ``spool_key``),
or terminal.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from agent.result_reader import ResultView

from ..lifecycle import TERMINAL, failure_class
from ..power_usb import measured_columns
from .cell_totals import add_result as add_to_cell_totals
from .db import Store
from .schema import HostRow, JobRow, ResultRow, SampleRow, utcnow


def dispatched(store: Store, job_id: int, attempt: int, spool_key: str, job_doc: dict[str, Any]) -> None:
    """The job is about to be handed to the agent under ``spool_key`` as attempt ``attempt``.

    Written before the agent is asked, so a controller killed right after knows
    which key to look for in the spool. One UPDATE, not an ORM load and flush: it is written
    for every job, and the ORM round costs the controller several times the CPU.
    """
    with store.session() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status.not_in(TERMINAL)).values(
            status="dispatched", attempt=attempt, spool_key=spool_key, job_doc=job_doc, dispatched_at=utcnow(),
            reason=None, error_kind=None, failure=None))
        session.commit()


def running(store: Store, job_id: int) -> None:
    with store.session() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status == "dispatched")
                        .values(status="running", started_at=utcnow()))
        session.commit()


def requeue(store: Store, job_id: int, failure: str, reason: str) -> None:
    """An attempt failed for infrastructure reasons and will be retried: back to queued, failure kept."""
    with store.session() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        if row.status in TERMINAL:
            return
        row.status, row.failure, row.reason = "queued", failure, reason
        row.error_kind = failure_class(failure)
        session.commit()


def finish(store: Store, job_id: int, status: str, *, failure: str | None = None,
           reason: str | None = None) -> bool:
    """Close a job as failed, skipped or cancelled; False if it was already terminal (nothing changed)."""
    assert status in TERMINAL and status != "succeeded", status
    with store.session() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        if row.status in TERMINAL:
            return False
        row.status, row.finished_at, row.reason = status, utcnow(), reason
        row.failure = failure
        row.error_kind = failure_class(failure) if failure else None
        session.commit()
        return True


def ingest_result(store: Store, job_id: int, attempt: int, spool_key: str | None, facts_id: int | None,
                  python_version: str | None, result: dict[str, Any]) -> bool:
    """Store a succeeded result with its samples and close the job; True if stored, False if it already was.

    Idempotent on the job (and so on job + attempt): the check runs inside the
    transaction and the unique constraints catch a concurrent second writer.
    """
    view = ResultView(result)  # validated where it arrived (dispatch), before the journal kept it
    samples = view.samples_ns
    with store.session() as session:
        if session.scalar(select(ResultRow.id).where(ResultRow.job_id == job_id)) is not None:
            return False
        row = ResultRow(job_id=job_id, attempt=attempt, spool_key=spool_key, facts_id=facts_id,
                        python_version=python_version, **result_columns(view))
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return False
        session.execute(insert(SampleRow), [
            {"result_id": row.id, "idx": index, "duration_ns": value} for index, value in enumerate(samples)
        ])
        add_to_cell_totals(session, job_id, row.median_ms)
        session.execute(update(JobRow).where(JobRow.id == job_id).values(
            status="succeeded", finished_at=utcnow(), reason=None, error_kind=None, failure=None,
            attempt=case((JobRow.attempt > attempt, JobRow.attempt), else_=attempt)))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
        return True


def result_columns(view: ResultView) -> dict[str, Any]:
    """The results row's columns read from a succeeded result: timings, what ran, what was measured."""
    summary = view.summary
    return dict(
        runtime_name=view.runtime_name, runtime_version=view.runtime_version, init_ms=view.init_ms,
        first_inference_ms=view.first_inference_ms, warmup_runs=view.warmup_runs, count=summary["count"],
        mean_ms=summary["mean_ms"], median_ms=summary["median_ms"], p90_ms=summary["p90_ms"],
        p99_ms=summary["p99_ms"], min_ms=summary["min_ms"], max_ms=summary["max_ms"], std_ms=summary["std_ms"],
        detail=view.detail(), **measured_columns(view))


def set_documents(store: Store, documents: dict[int, dict[str, Any]]) -> None:
    """Keep each planned job's agent document, so a resumed controller sends exactly the same job."""
    with store.session() as session:
        for job_id, document in documents.items():
            row = session.get(JobRow, job_id)
            assert row is not None
            row.job_doc = document
        session.commit()


def reopen_infrastructure_failures(store: Store, run_id: int) -> list[int]:
    """Put the run's jobs that failed for infrastructure reasons back in the queue (for --resume).

    Their last attempt may even have finished on the device after the controller gave up on
    the link: the resumed lane looks for its spool key first. Benchmark failures stay failed.
    """
    with store.session() as session:
        rows = list(session.scalars(select(JobRow).where(JobRow.run_id == run_id, JobRow.status == "failed",
                                                         JobRow.error_kind == "infrastructure")))
        for row in rows:
            row.status, row.finished_at = "queued", None
        session.commit()
        return [row.id for row in rows]


def open_jobs(store: Store, run_id: int) -> list[JobRow]:
    """The run's jobs that are not terminal, in id order."""
    with store.session() as session:
        return list(session.scalars(select(JobRow).where(JobRow.run_id == run_id,
                                                         JobRow.status.not_in(TERMINAL)).order_by(JobRow.id)))


def stored_keys(store: Store, job_ids: list[int]) -> set[tuple[int, int]]:
    """(job, attempt) pairs among ``job_ids`` whose outcome the store holds: the job is terminal and
    the attempt is its last or an earlier one. A spooled result under such a key is no longer needed."""
    if not job_ids:
        return set()
    with store.session() as session:
        rows = session.execute(select(JobRow.id, JobRow.attempt).where(JobRow.id.in_(set(job_ids)),
                                                                       JobRow.status.in_(TERMINAL)))
        last = {job_id: attempt for job_id, attempt in rows}
    return {(job_id, attempt) for job_id, latest in last.items() for attempt in range(1, latest + 1)}


def status_counts(store: Store, run_id: int) -> dict[str, int]:
    with store.session() as session:
        rows = session.execute(select(JobRow.status, func.count()).where(JobRow.run_id == run_id)
                               .group_by(JobRow.status))
        return {status: count for status, count in rows}


# --- host health ------------------------------------------------------------------------------

def host_failed(store: Store, host_id: int, reason: str, unhealthy_after: int) -> bool:
    """Count an infrastructure failure in a row; True if the host is (now) unhealthy."""
    with store.session() as session:
        host = session.get(HostRow, host_id)
        assert host is not None
        host.infra_failures += 1
        if host.infra_failures >= unhealthy_after and host.health != "unhealthy":
            host.health, host.health_reason, host.health_changed_at = "unhealthy", reason, utcnow()
        session.commit()
        return host.health == "unhealthy"


def host_ok(store: Store, host_id: int, reason: str | None = None) -> None:
    """A job or a health check went through: the failure streak ends and the host is healthy again."""
    with store.session() as session:
        host = session.get(HostRow, host_id)
        assert host is not None
        if host.infra_failures or host.health != "ok":
            if host.health != "ok":
                host.health_changed_at = utcnow()
            host.health, host.infra_failures, host.health_reason = "ok", 0, reason
            session.commit()


def host_health(store: Store, host_id: int) -> str:
    with store.session() as session:
        host = session.get(HostRow, host_id)
        assert host is not None
        return host.health
