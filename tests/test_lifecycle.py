"""Job lifecycle in the store: states, failure classes, retry policy, idempotent ingest, host health."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from orchestrator.inventory import Host
from orchestrator.lifecycle import RetryPolicy, classify_agent_error, classify_transport_error, failure_class
from orchestrator.store import jobs, open_store, records
from orchestrator.store.db import Store
from orchestrator.store.schema import HostRow, JobRow, ModelRow, ResultRow, SampleRow


def fake_result(samples: list[int], job_id: str = "run1-job1") -> dict:
    count = len(samples)
    ms = sorted(s / 1e6 for s in samples)
    return {"schema": 1, "job_id": job_id, "status": "succeeded", "runtime": {"name": "tflite_runtime",
            "version": "2.14.0"}, "timing": {"init_ms": 1.0, "first_inference_ms": 3.0, "warmup_runs": 2,
            "samples_ns": samples, "summary": {"count": count, "mean_ms": sum(ms) / count, "median_ms": ms[count // 2],
                                               "p90_ms": ms[-1], "p99_ms": ms[-1], "min_ms": ms[0], "max_ms": ms[-1],
                                               "std_ms": 0.5}}}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def make_jobs(store: Store, count: int) -> tuple[int, int, list[int]]:
    host_id = records.upsert_host(store, Host(name="h1", transport="local"))
    with store.session() as session:
        model = ModelRow(sha256="a" * 64, name="m", family="f", params={}, source="imported", path="/x",
                         size_bytes=1, inputs=[], outputs=[], ops_per_inference=2_000_000)
        session.add(model)
        session.commit()
    run_id = records.create_run(store, "all", "inv.yaml", [])
    ids = records.add_jobs(store, run_id, [{"host_id": host_id, "model_id": model.id, "cell_key": f"k{n}",
                                            "delegate": "cpu", "threads": 1, "timing": {}} for n in range(count)])
    return run_id, host_id, ids


def test_a_job_walks_queued_dispatched_running_succeeded(store: Store) -> None:
    run_id, _, (job_id,) = make_jobs(store, 1)
    jobs.dispatched(store, job_id, 1, "abc-1.1", {"job_id": "abc-1"})
    jobs.running(store, job_id)
    with store.session() as session:
        row = session.get(JobRow, job_id)
        assert (row.status, row.attempt, row.spool_key, row.job_doc) == ("running", 1, "abc-1.1", {"job_id": "abc-1"})
        assert row.dispatched_at is not None and row.started_at is not None
    assert jobs.ingest_result(store, job_id, 1, "abc-1.1", None, "3.11", fake_result([1_000_000, 2_000_000]))
    assert jobs.status_counts(store, run_id) == {"succeeded": 1}
    assert jobs.open_jobs(store, run_id) == []


def test_ingesting_the_same_result_twice_stores_it_once(store: Store) -> None:
    _, _, (job_id,) = make_jobs(store, 1)
    result = fake_result([1_000_000, 2_000_000, 3_000_000])
    assert jobs.ingest_result(store, job_id, 1, "k.1", None, None, result) is True
    assert jobs.ingest_result(store, job_id, 1, "k.1", None, None, result) is False
    # A late result of an earlier attempt (the controller thought it lost) is not stored either.
    assert jobs.ingest_result(store, job_id, 2, "k.2", None, None, fake_result([5_000_000])) is False
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(ResultRow)) == 1
        assert session.scalar(select(func.count()).select_from(SampleRow)) == 3
        assert session.scalar(select(ResultRow.attempt)) == 1


def test_a_terminal_job_is_never_reopened(store: Store) -> None:
    _, _, (job_id,) = make_jobs(store, 1)
    assert jobs.finish(store, job_id, "failed", failure="load-error", reason="model failed to load: bad")
    jobs.requeue(store, job_id, "link-lost", "late retry")
    jobs.dispatched(store, job_id, 2, "k.2", {})
    assert not jobs.finish(store, job_id, "cancelled")
    with store.session() as session:
        row = session.get(JobRow, job_id)
        assert (row.status, row.failure, row.error_kind, row.attempt) == ("failed", "load-error", "benchmark", 0)


def test_a_requeued_job_keeps_why_its_last_attempt_failed(store: Store) -> None:
    run_id, _, (job_id,) = make_jobs(store, 1)
    jobs.dispatched(store, job_id, 1, "k.1", {})
    jobs.requeue(store, job_id, "agent-died", "the job's process is gone")
    with store.session() as session:
        row = session.get(JobRow, job_id)
        assert (row.status, row.failure, row.error_kind) == ("queued", "agent-died", "infrastructure")
    assert [j.id for j in jobs.open_jobs(store, run_id)] == [job_id]


def test_repeated_infrastructure_failures_make_a_host_unhealthy_until_it_passes(store: Store) -> None:
    _, host_id, _ = make_jobs(store, 1)
    assert not jobs.host_failed(store, host_id, "link lost", unhealthy_after=3)
    jobs.host_ok(store, host_id)  # a success ends the streak
    assert not jobs.host_failed(store, host_id, "link lost", unhealthy_after=3)
    assert not jobs.host_failed(store, host_id, "link lost", unhealthy_after=3)
    assert jobs.host_failed(store, host_id, "unreachable: connection refused", unhealthy_after=3)
    assert jobs.host_health(store, host_id) == "unhealthy"
    with store.session() as session:
        assert session.get(HostRow, host_id).health_reason == "unreachable: connection refused"
    jobs.host_ok(store, host_id, "health check passed")
    assert jobs.host_health(store, host_id) == "ok"


@pytest.mark.parametrize("message, during, failure", [
    ("nano: host key for 127.0.0.2 does not match known_hosts", False, "host-key"),
    ("nano: cannot write: [Errno 28] No space left on device", True, "disk-full"),
    ("nano: connection refused", False, "unreachable"),
    ("nano: agent exited with code -9", True, "link-lost"),
])
def test_transport_errors_are_classified(message: str, during: bool, failure: str) -> None:
    assert classify_transport_error(message, during_job=during) == failure
    assert failure_class(failure) == "infrastructure"


def test_agent_errors_are_classified() -> None:
    assert classify_agent_error("benchmark", "model failed to load: bad flatbuffer") == "load-error"
    assert classify_agent_error("benchmark", "invoke failed: tensor") == "invoke-error"
    assert classify_agent_error("infrastructure", "model file not found on the device: x") == "agent-error"
    assert failure_class("load-error") == "benchmark" and failure_class("invoke-error") == "benchmark"


def test_only_infrastructure_failures_are_retried_with_growing_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_RETRIES", "2")
    monkeypatch.setenv("FARM_RETRY_BACKOFF", "0.5")
    policy = RetryPolicy.from_env()
    assert policy.may_retry("link-lost", 1) and policy.may_retry("link-lost", 2)
    assert not policy.may_retry("link-lost", 3)
    assert not policy.may_retry("load-error", 1) and not policy.may_retry("invoke-error", 1)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 2.0]
    monkeypatch.setenv("FARM_RETRIES", "lots")
    with pytest.raises(ValueError, match="FARM_RETRIES"):
        RetryPolicy.from_env()


def test_farm_run_exit_codes_follow_the_jobs_and_the_journal() -> None:
    from collections import Counter

    from orchestrator.cli.resume import exit_code
    from orchestrator.scheduler import RunOutcome

    assert exit_code(RunOutcome(1, Counter({"succeeded": 3, "skipped": 1}))) == 0
    assert exit_code(RunOutcome(1, Counter({"succeeded": 3, "failed": 1}))) == 1
    assert exit_code(RunOutcome(1, Counter({"succeeded": 3, "queued": 1}))) == 3
    assert exit_code(RunOutcome(1, Counter({"succeeded": 3}), journal_pending=2)) == 3


def test_the_journal_keeps_order_skips_a_torn_last_line_and_replays_into_the_store(store: Store,
                                                                                   tmp_path: Path) -> None:
    from orchestrator.store.journal import Journal, StoreWriter

    run_id, _, (first, second) = make_jobs(store, 2)
    journal = Journal(tmp_path / "run.jsonl")
    journal.append({"op": "dispatched", "args": {"job_id": first, "attempt": 1, "spool_key": "a.1",
                                                 "job_doc": {"job_id": "a"}}})
    journal.append({"op": "ingest", "args": {"job_id": first, "attempt": 1, "spool_key": "a.1", "facts_id": None,
                                             "python_version": None, "result": fake_result([1_000_000])}})
    journal.append({"op": "finish", "args": {"job_id": second, "status": "failed", "failure": "load-error",
                                             "reason": "model failed to load"}})
    with open(journal.path, "a") as handle:
        handle.write('{"op": "ingest", "args": {"job_id"')  # the controller was killed mid-append
    assert [entry["op"] for entry in journal.entries()] == ["dispatched", "ingest", "finish"]
    writer = StoreWriter(store, run_id, journal)
    assert writer.replay() == 0 and not journal.path.exists()
    assert writer.replay() == 0  # nothing left, nothing applied twice
    assert jobs.status_counts(store, run_id) == {"succeeded": 1, "failed": 1}
