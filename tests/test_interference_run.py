"""Disturbed results are never silent: `farm run` names them per host and re-runs them on request,
`farm results` and `farm report` mark them, the thread sweep names the thread counts whose cores were
not free, and v_results carries the measures on SQLite and PostgreSQL.

One host runs on both CPUs while a hog holds CPU 1: one thread finds CPU 0 free, two threads cannot
(one of them shares CPU 1 with the hog). Agent and hog run at the top of the scheduler
(tests/quiet_core.py), so the load others put on this shared machine does not decide the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_MODELS
from tests.model_setup import register_models
from tests.quiet_core import boosted, boosted_shell
from tests.test_cli_run import farm

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None,
                                reason="needs 2 CPUs and taskset")

MODEL = SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite"
MATRIX = """
matrices:
  sweep:
    models: [mobilenet_v1_0.25_128_quant]
    threads: [1, 2]
    timing: {min_runs: 20, min_seconds: 0.4, warmup_min_seconds: 0.1}
    interference: {min_cpu_share: 0.9}
"""


def inventory(tmp: Path, cpus: str = "0,1") -> Path:
    wrapper = tmp / "python-boosted"
    command = f'taskset -c {cpus} {sys.executable} "$@"'
    wrapper.write_text(f"#!/bin/sh\n{boosted_shell(command)}\n")
    wrapper.chmod(0o755)
    path = tmp / "inventory.yaml"
    path.write_text(f"hosts:\n  - name: shared\n    transport: local\n    python: {wrapper}\n")
    return path


@contextlib.contextmanager
def hog_on_cpu1() -> Iterator[None]:
    process = subprocess.Popen(boosted(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"]))
    try:
        yield
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("sweep")
    db = f"sqlite:///{tmp / 'farm.db'}"
    (tmp / "m.yaml").write_text(MATRIX)
    register_models(db, files=[(MODEL, None)])  # setup in this process: tests/model_setup.py
    with hog_on_cpu1():  # only while the run runs: a boosted hog slows everything else here too
        done = farm("run", "-m", "sweep", "--matrix-file", str(tmp / "m.yaml"), "-i", str(inventory(tmp)),
                    "--db", db, "--retry-disturbed", "1", timeout=600)
    rows = json.loads(farm("results", "--db", db, "--format", "json").stdout)
    return {"db": db, "tmp": tmp, "run": done, "rows": rows}


def test_two_threads_find_a_core_taken_and_one_thread_does_not(swept: dict) -> None:
    first = {row["threads"]: row for row in swept["rows"] if row["run_id"] == 1}
    assert set(first) == {1, 2}
    one, two = first[1], first[2]
    assert two["disturbed"] == 1 and "cpu_share" in two["disturbed_reason"], two
    # One of the two threads shares CPU 1 with the hog; the single thread had CPU 0 to itself.
    assert two["cpu_share"] < one["cpu_share"] - 0.1, (one, two)
    assert one["disturbed"] == 0 and one["disturbed_reason"] is None, one
    assert one["valid"] == 1 and two["valid"] == 1 and one["invalid_reason"] is None


def test_farm_run_names_the_host_and_reruns_only_the_disturbed_cell(swept: dict) -> None:
    out = swept["run"].stdout
    assert "Re-running 1 disturbed cell(s) of run 1 (attempt 1 of 1)" in out, out
    line = next(text for text in out.splitlines() if text.startswith("disturbed shared:"))
    assert "1 of 2 cells" in line and "cores on average" in line and "cpu_share" in line, line
    assert "after 1 re-run(s) (runs 2): 1 still disturbed" in line, line
    # Every attempt is kept: the re-run is run 2, holding only the 2-thread cell, tagged with its origin.
    retry = [row for row in swept["rows"] if row["run_id"] == 2]
    assert [row["threads"] for row in retry] == [2] and retry[0]["disturbed"] == 1
    assert "retry-of:1" in json.loads(retry[0]["run_tags"])


def test_farm_results_and_report_mark_them(swept: dict) -> None:
    table = farm("results", "--db", swept["db"], "--run", "1").stdout
    marked = [line for line in table.splitlines() if "disturbed" in line]
    assert len(marked) == 1 and re.search(r"\bcpu\s+2\s", marked[0]), table
    report = swept["tmp"] / "r.md"
    farm("report", "--db", swept["db"], "--run", "1", "--markdown", str(report))
    text = report.read_text()
    sections = {part.split("\n", 1)[0]: part for part in text.split("\n## ")}
    assert "Disturbed and invalid results" in sections, text
    sweep = sections["Thread sweep"]
    header = next(line for line in sweep.splitlines() if line.startswith("| model"))
    assert header.rstrip(" |").endswith("cores not free at"), sweep
    rows = [line for line in sweep.splitlines() if line.startswith("| mobilenet")]
    assert len(rows) == 1 and rows[0].rstrip(" |").endswith("| 2"), sweep
    assert "disturbed" in sections["Latency"], sections["Latency"]


@pytest.mark.parametrize("disturbed", [False, True], ids=["clean", "disturbed"])
def test_v_results_lifts_the_measures_on_postgresql(pg_url: str, disturbed: bool) -> None:
    """A real agent result (the agent's own run_job), stored through the store, read back through the view."""
    from agent.bench import file_sha256, run_job
    from agent.schema import make_job
    from orchestrator.inventory import Host
    from orchestrator.store import open_store, records
    from tests.seed_data import _model

    doc = run_job(make_job("pg", str(MODEL), file_sha256(str(MODEL)),
                           timing={"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.0},
                           interference={"min_cpu_share": 1.01 if disturbed else 0.0, "max_other_load": None}))
    store = open_store(pg_url)
    try:
        host_id = records.upsert_host(store, Host(name="h", transport="local"))
        model = _model(store, "m", "mobilenet", 0.5, None, {})
        run_id = records.create_run(store, "m", "inv.yaml", [])
        [job_id] = records.add_jobs(store, run_id, [{
            "host_id": host_id, "model_id": model.id, "delegate": "cpu", "threads": 1, "power_mode": None,
            "usb_port": None, "usb_speed": None, "cell_key": "h|m|cpu|1|-|-", "timing": {}}])
        records.store_result(store, job_id, records.add_facts(store, host_id, {}), "3.11", doc)
    finally:
        store.close()
    rows = json.loads(farm("query", "SELECT cpu_share, other_load, disturbed, disturbed_reason, valid, "
                           "invalid_reason FROM v_results", "--db", pg_url, "--format", "json").stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["cpu_share"] == pytest.approx(doc["interference"]["cpu_share"]) and row["other_load"] >= 0
    assert row["disturbed"] == int(disturbed) and row["valid"] == 1 and row["invalid_reason"] is None
    assert (row["disturbed_reason"] is not None) == disturbed
