"""The agent's spool and host lock, for real: serve processes, detached job processes, a simulated Jetson Nano."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import hostlock, power, restore_state
from agent.schema import make_job
from farm_lab import hardware
from tests.conftest import REPO

FIVE_WATT = {"name": "5W", "nvpmodel": 1, "jetson_clocks": False, "settle_seconds": 0}
QUICK = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.0}


class Serve:
    """One `agent serve` process, as the controller's session runs it."""

    def __init__(self, argv: list[str] | None = None, **extra_env: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), **extra_env}
        self.process = subprocess.Popen(argv or [sys.executable, "-m", "agent", "serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.ids = 0

    def ask(self, **request: object) -> dict:
        self.ids += 1
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({**request, "id": self.ids}) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        assert reply["id"] == self.ids
        return reply

    def kill(self) -> None:
        self.process.kill()  # what a dropped SSH link does to the session's processes at worst
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask(op="exit")
            self.process.wait(timeout=30)


@pytest.fixture
def nano(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "nano"
    hardware.install_jetson_nano(root)
    for name, value in hardware.standin_env(root).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FARM_AGENT_DIR", str(tmp_path / "agent"))
    monkeypatch.setenv("FARM_NO_SUDO", "1")
    return root


def job(model: Path, name: str, **timing: float) -> dict:
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    return make_job(name, str(model), sha, timing={**QUICK, **timing}, power=FIVE_WATT)


def collect_until_done(serve: Serve, key: str) -> dict:
    for _ in range(600):
        reply = serve.ask(op="collect", keys=[key], wait=1.0)
        if key not in reply["running"]:
            return reply
    raise AssertionError(f"{key} still running")


def pid_of(key: str) -> int:
    from agent import spool

    return json.loads(Path(spool._path(key, "pid")).read_text())["pid"]


def test_a_job_survives_its_session_and_is_collected_by_the_next(nano: Path, shared_model: Path) -> None:
    first = Serve()
    started = first.ask(op="start", key="7.1", holder="ctl-a", job=job(shared_model, "run1-job7", min_seconds=1.0))
    assert started["ok"] and started["state"] == "started"
    first.kill()  # the link drops while the job runs
    second = Serve()
    try:
        reply = collect_until_done(second, "7.1")
        result = reply["finished"]["7.1"]
        assert result["status"] == "succeeded" and result["job_id"] == "run1-job7" and result["spool_key"] == "7.1"
        assert result["power"]["requested"]["name"] == "5W" and len(result["timing"]["samples_ns"]) >= 5
        assert power.current_mode()["name"] == "MAXN"  # restored by the job process itself
        # Collect is repeatable until acknowledged; ack forgets it.
        assert second.ask(op="collect", keys=["7.1"])["finished"]["7.1"] == result
        assert second.ask(op="ack", keys=["7.1"])["acked"] == ["7.1"]
        assert second.ask(op="collect", keys=["7.1"])["unknown"] == ["7.1"]
        assert second.ask(op="collect")["finished"] == {}
    finally:
        second.close()


def test_a_job_queued_after_a_running_one_starts_when_it_is_done_with_no_request_between(
        nano: Path, shared_model: Path) -> None:
    from agent import spool

    serve = Serve()
    try:
        assert serve.ask(op="start", key="1.1", job=job(shared_model, "a", min_seconds=1.0))["state"] == "started"
        queued = serve.ask(op="start", key="2.1", job=job(shared_model, "b"), after="1.1")
        assert queued["state"] == "queued" and not Path(spool._path("2.1", "pid")).exists()
        assert serve.ask(op="collect", keys=["2.1"])["running"] == ["2.1"]  # queued counts as on its way
        first = serve.ask(op="collect", keys=["1.1"], wait=60)["finished"]["1.1"]
        # Started by the spool when 1.1 was done, before that collect answered: its process exists.
        assert Path(spool._path("2.1", "pid")).exists()
        second = collect_until_done(serve, "2.1")["finished"]["2.1"]
        assert second["status"] == "succeeded" and second["started_at"] >= first["finished_at"]
        # A start "after" a job that is no longer running is a plain start.
        assert serve.ask(op="start", key="3.1", job=job(shared_model, "c"), after="2.1")["state"] == "started"
        assert collect_until_done(serve, "3.1")["finished"]["3.1"]["status"] == "succeeded"
    finally:
        serve.close()


def children_named(parent: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name \
                    and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_queueing_forks_a_standby_and_a_dead_standby_costs_only_a_fresh_fork(nano: Path, shared_model: Path) -> None:
    serve = Serve()
    try:
        assert serve.ask(op="start", key="1.1", job=job(shared_model, "a", min_seconds=1.0))["state"] == "started"
        assert serve.ask(op="start", key="2.1", job=job(shared_model, "b"), after="1.1")["state"] == "queued"
        deadline = time.monotonic() + 10  # it names itself once it runs
        while not (standby := children_named(serve.process.pid, "farm-standby")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(standby) == 1  # the next job's process, forked while 1.1 runs, waiting for its order
        os.kill(standby[0], signal.SIGKILL)
        serve.ask(op="collect", keys=["1.1"], wait=60)
        second = collect_until_done(serve, "2.1")["finished"]["2.1"]
        assert second["status"] == "succeeded" and second["job_id"] == "b"
        assert not children_named(serve.process.pid, "farm-standby")
    finally:
        serve.close()


def test_a_queued_job_outlives_its_serve_and_the_next_serve_starts_it(nano: Path, shared_model: Path) -> None:
    from agent import spool

    first = Serve()
    assert first.ask(op="start", key="4.1", job=job(shared_model, "a", min_seconds=1.0))["state"] == "started"
    assert first.ask(op="start", key="5.1", job=job(shared_model, "b"), after="4.1")["state"] == "queued"
    first.kill()  # the link drops: nobody is left to start 5.1 when 4.1 is done
    deadline = time.monotonic() + 60
    while not Path(spool._path("4.1", "result")).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert not Path(spool._path("5.1", "pid")).exists()
    assert spool.state_of("5.1") == "running"  # still queued, not dead: a serve will start it
    second = Serve()
    try:
        result = collect_until_done(second, "5.1")["finished"]["5.1"]
        assert result["status"] == "succeeded" and result["job_id"] == "b"
        assert second.ask(op="ack", keys=["4.1", "5.1"])["acked"] == ["4.1", "5.1"]
        assert not list(Path(spool.spool_dir()).glob("5.1.*"))
    finally:
        second.close()


def test_starting_a_known_key_starts_nothing(nano: Path, shared_model: Path) -> None:
    serve = Serve()
    try:
        document = job(shared_model, "run1-job8", min_seconds=1.0)
        assert serve.ask(op="start", key="8.1", holder="ctl-a", job=document)["state"] == "started"
        pid = pid_of("8.1")
        assert serve.ask(op="start", key="8.1", holder="ctl-a", job=document)["state"] == "running"
        assert pid_of("8.1") == pid
        collect_until_done(serve, "8.1")
        assert serve.ask(op="start", key="8.1", holder="ctl-a", job=document)["state"] == "finished"
        assert len(serve.ask(op="collect")["finished"]) == 1
    finally:
        serve.close()


def test_a_killed_job_is_reported_dead_its_lock_freed_and_its_power_mode_restored(
        nano: Path, shared_model: Path) -> None:
    serve = Serve()
    try:
        assert serve.ask(op="start", key="9.1", holder="ctl-a",
                         job=job(shared_model, "run1-job9", min_seconds=60.0))["state"] == "started"
        for _ in range(300):  # until the job has switched the board to 5W
            if power.current_mode()["name"] == "5W":
                break
            time.sleep(0.1)
        assert power.current_mode()["name"] == "5W"
        os.kill(pid_of("9.1"), signal.SIGKILL)
        reply = collect_until_done(serve, "9.1")
        assert reply["dead"] == ["9.1"] and reply["finished"] == {}
        assert hostlock.holder_of() is None  # its process is gone: no need to wait for the lease
        restored = serve.ask(op="ping")["power_restored"]
        assert [r["restored"] for r in restored] == [True] and restored[0]["mode"]["name"] == "MAXN", restored
        assert power.current_mode()["name"] == "MAXN"
        assert serve.ask(op="ack", keys=["9.1"])["acked"] == ["9.1"]
    finally:
        serve.close()


def test_a_second_controller_waits_for_the_host(nano: Path, shared_model: Path, tmp_path: Path) -> None:
    # The second controller deployed its agent to a workdir of its own: the lock is the device's all the same.
    a, b = Serve(), Serve(FARM_AGENT_DIR=str(tmp_path / "other-workdir"))
    try:
        assert a.ask(op="start", key="a-1.1", holder="ctl-a", job=job(shared_model, "a-1", min_seconds=2.0)
                     )["state"] == "started"
        busy = b.ask(op="start", key="b-1.1", holder="ctl-b", job=job(shared_model, "b-1"))
        assert busy["state"] == "busy" and busy["holder"] == "ctl-a" and busy["busy_key"] == "a-1.1"
        assert b.ask(op="collect", keys=["b-1.1"])["unknown"] == ["b-1.1"]  # nothing was spooled
        first = collect_until_done(a, "a-1.1")["finished"]["a-1.1"]
        # The job frees the host right after its result is written: b asks again, as a controller does.
        for _ in range(100):
            state = b.ask(op="start", key="b-1.1", holder="ctl-b", job=job(shared_model, "b-1"))["state"]
            if state != "busy":
                break
            time.sleep(0.05)
        assert state == "started"
        second = collect_until_done(b, "b-1.1")["finished"]["b-1.1"]
        assert first["finished_at"] <= second["started_at"]
    finally:
        a.close()
        b.close()


def test_an_expired_lease_is_taken_over(nano: Path) -> None:
    taken, _ = hostlock.acquire("ctl-a", "1.1", lease=60)
    assert taken
    assert hostlock.acquire("ctl-b", "2.1")[0] is False
    # ctl-a's process never renews (it died before it started its job): once expired, the lock is free.
    path = Path(hostlock.lock_path())
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "expires_at": time.time() - 1}))
    taken, doc = hostlock.acquire("ctl-b", "2.1")
    assert taken and doc["took_over"] == {"holder": "ctl-a", "key": "1.1"}
    assert hostlock.renew("1.1") is False and hostlock.renew("2.1") is True
    assert hostlock.release("1.1") is False and hostlock.release("2.1") is True
    assert hostlock.holder_of() is None


def test_a_holder_whose_result_is_written_is_only_leaving(nano: Path) -> None:
    """Between writing its result and releasing the lock a job still holds it, alive: a start that
    comes then (the collect was woken by the result) takes the lock instead of waiting a lease out."""
    assert hostlock.acquire("ctl", "1.1", lease=60)[0]
    assert hostlock.set_owner("1.1", os.getpid(), restore_state.process_start(os.getpid()))
    assert hostlock.acquire("ctl", "2.1", finished=lambda key: False)[0] is False
    taken, doc = hostlock.acquire("ctl", "2.1", finished=lambda key: key == "1.1")
    assert taken and doc["key"] == "2.1" and "took_over" not in doc
    assert hostlock.release("1.1") is False  # the leaving job's own release frees nothing now
    assert hostlock.holder_of()["key"] == "2.1"


def test_acks_ride_on_a_start_or_a_collect(nano: Path, shared_model: Path) -> None:
    serve = Serve()
    try:
        assert serve.ask(op="start", key="5.1", job=job(shared_model, "5"))["state"] == "started"
        assert collect_until_done(serve, "5.1")["finished"]["5.1"]["status"] == "succeeded"
        started = serve.ask(op="start", key="6.1", job=job(shared_model, "6"), ack=["5.1"])
        assert started["state"] == "started" and started["ack"] == {"acked": ["5.1"], "kept": []}
        assert collect_until_done(serve, "6.1")["finished"]["6.1"]["status"] == "succeeded"
        # A running key is kept: only what the controller has stored may go.
        assert serve.ask(op="start", key="7.1", job=job(shared_model, "7", min_seconds=3.0))["state"] == "started"
        reply = serve.ask(op="collect", keys=["6.1", "7.1"], wait=0, ack=["6.1", "7.1"])
        assert reply["ack"] == {"acked": ["6.1"], "kept": ["7.1"]} and reply["running"] == ["7.1"]
        assert collect_until_done(serve, "7.1")["finished"]["7.1"]["status"] == "succeeded"
        assert serve.ask(op="collect", keys=["5.1", "6.1"])["unknown"] == ["5.1", "6.1"]
    finally:
        serve.close()


@pytest.mark.parametrize("request_doc, words", [
    ({"op": "start", "key": "../etc/passwd", "job": {}}, "field 'key'"),
    ({"op": "start", "key": "1.1", "job": "x"}, "field 'job'"),
    ({"op": "collect", "keys": "1.1"}, "field 'keys'"),
    ({"op": "collect", "wait": -1}, "field 'wait'"),
    ({"op": "ack", "keys": ["a b"]}, "field 'key'"),
])
def test_bad_spool_requests_name_the_field(nano: Path, request_doc: dict, words: str) -> None:
    serve = Serve()
    try:
        reply = serve.ask(**request_doc)
        assert reply["ok"] is False and words in reply["error"]
    finally:
        serve.close()


def test_the_zipapp_spools_under_python_36(nano: Path, shared_model: Path, tmp_path: Path) -> None:
    from orchestrator.deploy import build_agent
    from tests.test_agent import python36

    bundle = build_agent()
    pyz = tmp_path / bundle.file_name
    pyz.write_bytes(bundle.data)
    serve = Serve([python36(), str(pyz), "serve"])
    try:
        slow = {**job(shared_model, "py36"), "power": {**FIVE_WATT, "settle_seconds": 1.0}}
        assert serve.ask(op="start", key="36.1", holder="ctl", job=slow)["state"] == "started"
        # The queue and its standby process under 3.6 too.
        assert serve.ask(op="start", key="36.2", holder="ctl", job=job(shared_model, "py36-next"),
                         after="36.1")["state"] == "queued"
        result = collect_until_done(serve, "36.1")["finished"]["36.1"]
        # The 3.6 interpreter has no TFLite runtime: the detached process ran and said so.
        assert result["status"] == "failed" and "no TFLite runtime" in result["error"]["message"]
        following = collect_until_done(serve, "36.2")["finished"]["36.2"]
        assert following["job_id"] == "py36-next" and "no TFLite runtime" in following["error"]["message"]
        assert following["started_at"] >= result["finished_at"]
        assert power.current_mode()["name"] == "MAXN"
    finally:
        serve.close()
