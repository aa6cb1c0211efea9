"""The crash-safety gaps the fault campaign found, each reproduced deterministically, then closed:
a database restart while a run or a resume starts, a host unreachable when a run starts, and a
controller killed before its jobs were planned."""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select

from orchestrator.cli.resume import exit_code, resume_run
from orchestrator.integrity import check_run
from orchestrator.inventory import load_inventory
from orchestrator.lifecycle import RetryPolicy
from orchestrator.models import registry
from orchestrator.resume import resume, run_to_resume
from orchestrator.scheduler import QuietObserver, Runner
from orchestrator.store import jobs as job_store
from orchestrator.store import open_store
from orchestrator.store.db import Store
from orchestrator.store.schema import HostRow, JobRow
from tests.test_faults import FAST, Proxy, spec

NO_RETRY = RetryPolicy(retries=0, backoff=0.1, max_backoff=0.1, unhealthy_after=1)


@pytest.fixture
def proxied_store(pg_url: str, shared_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, Proxy]]:
    """A PostgreSQL store reached through a proxy that a test can cut; outages outlast no write's retries."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.up()
    monkeypatch.setenv("FARM_DB_RETRY_SECONDS", "30")
    store = open_store(url.set(port=proxy.port).render_as_string(hide_password=False))
    registry.add_file(store, shared_model, name="mobilenet")
    try:
        yield store, proxy
    finally:
        store.close()
        proxy.down()


def write_inventory(path: Path, python: str) -> Path:
    path.write_text(f"hosts:\n  - name: local\n    transport: local\n    python: {python}\n")
    return path


def failed_run(store: Store, inventory: Path) -> int:
    """A run whose two jobs failed for infrastructure reasons (its host's Python was missing)."""
    hosts = list(load_inventory(write_inventory(inventory, "/nonexistent/python3")).hosts)
    outcome = Runner(store, policy=NO_RETRY).run(spec(0.0), hosts, registry.list_models(store), str(inventory))
    assert outcome.counts == {"failed": 2}
    write_inventory(inventory, sys.executable)  # the host is fixed: --resume runs the jobs again
    return outcome.run_id


def up_later(proxy: Proxy, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proxy.up)
    timer.start()
    return timer


# --- gap 1: a database restart while a run or a resume starts ---------------------------------------------------

def test_a_resume_started_while_the_database_restarts_waits_for_it(proxied_store: tuple[Store, Proxy],
                                                                   tmp_path: Path) -> None:
    store, proxy = proxied_store
    run_id = failed_run(store, tmp_path / "inventory.yaml")
    store.engine.dispose()  # the pool's connections die with the proxy, as with a restarted server
    proxy.down()
    timer = up_later(proxy, 2.0)
    console = Console(file=io.StringIO())
    outcome = resume_run(run_id, None, store, None, None, {}, QuietObserver(), console)  # as `farm run --resume`
    timer.join()
    assert exit_code(outcome) == 0
    report = check_run(store, run_id)
    assert report.ok and report.by_status == {"succeeded": 2}, report


def test_a_run_started_while_the_database_restarts_waits_for_it(proxied_store: tuple[Store, Proxy]) -> None:
    store, proxy = proxied_store
    models, inventory = registry.list_models(store), load_inventory(None)
    store.engine.dispose()  # the pool's connections die with the proxy, as with a restarted server
    proxy.down()
    timer = up_later(proxy, 2.0)
    outcome = Runner(store, policy=FAST).run(spec(0.0), list(inventory.hosts), models, inventory.path)
    timer.join()
    assert outcome.store_stats.get("retried", 0) >= 1  # it did meet the outage
    report = check_run(store, outcome.run_id)
    assert report.ok and report.by_status == {"succeeded": 2}, report


# --- gap 2: a host unreachable when a run (re)starts --------------------------------------------------------------

RETRY_FAST = RetryPolicy(retries=2, backoff=0.1, max_backoff=0.5, unhealthy_after=2)


@pytest.fixture
def sqlite_store(tmp_path: Path, shared_model: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    registry.add_file(store, shared_model, name="mobilenet")
    try:
        yield store
    finally:
        store.close()


class BackAfter(QuietObserver):
    """Counts the host's failed connections; after ``failures`` of them its Python appears (the board is up)."""

    def __init__(self, python: Path, failures: int) -> None:
        self.python, self.failures, self.unreachable = python, failures, 0

    def host_state(self, host: str, text: str) -> None:
        if not text.startswith("unreachable"):
            return
        self.unreachable += 1
        if self.unreachable == self.failures:  # a wrapper, not a link: the venv's Python finds its venv
            staged = self.python.with_suffix(".new")
            staged.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
            staged.chmod(0o755)
            staged.rename(self.python)


def missing_python(tmp_path: Path) -> tuple[Path, list]:
    python = tmp_path / "board" / "python3"
    python.parent.mkdir()
    inventory = write_inventory(tmp_path / "board.yaml", str(python))
    return python, list(load_inventory(inventory).hosts)


def test_a_host_unreachable_when_a_run_starts_is_retried_with_backoff(sqlite_store: Store, tmp_path: Path) -> None:
    python, hosts = missing_python(tmp_path)
    observer = BackAfter(python, failures=2)
    outcome = Runner(sqlite_store, observer, policy=RETRY_FAST).run(spec(0.0), hosts,
                                                                    registry.list_models(sqlite_store), "board.yaml")
    assert observer.unreachable == 2 and outcome.counts == {"succeeded": 2} and not outcome.unreachable
    with sqlite_store.session() as session:
        assert session.scalar(select(HostRow.health)) == "ok"
    assert check_run(sqlite_store, outcome.run_id).ok


def test_a_host_unreachable_past_the_retry_budget_leaves_its_jobs_to_resume(sqlite_store: Store,
                                                                            tmp_path: Path) -> None:
    python, hosts = missing_python(tmp_path)
    observer = BackAfter(python, failures=RETRY_FAST.retries + 2)  # back only after the budget is spent
    outcome = Runner(sqlite_store, observer, policy=RETRY_FAST).run(spec(0.0), hosts,
                                                                    registry.list_models(sqlite_store), "board.yaml")
    assert observer.unreachable == RETRY_FAST.retries + 1  # the first try and every retry
    assert outcome.counts == {"failed": 2} and "local" in outcome.unreachable
    with sqlite_store.session() as session:
        assert session.scalar(select(HostRow.health)) == "unhealthy"
        assert {(job.failure, job.error_kind) for job in session.scalars(select(JobRow))} \
            == {("unreachable", "infrastructure")}
    resumed = resume(Runner(sqlite_store, observer, policy=RETRY_FAST), outcome.run_id, hosts)
    assert observer.unreachable == RETRY_FAST.retries + 2 and resumed.counts == {"succeeded": 2}
    report = check_run(sqlite_store, outcome.run_id)
    assert report.ok and report.by_status == {"succeeded": 2}


def test_a_host_unreachable_when_a_run_resumes_is_retried_with_backoff(sqlite_store: Store, tmp_path: Path) -> None:
    run_id = failed_run(sqlite_store, tmp_path / "inventory.yaml")
    python, hosts = missing_python(tmp_path)
    observer = BackAfter(python, failures=1)
    resumed = resume(Runner(sqlite_store, observer, policy=RETRY_FAST), run_id, hosts)
    assert observer.unreachable == 1 and resumed.counts == {"succeeded": 2} and not resumed.unreachable
    report = check_run(sqlite_store, run_id)
    assert report.ok and report.by_status == {"succeeded": 2}


# --- gap 3: a controller killed before its jobs were planned ------------------------------------------------------

class Killed(BaseException):
    """The controller's SIGKILL, the moment it has said "Run N started" and stored nothing else."""


def test_a_run_killed_before_its_jobs_were_planned_is_planned_by_resume(sqlite_store: Store) -> None:
    inventory = load_inventory(None)
    hosts, models = list(inventory.hosts), registry.list_models(sqlite_store)
    reference = Runner(sqlite_store, policy=FAST).run(spec(0.0), hosts, models, inventory.path)
    runner = Runner(sqlite_store, policy=FAST)

    def die(run_id: int) -> None:
        raise Killed(run_id)

    runner.on_run_created = die
    with pytest.raises(Killed) as killed:
        runner.run(spec(0.0), hosts, models, inventory.path)
    run_id = killed.value.args[0]
    assert job_store.status_counts(sqlite_store, run_id) == {}  # nothing planned
    assert run_to_resume(sqlite_store, None).id == run_id  # what `farm run --resume` picks
    resumed = resume(Runner(sqlite_store, policy=FAST), run_id, hosts)
    assert resumed.counts == {"succeeded": 2}
    report, expected = check_run(sqlite_store, run_id), check_run(sqlite_store, reference.run_id)
    assert report.ok and report.cells == expected.cells and report.by_status == expected.by_status
    again = resume(Runner(sqlite_store, policy=FAST), run_id, hosts)  # planned once: nothing more to do
    assert check_run(sqlite_store, run_id).by_status == {"succeeded": 2} and not again.counts.get("queued")


def test_the_plan_a_run_carries_gives_back_the_same_matrix() -> None:
    from orchestrator.matrix import MatrixSpec
    from orchestrator.replan import plan_document, spec_from_document

    for original in (MatrixSpec(name="sweep", models=("family:conv_stack", "abc123"), delegates=None, threads=(1, 4),
                                hosts=("nano",), tags=("lab-a",), timing={"min_runs": 5.0}, power_modes=None,
                                usb_ports=("usb1",), regression={"threshold_pct": 10.0}),
                     MatrixSpec(name="all")):
        doc = json.loads(json.dumps(plan_document(original, [], [])))  # as the JSON column gives it back
        assert spec_from_document(doc["spec"]) == original


def test_a_run_killed_between_storing_its_jobs_and_their_documents_resumes_the_planned_jobs(
        sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = load_inventory(None)
    hosts, models = list(inventory.hosts), registry.list_models(sqlite_store)
    planned: dict[int, dict] = {}

    def die(store: Store, documents: dict[int, dict]) -> None:
        planned.update(documents)  # what the planner made, and was killed before storing
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(job_store, "set_documents", die)
        with pytest.raises(Killed):
            Runner(sqlite_store, policy=FAST).run(spec(0.0), hosts, models, inventory.path)
    run_id = run_to_resume(sqlite_store, None).id
    assert job_store.status_counts(sqlite_store, run_id) == {"queued": 2} and len(planned) == 2
    resumed = resume(Runner(sqlite_store, policy=FAST), run_id, hosts)
    assert resumed.counts == {"succeeded": 2}
    with sqlite_store.session() as session:  # the documents sent are the planner's own, not look-alikes
        assert {job.id: job.job_doc for job in session.scalars(select(JobRow).where(JobRow.run_id == run_id))} \
            == planned
    assert check_run(sqlite_store, run_id).ok
