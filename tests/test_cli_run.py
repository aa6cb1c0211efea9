"""`farm` as a user runs it: real processes, real inference, real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_MODELS
from tests.model_setup import register_models

QUICK_MATRIX = """
matrices:
  quick:
    models: [family:dense_stack, conv_stack-l1, mobilenet]
    threads: [1, 2]
    timing: {min_runs: 5, min_seconds: 0, warmup_min_seconds: 0}
"""


def farm(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})
    if check and done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def results_json(db: str, *extra: str) -> list[dict]:
    return json.loads(farm("results", "--db", db, "--format", "json", *extra).stdout)


@pytest.fixture
def matrix_file(tmp_path: Path) -> Path:
    path = tmp_path / "matrices.yaml"
    path.write_text(QUICK_MATRIX)
    return path


def prepare_models(db: str, *extra: Path) -> None:
    # In this process: the run and what it stores are under test here, not `farm models` (tests/model_setup.py).
    register_models(db, builds=[("dense_stack", [10, 30]), ("conv_stack", [1])],
                    files=[(SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite", "mobilenet"),
                           *((path, None) for path in extra)])


def test_a_matrix_run_stores_results_with_their_context(db_url: str, matrix_file: Path) -> None:
    prepare_models(db_url)
    done = farm("run", "--matrix", "quick", "--matrix-file", str(matrix_file), "--db", db_url)
    assert "succeeded" in done.stdout
    rows = results_json(db_url)
    assert len(rows) == 4 * 2  # four models, threads 1 and 2, one host
    assert {r["threads"] for r in rows} == {1, 2}
    assert {r["host"] for r in rows} == {"local"}
    for row in rows:
        assert row["status"] == "succeeded" and row["samples"] >= 5
        assert row["runtime"] == "tflite_runtime" and row["runtime_version"] == "2.14.0"
        assert row["python"] == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
        assert row["min_ms"] <= row["median_ms"] <= row["p90_ms"] <= row["max_ms"]
    csv_text = farm("results", "--db", db_url, "--format", "csv", "--model", "mobilenet", "--threads", "2").stdout
    assert len(csv_text.strip().splitlines()) == 2  # header and one row


def test_all_statuses_are_listed_with_their_reasons(tmp_path: Path, matrix_file: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    prepare_models(db, SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    matrix_file.write_text(QUICK_MATRIX.replace("mobilenet]", "mobilenet, mobilenet_v1_0.25_128_quant_edgetpu]")
                           .replace("threads: [1, 2]", "threads: [1, 64]"))
    farm("run", "--matrix", "quick", "--matrix-file", str(matrix_file), "--db", db)
    rows = results_json(db, "--status", "all")
    assert len(rows) == 5 * 2
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert {r["threads"] for r in skipped if "CPU(s) online" in r["reason"]} == {64}
    edgetpu = [r for r in rows if r["model"].endswith("_edgetpu")]
    assert all(r["status"] == "skipped" for r in edgetpu)
    assert [r["reason"] for r in edgetpu if r["threads"] == 1] == ["no Edge TPU found on this host"]


def test_errors_are_one_paragraph_and_keep_what_was_stored(tmp_path: Path, matrix_file: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keep.db'}"
    prepare_models(db)
    farm("run", "--matrix", "quick", "--matrix-file", str(matrix_file), "--db", db)
    before = results_json(db)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("hosts:\n  - name: a\n    address: [oops\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("hosts:\n  - name: a\n    address: b\n    speed: fast\n")
    dupes = tmp_path / "dupes.yaml"
    dupes.write_text("hosts:\n  - {name: a, address: b}\n  - {name: a, address: c}\n")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes((SHARED_MODELS / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()[:40_000])
    attempts = [
        (["run", "--inventory", str(bad_yaml), "--db", db], f"{bad_yaml}:4: malformed YAML"),
        (["run", "--inventory", str(unknown), "--db", db], f"{unknown}:4: field 'speed': unknown field"),
        (["run", "--inventory", str(dupes), "--db", db], "duplicate host name 'a'"),
        (["models", "add", str(truncated), "--db", db], "damaged or truncated"),
        (["models", "add", str(tmp_path / "absent.tflite"), "--db", db], "model file not found"),
        (["results", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x"], "cannot use the database"),
        (["run", "--matrix", "nope", "--matrix-file", str(matrix_file), "--db", db], "no matrix named 'nope'"),
    ]
    for args, words in attempts:
        done = farm(*args, check=False)
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
        assert words in " ".join(done.stderr.split()), (args, done.stderr)
    assert results_json(db) == before


def test_help_teaches_with_examples() -> None:
    for command in (["run"], ["results"], ["models", "build"], ["models", "add"], ["db", "upgrade"]):
        assert "Example:" in farm(*command, "--help").stdout
