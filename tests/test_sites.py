"""Sites sharing a run (issue 18 item 1): `farm submit`, then three `farm serve` controllers on one
PostgreSQL, two sites of three lab hosts each; one site-a controller is SIGKILLed mid-run.

Every job must end terminal, every result stored once, and the jobs the killed controller held (one
of them in flight on a board) finished by the other site-a controller after the leases expired,
collected from the agent's spool rather than run again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from sqlalchemy import func, select

from orchestrator.errors import FarmError
from orchestrator.integrity import check_run
from orchestrator.lifecycle import TERMINAL
from orchestrator.models import registry
from orchestrator.store import open_store
from orchestrator.store.schema import ControllerRow, JobRow, ResultRow, RunRow
from tests.test_resume import wait_for

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

MATRIX = """
matrices:
  shared:
    models: [dense_stack-l10, conv_stack-l1]
    threads: [1, 2]
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0.5, max_seconds: 20}
"""
LEASE = "3"


def farm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "250"})
    if done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def site_inventory(path: Path, running_lab: RunningLab, names: list[str], tag: str) -> Path:
    """Some of the lab's hosts, each in a workdir of this test's own (the lab is shared by the session)."""
    entries = [e for e in yaml.safe_load(running_lab.lab.inventory_path.read_text())["hosts"] if e["name"] in names]
    for entry in entries:
        entry["workdir"] = f"{entry['workdir']}/sites-{tag}"
    path.write_text(yaml.safe_dump({"hosts": entries}, sort_keys=False))
    return path


def serve(site: str, inventory: Path, db: str, known_hosts: Path, log: Path) -> subprocess.Popen:
    # Its own process group: SIGKILL takes the controller and its SSH sessions, as a crash would.
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--site", site, "-i", str(inventory), "--db", db,
         "--known-hosts", str(known_hosts), "--lease", LEASE, "--poll", "0.5", "--batch", "2", "--until-idle"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "FARM_RETRY_BACKOFF": "0.5"})


def test_three_controllers_share_a_run_and_one_killed_mid_run_is_taken_over(
        running_lab: RunningLab, pg_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    names = sorted(h.name for h in running_lab.inventory.hosts)
    site_a, site_b = names[:3], names[3:]
    everything = site_inventory(tmp_path / "all.yaml", running_lab, names, tag)
    inv_a = site_inventory(tmp_path / "a.yaml", running_lab, site_a, tag)
    inv_b = site_inventory(tmp_path / "b.yaml", running_lab, site_b, tag)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    store = open_store(pg_url)
    registry.build(store, "dense_stack", [10])
    registry.build(store, "conv_stack", [1])
    store.close()

    submitted = farm("submit", "-m", "shared", "--matrix-file", str(matrix), "-i", str(everything), "--db", pg_url,
                     "--known-hosts", str(running_lab.known_hosts), "--label", "commit=3f2a9c1", cwd=tmp_path)
    run_id = int(submitted.stdout.split()[-1])  # the last line: the run's number, and nothing ran yet
    store = open_store(pg_url)
    try:
        with store.session() as session:
            run = session.get(RunRow, run_id)
            assert run is not None and (run.status, run.shared) == ("submitted", True)
            assert run.labels == {"commit": "3f2a9c1"}  # labelled at submission, as farm run --label does
            assert session.scalar(select(func.count()).where(JobRow.run_id == run_id,
                                                             JobRow.status != "queued",
                                                             JobRow.status != "skipped")) == 0

        logs = {name: tmp_path / f"{name}.log" for name in ("a1", "a2", "b1")}
        controllers = {"a1": serve("a", inv_a, pg_url, running_lab.known_hosts, logs["a1"]),
                       "a2": serve("a", inv_a, pg_url, running_lab.known_hosts, logs["a2"]),
                       "b1": serve("b", inv_b, pg_url, running_lab.known_hosts, logs["b1"])}
        victim: dict[str, object] = {}

        def site_a_controller_mid_job() -> bool:
            with store.session() as session:
                pids = {row.id: row.pid for row in session.scalars(select(ControllerRow))}
                rows = list(session.scalars(select(JobRow).where(JobRow.run_id == run_id)))
            done = [r for r in rows if r.status == "succeeded"]
            for row in rows:
                owner = row.claim_owner or ""
                if row.status == "running" and owner.startswith("a/") and done:
                    held = [r.id for r in rows if r.claim_owner == owner and r.status not in TERMINAL]
                    if len(held) >= 2:  # the running job and one more that nobody has started
                        victim.update(owner=owner, pid=pids[owner], held=held, running=row.id)
                        return True
            return False

        try:
            wait_for(site_a_controller_mid_job, "a site-a controller with a job in flight and another claimed", 120)
            name = next(n for n, p in controllers.items() if p.pid == victim["pid"])
            os.killpg(controllers[name].pid, signal.SIGKILL)
            controllers[name].wait()
            killed_at = time.monotonic()
            for other, process in controllers.items():
                if other != name:
                    process.wait(timeout=240)  # --until-idle: each exits once no job of its hosts is open
        finally:
            for process in controllers.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        took_over = time.monotonic() - killed_at
        survivors = {n: logs[n].read_text() for n in controllers if n != name}
        for other, text in survivors.items():
            print(f"--- {other}\n{text}")
        for other, process in controllers.items():
            if other != name:
                assert process.returncode == 0, survivors[other]

        report = check_run(store, run_id)
        assert report.ok, report.problems()  # no job open, none with two results, none succeeded without one
        assert report.by_status["succeeded"] >= len(names), report.by_status
        with store.session() as session:
            run = session.get(RunRow, run_id)
            assert run is not None and run.status == "finished"
            rows = {r.id: r for r in session.scalars(select(JobRow).where(JobRow.run_id == run_id))}
            results = dict(session.execute(select(ResultRow.job_id, ResultRow.attempt)
                                           .join(JobRow, JobRow.id == ResultRow.job_id)
                                           .where(JobRow.run_id == run_id)).all())
            sites = {r.claim_site for r in rows.values() if r.status == "succeeded"}
        assert sites == {"a", "b"}
        # The killed controller's jobs: finished by the other site-a controller, the one in flight collected
        # from the spool under the attempt it was started with (not run again as a new attempt).
        for job_id in victim["held"]:  # type: ignore[union-attr]
            row = rows[job_id]
            assert row.status in TERMINAL and row.claim_owner not in (None, victim["owner"]), (job_id, row.status)
            assert row.claim_owner.startswith("a/"), row.claim_owner
        in_flight = rows[victim["running"]]  # type: ignore[index]
        assert in_flight.status == "succeeded" and results[in_flight.id] == in_flight.attempt == 1, \
            (in_flight.status, in_flight.attempt, survivors)
        taken = [int(n) for text in survivors.values() for n in re.findall(r"\((\d+) taken over\)", text)]
        assert len(taken) == 2 and sum(taken) >= 1, survivors
        print(f"\n{len(rows)} jobs {dict(report.by_status)}; takeover done {took_over:.1f} s after the kill")
    finally:
        store.close()

    status = farm("status", str(run_id), "--db", pg_url, cwd=tmp_path).stdout
    assert "a/" in status and "b/" in status and "succeeded" in status, status
    listed = " ".join(farm("runs", "--db", pg_url, cwd=tmp_path).stdout.split())
    assert "finished" in listed and "yes" in listed and "a: " in listed and "b: " in listed, listed


def test_sqlite_says_sites_need_postgresql(tmp_path: Path) -> None:
    from orchestrator.sites.serve import SiteController

    db = f"sqlite:///{tmp_path / 'farm.db'}"
    store = open_store(db)
    try:
        with pytest.raises(FarmError, match="need PostgreSQL.*SKIP LOCKED.*postgresql"):
            SiteController(store, "x", [])
    finally:
        store.close()
    done = subprocess.run([sys.executable, "-m", "orchestrator", "run", "--submit", "-m", "all", "--db", db],
                          capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "250"})
    text = " ".join(done.stderr.split())
    assert done.returncode == 2 and "need PostgreSQL" in text and "Traceback" not in text, done.stderr
    store = open_store(db)
    try:  # refused before anything was stored: no run, no default suite built into SQLite
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(RunRow)) == 0
    finally:
        store.close()
