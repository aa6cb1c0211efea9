"""A controller SIGKILLed mid-run, then `farm run --resume`: same cells and counts as a fault-free run, no duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.integrity import check_run
from orchestrator.store import open_store
from orchestrator.store.schema import JobRow, ResultRow
from tests.conftest import SHARED_MODELS
from tests.model_setup import register_models
from tests.test_cli_run import farm

MATRIX = """
matrices:
  slow:
    models: [family:dense_stack, mobilenet]
    threads: [1, 2]
    timing: {min_runs: 5, min_seconds: 1.5, warmup_min_seconds: 0}
"""


def start_farm(*args: str) -> subprocess.Popen:
    # Its own process group: killing the group takes the controller and its agent session, as a crash would.
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "COLUMNS": "200"})


def statuses(db: str, run_id: int) -> list[str]:
    store = open_store(db)
    try:
        with store.session() as session:
            return [job.status for job in session.query(JobRow).filter(JobRow.run_id == run_id).order_by(JobRow.id)]
    finally:
        store.close()


def wait_for(predicate, what: str, limit: float = 240.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_controller_resumes_to_the_same_result(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    matrix_file = tmp_path / "m.yaml"
    matrix_file.write_text(MATRIX)
    register_models(db, builds=[("dense_stack", [10, 30])],  # setup in this process: tests/model_setup.py
                    files=[(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite", "mobilenet")])
    clean = farm("run", "--matrix", "slow", "--matrix-file", str(matrix_file), "--db", db)
    assert clean.stdout.splitlines()[0] == "Run 1 started"

    crashed = start_farm("run", "--matrix", "slow", "--matrix-file", str(matrix_file), "--db", db)
    try:
        wait_for(lambda: len(statuses(db, 2)) == 6 and statuses(db, 2).count("succeeded") >= 2
                 and "running" in statuses(db, 2), "two results and one job in flight")
    finally:
        os.killpg(crashed.pid, signal.SIGKILL)
        crashed.wait()
    before = statuses(db, 2)
    in_flight = before.index("running")
    assert before.count("dispatched") <= 1, before  # at most the next job, stored ahead of its start
    # The job in flight runs on, detached; let it finish while no controller watches.
    time.sleep(3.0)

    resumed = farm("run", "--resume", "--db", db)
    assert resumed.stdout.splitlines()[0] == "Run 2 resumed"
    assert "results collected after a lost link or controller" in resumed.stdout

    store = open_store(db)
    try:
        clean_report, resumed_report = check_run(store, 1), check_run(store, 2)
        assert clean_report.ok and resumed_report.ok, resumed_report.problems()
        assert resumed_report.by_status == clean_report.by_status == {"succeeded": 6}
        assert {k.split("/", 1)[1]: v for k, v in resumed_report.cells.items()} == \
            {k.split("/", 1)[1]: v for k, v in clean_report.cells.items()}
        assert resumed_report.results == 6
        with store.session() as session:
            job = session.query(JobRow).filter(JobRow.run_id == 2).order_by(JobRow.id).all()[in_flight]
            result = session.query(ResultRow).filter(ResultRow.job_id == job.id).one()
            # Collected from the spool, not run again: still the first attempt, under its first key.
            assert (job.attempt, result.attempt) == (1, 1) and result.spool_key.endswith(".1")
            # The lane stores its next job as dispatched while one runs. Never started, it is started
            # under that same key on resume, and that costs it no attempt and no failure.
            jobs = session.query(JobRow).filter(JobRow.run_id == 2).order_by(JobRow.id).all()
            for index in (i for i, status in enumerate(before) if status == "dispatched"):
                assert (jobs[index].attempt, jobs[index].failure) == (1, None), before
    finally:
        store.close()
    # Everything was acknowledged: the device's spool is empty again.
    spool = Path(os.environ["HOME"]) / ".cache" / "farm" / "spool"
    assert not list(spool.glob("*.json"))
    # Resuming a finished run finds nothing to do.
    again = farm("run", "--resume", "--db", db, check=False)
    assert again.returncode == 2 and "nothing to resume" in again.stderr


def test_a_run_number_needs_resume(tmp_path: Path) -> None:
    done = farm("run", "7", "--db", f"sqlite:///{tmp_path / 'x.db'}", check=False)
    assert done.returncode == 2 and "only taken with --resume" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


def test_farm_run_exits_3_while_the_database_stays_away_and_resume_finishes(pg_url: str, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from tests.test_faults import Proxy

    real = make_url(pg_url)
    proxy = Proxy((real.host or "127.0.0.1", real.port or 5432))
    proxy.up()
    db = real.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        matrix_file = tmp_path / "m.yaml"
        matrix_file.write_text(MATRIX.replace("family:dense_stack, ", ""))
        register_models(db, files=[(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite", "mobilenet")])
        env = {**os.environ, "COLUMNS": "200", "FARM_DB_RETRY_SECONDS": "1"}
        run = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "-m", "slow", "--matrix-file",
                                str(matrix_file), "--db", db], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
        spool = Path(os.environ["HOME"]) / ".cache" / "farm" / "spool"
        wait_for(lambda: list(spool.glob("*.pid.json")), "a job in the spool")
        proxy.down()  # and it stays away until the run is over
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 3, output
        assert "Traceback" not in output and "farm run --resume" in " ".join(output.split())
        proxy.up()
        resumed = farm("run", "--resume", "--db", db)
        assert "Run 1 resumed" in resumed.stdout
        store = open_store(db)
        try:
            report = check_run(store, 1)
            assert report.ok and report.by_status == {"succeeded": 2} and report.results == 2, report.problems()
        finally:
            store.close()
    finally:
        proxy.down()


def _spool_again(document: dict, key: str, folder: Path) -> None:
    """Run ``document`` under ``key`` through the agent's own spool, in a process of its own (it forks)."""
    script = ("import json, sys\nfrom agent import spool\n"
              "document, key, folder = json.loads(sys.stdin.read())\n"
              "assert spool.start(document, key, 'test', folder=folder)['state'] == 'started'\n"
              "assert key in spool.collect([key], 60, folder=folder)['finished']\n")
    subprocess.run([sys.executable, "-c", script], input=json.dumps([document, key, str(folder)]), text=True,
                   check=True, timeout=120)


