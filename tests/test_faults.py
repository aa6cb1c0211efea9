"""Faults injected into real runs on this machine: a killed job process, a dropped agent link, two
controllers on one host, a benchmark that cannot load, a database that goes away."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from farm_lab.lingering import processes
from orchestrator.integrity import check_run
from orchestrator.inventory import load_inventory
from orchestrator.lifecycle import RetryPolicy
from orchestrator.matrix import MatrixSpec
from orchestrator.models import registry
from orchestrator.resume import resume
from orchestrator.scheduler import Runner, RunOutcome
from orchestrator.store import open_store
from orchestrator.store.db import Store
from orchestrator.store.schema import HostRow, JobRow, ModelRow, ResultRow
from tests.model_setup import register_models

FAST = RetryPolicy(retries=3, backoff=0.2, max_backoff=1.0, unhealthy_after=3)


def spec(seconds: float, threads: tuple[int, ...] = (1, 2)) -> MatrixSpec:
    return MatrixSpec(name="faults", models=("all",), delegates=("cpu",), threads=threads,
                      timing={"min_runs": 5, "min_seconds": seconds, "warmup_min_seconds": 0.0})


@pytest.fixture
def sqlite_store(tmp_path: Path, shared_model: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    registry.add_file(store, shared_model, name="mobilenet")
    try:
        yield store
    finally:
        store.close()


def run_in_thread(runner: Runner, matrix: MatrixSpec) -> tuple[threading.Thread, dict]:
    box: dict = {}
    inventory = load_inventory(None)

    def go() -> None:
        try:
            box["outcome"] = runner.run(matrix, list(inventory.hosts), registry.list_models(runner.store),
                                        inventory.path)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


def finish(thread: threading.Thread, box: dict) -> RunOutcome:
    thread.join(timeout=300)
    assert not thread.is_alive(), "run did not finish"
    if "error" in box:
        raise box["error"]
    return box["outcome"]


def wait_for(predicate: Callable[[], object], what: str, limit: float = 120.0) -> object:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def spool_dir() -> Path:
    return Path(os.environ["HOME"]) / ".cache" / "farm" / "spool"


def running_job_pid() -> int | None:
    for pid_file in spool_dir().glob("*.pid.json"):
        key = pid_file.name[:-len(".pid.json")]
        if not (spool_dir() / f"{key}.result.json").exists():
            return json.loads(pid_file.read_text())["pid"]
    return None


def serve_pids() -> list[int]:
    """The agent `serve` processes of this test's home (the controller's end of the link)."""
    home = os.environ["HOME"]
    found = []
    for entry, words in processes():
        try:
            if (entry / "comm").read_text().strip() == "farm-job":  # a detached job, forked from serve
                continue
        except OSError:
            continue
        if "serve" in words and any(w.endswith(".pyz") for w in words):
            try:
                cwd = os.readlink(entry / "cwd")  # the local transport starts it in the (test's) home
            except OSError:
                continue
            if cwd == home:
                found.append(int(entry.name))
    return found


def test_a_killed_job_process_is_retried_as_a_new_attempt(sqlite_store: Store) -> None:
    runner = Runner(sqlite_store, policy=FAST)
    thread, box = run_in_thread(runner, spec(1.5))
    pid = wait_for(running_job_pid, "a job process")
    os.kill(pid, signal.SIGKILL)  # the agent dies mid-benchmark
    outcome = finish(thread, box)
    report = check_run(sqlite_store, outcome.run_id)
    assert report.ok and report.by_status == {"succeeded": 2}
    with sqlite_store.session() as session:
        attempts = sorted(session.scalars(select(JobRow.attempt).where(JobRow.run_id == outcome.run_id)))
        stored = sorted(session.scalars(select(ResultRow.attempt)))
    assert attempts == [1, 2] and stored == [1, 2]  # the killed attempt ran again, once
    assert sum(lane.retries for lane in outcome.lanes.values()) == 1
    assert not list(spool_dir().glob("*.json"))  # every key acknowledged


def test_a_dropped_link_is_reconnected_and_the_same_attempt_collected(sqlite_store: Store) -> None:
    runner = Runner(sqlite_store, policy=FAST)
    thread, box = run_in_thread(runner, spec(2.0))
    wait_for(running_job_pid, "a job process")
    for pid in serve_pids():
        os.kill(pid, signal.SIGKILL)  # the controller's session dies; the detached job does not
    outcome = finish(thread, box)
    report = check_run(sqlite_store, outcome.run_id)
    assert report.ok and report.by_status == {"succeeded": 2}
    lanes = list(outcome.lanes.values())
    assert sum(lane.reconnects for lane in lanes) == 1 and sum(lane.collected_late for lane in lanes) == 1
    assert sum(lane.retries for lane in lanes) == 0
    with sqlite_store.session() as session:
        assert sorted(session.scalars(select(ResultRow.attempt))) == [1, 1]


def test_a_model_that_cannot_load_fails_once_without_retries(sqlite_store: Store, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + bytes(range(256)) * 8)
    with sqlite_store.session() as session:
        session.add(ModelRow(sha256=hashlib.sha256(broken.read_bytes()).hexdigest(), name="broken", family="x",
                             params={}, source="imported", path=str(broken), size_bytes=broken.stat().st_size,
                             inputs=[], outputs=[]))
        session.commit()
    runner = Runner(sqlite_store, policy=FAST)
    thread, box = run_in_thread(runner, spec(0.0, threads=(1,)))
    outcome = finish(thread, box)
    with sqlite_store.session() as session:
        rows = {row.model_id: row for row in session.scalars(select(JobRow).where(JobRow.run_id == outcome.run_id))}
        broken_job = next(row for row in rows.values() if row.status == "failed")
        assert (broken_job.failure, broken_job.error_kind, broken_job.attempt) == ("load-error", "benchmark", 1)
        assert "model failed to load" in broken_job.reason
        host = session.scalar(select(HostRow))
        assert (host.health, host.infra_failures) == ("ok", 0)
    assert check_run(sqlite_store, outcome.run_id).ok


def test_two_controllers_never_run_two_benchmarks_on_one_host_at_once(tmp_path: Path, shared_model: Path) -> None:
    import subprocess
    import sys

    matrix = tmp_path / "m.yaml"
    matrix.write_text("matrices:\n  two:\n    models: [mobilenet]\n    threads: [1, 2]\n"
                      "    timing: {min_runs: 5, min_seconds: 1.0, warmup_min_seconds: 0}\n")
    dbs = [f"sqlite:///{tmp_path / f'c{n}.db'}" for n in (1, 2)]
    for db in dbs:
        register_models(db, files=[(shared_model, "mobilenet")])  # setup in this process: tests/model_setup.py
    controllers = [subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "-m", "two", "--matrix-file",
                                     str(matrix), "--db", db], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True) for db in dbs]
    for controller in controllers:
        out, _ = controller.communicate(timeout=300)
        assert controller.returncode == 0, out
    spans = []
    for db in dbs:
        store = open_store(db)
        try:
            assert check_run(store, 1).by_status == {"succeeded": 2}
            with store.session() as session:
                spans += [(r.detail["started_at"], r.detail["finished_at"]) for r in session.scalars(select(ResultRow))]
        finally:
            store.close()
    spans.sort()
    assert len(spans) == 4
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans  # one benchmark at a time on the host


# --- the database goes away --------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy in front of PostgreSQL that can be cut (listener closed, connections reset) and restored."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone would leave it accepting.
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def proxied_pg(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Proxy]]:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.up()
    monkeypatch.setenv("FARM_DB_RETRY_SECONDS", "1")
    try:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.down()


def test_a_database_outage_mid_run_is_journaled_and_replayed(proxied_pg: tuple[str, Proxy],
                                                              shared_model: Path) -> None:
    url, proxy = proxied_pg
    store = open_store(url)
    try:
        registry.add_file(store, shared_model, name="mobilenet")
        runner = Runner(store, policy=FAST)
        thread, box = run_in_thread(runner, spec(1.5))
        wait_for(running_job_pid, "a job process")
        proxy.down()  # the database goes away while the first benchmark runs
        journal = wait_for(lambda: list((Path(os.environ["FARM_DATA_DIR"]) / "journal").glob("*.jsonl")),
                           "a journal entry")
        time.sleep(1.0)
        proxy.up()
        outcome = finish(thread, box)
        assert outcome.store_stats["journaled"] >= 1 and outcome.store_stats["replayed"] >= 1
        assert outcome.journal_pending == 0 and not journal[0].exists()
        report = check_run(store, outcome.run_id)
        assert report.ok and report.by_status == {"succeeded": 2}, report
    finally:
        store.close()


def test_a_database_still_away_at_the_end_leaves_the_run_to_resume(proxied_pg: tuple[str, Proxy],
                                                                   shared_model: Path) -> None:
    url, proxy = proxied_pg
    store = open_store(url)
    try:
        registry.add_file(store, shared_model, name="mobilenet")
        runner = Runner(store, policy=FAST)
        thread, box = run_in_thread(runner, spec(1.0))
        wait_for(running_job_pid, "a job process")
        proxy.down()
        outcome = finish(thread, box)
        assert outcome.journal_pending > 0  # farm run exits 3: incomplete
        results = [json.loads(line) for line in
                   (Path(os.environ["FARM_DATA_DIR"]) / "journal" / f"run-{outcome.run_id}.jsonl").read_text()
                   .splitlines()]
        assert sum(1 for entry in results if entry["op"] == "ingest") == 2  # both results are on disk
        proxy.up()
        inventory = load_inventory(None)
        resumed = resume(Runner(store, policy=FAST), outcome.run_id, list(inventory.hosts))
        assert resumed.journal_pending == 0
        report = check_run(store, outcome.run_id)
        assert report.ok and report.by_status == {"succeeded": 2} and report.results == 2
    finally:
        store.close()


def test_an_unhealthy_host_gets_its_next_job_only_after_a_health_check(sqlite_store: Store) -> None:
    runner = Runner(sqlite_store, policy=RetryPolicy(retries=3, backoff=0.2, max_backoff=1.0, unhealthy_after=1))
    thread, box = run_in_thread(runner, spec(1.5))
    os.kill(wait_for(running_job_pid, "a job process"), signal.SIGKILL)
    outcome = finish(thread, box)
    assert check_run(sqlite_store, outcome.run_id).by_status == {"succeeded": 2}
    assert sum(lane.health_checks for lane in outcome.lanes.values()) == 1
    with sqlite_store.session() as session:
        host = session.scalar(select(HostRow))
        # The retried job's result is stored once the next job has started, after the health check
        # that let that next job go: the check is what turned the host healthy again.
        assert (host.health, host.health_reason, host.infra_failures) == ("ok", "health check passed", 0)


def test_a_host_unreachable_at_the_start_is_marked_unhealthy_until_it_answers(sqlite_store: Store,
                                                                             tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("hosts:\n  - name: local\n    transport: local\n    python: /nonexistent/python3\n")
    inventory = load_inventory(broken)
    policy = RetryPolicy(retries=1, backoff=0.1, max_backoff=0.1, unhealthy_after=1)
    outcome = Runner(sqlite_store, policy=policy).run(spec(0.0, threads=(1,)), list(inventory.hosts),
                                                      registry.list_models(sqlite_store), inventory.path)
    assert outcome.counts == {"failed": 1} and "local" in outcome.unreachable
    with sqlite_store.session() as session:
        job = session.scalar(select(JobRow))
        assert (job.failure, job.error_kind) == ("unreachable", "infrastructure")
        assert session.scalar(select(HostRow.health)) == "unhealthy"
    thread, box = run_in_thread(Runner(sqlite_store, policy=policy), spec(0.0, threads=(1,)))
    assert finish(thread, box).counts == {"succeeded": 1}
    with sqlite_store.session() as session:
        assert session.scalar(select(HostRow.health)) == "ok"


def test_resume_retries_infrastructure_failures_but_not_benchmark_failures(sqlite_store: Store,
                                                                           tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("hosts:\n  - name: local\n    transport: local\n    python: /nonexistent/python3\n")
    inventory = load_inventory(broken)
    policy = RetryPolicy(retries=1, backoff=0.1, max_backoff=0.1, unhealthy_after=1)
    outcome = Runner(sqlite_store, policy=policy).run(spec(0.0), list(inventory.hosts),
                                                      registry.list_models(sqlite_store), inventory.path)
    assert outcome.counts == {"failed": 2}
    with sqlite_store.session() as session:  # one of them failed as a benchmark: that verdict stands
        job = session.scalar(select(JobRow).where(JobRow.run_id == outcome.run_id).order_by(JobRow.id))
        job.failure, job.error_kind, job.reason = "load-error", "benchmark", "model failed to load: x"
        session.commit()
    resumed = resume(Runner(sqlite_store, policy=policy), outcome.run_id, list(load_inventory(None).hosts))
    assert resumed.counts == {"failed": 1, "succeeded": 1}
    report = check_run(sqlite_store, outcome.run_id)
    assert report.ok and report.results == 1


def test_a_silent_link_is_declared_lost_and_the_job_collected_after_reconnecting(sqlite_store: Store) -> None:
    runner = Runner(sqlite_store, policy=FAST)
    thread, box = run_in_thread(runner, spec(4.0, threads=(1,)))
    wait_for(running_job_pid, "a job process")
    stopped = serve_pids()
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # a cut cable: no EOF, no answer, nothing
    try:
        outcome = finish(thread, box)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    lane = next(iter(outcome.lanes.values()))
    assert (lane.reconnects, lane.collected_late, lane.retries) == (1, 1, 0)
    assert check_run(sqlite_store, outcome.run_id).by_status == {"succeeded": 1}
