"""`farm run` of pipelines and multi-model cells on this machine's CPU, stored and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PREPARE = """
import sys
from orchestrator.models import registry
from orchestrator.models.segments import register_segments
from orchestrator.store import open_store
store = open_store(sys.argv[1])
rows = registry.build(store, "conv_stack", [1, 4], size=24, filters=8, kernel=3)
register_segments(store, rows[1][0], 2)
"""


def farm(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, check=False,
                          timeout=600, env={**(env or os.environ), "COLUMNS": "200"})
    if check and done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def results_json(db: str, *extra: str) -> list[dict]:
    return json.loads(farm("results", "--db", db, "--format", "json", *extra).stdout)

MATRIX = """
matrices:
  seeds3:
    models: [conv_stack-l4-filters8-kernel3-size24]
    segments: [2, 3]
    model_sets: [[conv_stack-l4-filters8-kernel3-size24, conv_stack-l1-filters8-kernel3-size24]]
    threads: [1]
    timing: {min_runs: 8, min_seconds: 0, warmup_min_seconds: 0}
  bad:
    models: [conv_stack-l1]
    placements: [on-one-tpu]
"""


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("multimodel")
    db = f"sqlite:///{folder / 'farm.db'}"
    matrix = folder / "m.yaml"
    matrix.write_text(MATRIX)
    # Module scope runs before each test's isolated home: give the commands a data dir of their own.
    env = {**os.environ, "FARM_DATA_DIR": str(folder / "data")}
    subprocess.run([sys.executable, "-c", PREPARE, db], check=True, timeout=600, env=env)
    farm("run", "--matrix", "seeds3", "--matrix-file", str(matrix), "--db", db, env=env)
    return db, matrix


def test_pipeline_and_multi_model_cells_run_and_are_stored(run_db: tuple[str, Path]) -> None:
    db, _ = run_db
    rows = results_json(db, "--status", "all")
    # The single-model baseline, the 2-segment pipeline and the multi-model cell succeed.
    assert {r["model"] for r in rows if r["status"] == "succeeded"} >= {"conv_stack-l4-filters8-kernel3-size24",
                                                                       "conv_stack-l4-filters8-kernel3-size24-seg0of2"}
    pipeline = [r for r in rows if r["num_segments"] == 2]
    assert len(pipeline) == 1 and pipeline[0]["status"] == "succeeded" and pipeline[0]["throughput_ips"] > 0
    multi = [r for r in rows if r["models_in_cell"] == 2]
    assert len(multi) == 1 and multi[0]["model_0_ms"] > multi[0]["model_1_ms"] > 0  # 4 layers vs 1
    # No 3-segment cut is registered: that cell is skipped, saying how to make one.
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) == 1 and "farm models segment conv_stack-l4-filters8-kernel3-size24 --segments 3" in skipped[0]["reason"]
    # Segments are parts of pipelines, never cells of their own.
    assert not [r for r in rows if "seg1of2" in r["model"]]
    assert all(r["concurrency"] == "host" and r["jobs_beside"] == 0 for r in rows if r["status"] == "succeeded")


def test_report_puts_one_model_beside_its_pipeline(run_db: tuple[str, Path]) -> None:
    db, _ = run_db
    out = farm("report", "--db", db).stdout
    assert "Pipelined segments" in out and "Multi-model cells" in out


def test_farm_models_segment_registers_linked_segments(run_db: tuple[str, Path]) -> None:
    db, _ = run_db
    out = farm("models", "segment", "conv_stack-l4-filters8-kernel3-size24", "--segments", "2", "--db", db).stdout
    assert out.count("already registered") == 2  # the fixture cut it already: the same bytes register once
    refused = farm("models", "segment", "conv_stack-l1-filters8-kernel3-size24", "--segments", "2", "--db", db,
                   check=False)
    assert refused.returncode != 0 and "cannot cut" in refused.stdout + refused.stderr


def test_a_bad_placement_is_refused_at_its_line(run_db: tuple[str, Path]) -> None:
    db, matrix = run_db
    done = farm("run", "--matrix", "bad", "--matrix-file", str(matrix), "--db", db, check=False)
    assert done.returncode != 0 and "on-one-tpu" in done.stdout + done.stderr