def test_a_result_left_in_the_spool_for_a_stored_job_is_acked_by_the_next_run(tmp_path: Path) -> None:
    """A controller killed between storing a result and acking it leaves the result on the device: the
    next run of the same database acks it; another database's leftovers are not its to delete."""
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    matrix_file = tmp_path / "m.yaml"
    matrix_file.write_text(MATRIX.replace("family:dense_stack, ", "").replace("[1, 2]", "[1]")
                           .replace("min_seconds: 1.5", "min_seconds: 0"))
    register_models(db, files=[(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite", "mobilenet")])
    farm("run", "--matrix", "slow", "--matrix-file", str(matrix_file), "--db", db)
    store = open_store(db)
    try:
        with store.session() as session:
            job = session.query(JobRow).filter(JobRow.run_id == 1).one()
            document, key = job.job_doc, job.spool_key
    finally:
        store.close()
    folder = Path(os.environ["HOME"]) / ".cache" / "farm"
    foreign = "f000000-run1-job1.1"  # the same kind of key from a database whose tag is not ours
    _spool_again(document, key, folder)
    _spool_again({**document, "job_id": foreign.rsplit(".", 1)[0]}, foreign, folder)
    spool = folder / "spool"
    assert {p.name for p in spool.glob("*.result.json")} == {f"{key}.result.json", f"{foreign}.result.json"}

    farm("run", "--matrix", "slow", "--matrix-file", str(matrix_file), "--db", db)
    assert {p.name for p in spool.glob("*.result.json")} == {f"{foreign}.result.json"}
    for leftover in spool.glob(f"{foreign}.*"):
        leftover.unlink()
