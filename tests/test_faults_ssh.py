"""Faults over SSH on the simulated lab: a Jetson Nano at 5W loses its agent session, or its job process,
mid-benchmark; the result is collected (or the job re-run) exactly once and the board ends at MAXN."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from orchestrator.integrity import check_run
from orchestrator.inventory import Host
from orchestrator.lifecycle import RetryPolicy
from orchestrator.matrix import MatrixSpec
from orchestrator.models import registry
from orchestrator.scheduler import Runner, RunOutcome
from orchestrator.store import open_store
from orchestrator.store.schema import ResultRow

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

STATUS = "var/lib/nvpmodel/status"  # the stand-in nvpmodel's mode: pmode:0000 is MAXN (10W), 0001 is 5W
FAST = RetryPolicy(retries=3, backoff=0.2, max_backoff=1.0, unhealthy_after=3)
SPEC = MatrixSpec(name="ssh-faults", models=("all",), delegates=("cpu",), threads=(1,), power_modes=("5W",),
                  timing={"min_runs": 5, "min_seconds": 3.0, "warmup_min_seconds": 0.0})


def nano(running_lab: RunningLab) -> Host:
    host = running_lab.host("jetson-nano")
    # A workdir of its own: its processes are told apart by it, and its spool and lock are its own.
    return dataclasses.replace(host, workdir=f"{host.workdir}/t-{uuid.uuid4().hex[:10]}")


def processes(match: Callable[[list[str], str], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if match(words, comm):
            found.append(int(entry.name))
    return found


def run_faulted(running_lab: RunningLab, tmp_path: Path, shared_model: Path,
                fault: Callable[[Host], None]) -> tuple[RunOutcome, Host, object]:
    host = nano(running_lab)
    root = Path(host.env_dict["FARM_DEVICE_ROOT"])
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    registry.add_file(store, shared_model, name="mobilenet")
    runner = Runner(store, transport_options={"known_hosts": running_lab.known_hosts}, policy=FAST)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("outcome", runner.run(
        SPEC, [host], registry.list_models(store), "lab")), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while (root / STATUS).read_text().strip() != "pmode:0001":  # the job has set 5W
        assert time.monotonic() < deadline and thread.is_alive(), box
        time.sleep(0.05)
    time.sleep(0.5)
    fault(host)
    thread.join(timeout=300)
    assert "outcome" in box, "the run did not finish"
    assert (root / STATUS).read_text().strip() == "pmode:0000", "the board did not end at MAXN"
    return box["outcome"], host, store


def test_a_lost_ssh_session_is_reconnected_and_its_result_collected_once(
        running_lab: RunningLab, tmp_path: Path, shared_model: Path) -> None:
    def kill_session(host: Host) -> None:
        serve = processes(lambda words, comm: comm != "farm-job" and "serve" in words
                          and any(w.startswith(f"{host.workdir}/") for w in words))
        assert serve
        for pid in serve:
            os.kill(pid, signal.SIGKILL)

    outcome, _, store = run_faulted(running_lab, tmp_path, shared_model, kill_session)
    try:
        lane = next(iter(outcome.lanes.values()))
        assert (lane.reconnects, lane.collected_late, lane.retries) == (1, 1, 0)
        report = check_run(store, outcome.run_id)
        assert report.ok and report.by_status == {"succeeded": 1}
        with store.session() as session:
            result = session.scalar(select(ResultRow))
            assert result.attempt == 1 and result.detail["power"]["requested"]["name"] == "5W"
    finally:
        store.close()


def test_a_killed_job_on_a_board_is_rerun_and_its_power_mode_restored(
        running_lab: RunningLab, tmp_path: Path, shared_model: Path) -> None:
    def kill_job(host: Host) -> None:
        jobs = processes(lambda words, comm: comm == "farm-job" and any(w.startswith(f"{host.workdir}/")
                                                                        for w in words))
        assert len(jobs) == 1
        os.kill(jobs[0], signal.SIGKILL)

    outcome, _, store = run_faulted(running_lab, tmp_path, shared_model, kill_job)
    try:
        lane = next(iter(outcome.lanes.values()))
        assert lane.retries == 1
        report = check_run(store, outcome.run_id)
        assert report.ok and report.by_status == {"succeeded": 1}
        with store.session() as session:
            result = session.scalar(select(ResultRow))
            assert result.attempt == 2
            # The second attempt's agent put the killed attempt's mode back first, and said so.
            restored = result.detail.get("power_restored") or []
            assert [(r["restored"], r["mode"]["name"]) for r in restored] == [(True, "MAXN")], \
                json.dumps(result.detail.get("power_restored"))
    finally:
        store.close()
