"""SEEDS §3 in the simulated lab: two Edge TPUs at once, three placements, 2- and 3-segment pipelines.

The x86 lab host has two USB accelerators (usb:0 on 2-1 at 5000 Mb/s, usb:1 behind a USB 2 hub on
1-1.2 at 480) served by the stand-in libedgetpu, loaded by the agent exactly as the real library is.
Models are farm's conv stacks compiled by the stand-in compiler (alone, co-compiled, in segments).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

COMPILER = str(Path(__file__).resolve().parents[1] / "farm_lab" / "bin" / "edgetpu_compiler")
TPU = "conv_stack-l10+edgetpu-16.0.384591198"
TIMING = "{min_runs: 15, min_seconds: 1.0, warmup_min_seconds: 0}"
MATRIX = f"""
matrices:
  side:
    models: [{TPU}]
    concurrency: per-accelerator
    usb_ports: all
    threads: [1]
    hosts: [HOST]
    timing: {TIMING}
  seeds3:
    models: [{TPU}]
    segments: [2, 3]
    model_sets: [[conv_stack-l10, conv_stack-l20]]
    placements: [same-tpu, separate-tpus, cocompiled]
    delegates: [edgetpu]
    threads: [1]
    hosts: [HOST]
    timing: {{min_runs: 10, min_seconds: 0, warmup_min_seconds: 0}}
"""


# Every model in one process (seven `farm models` commands would start seven interpreters).
PREPARE = f"""
import sys
from orchestrator.models import registry
from orchestrator.models.compiler import compile_models
from orchestrator.store import open_store
store = open_store(sys.argv[1])
registry.build(store, "conv_stack", [10, 20])
l10, l20 = registry.find_models(store, ["conv_stack-l10"])[0], registry.find_models(store, ["conv_stack-l20"])[0]
for sources, segments in (([l10], 1), ([l20], 1), ([l10, l20], 1), ([l10], 2), ([l10], 3)):
    compile_models(store, sources, compiler={COMPILER!r}, num_segments=segments)
"""


def farm(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, check=False,
                          timeout=600, env={**env, "COLUMNS": "250"})
    assert done.returncode == 0, f"farm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def lab_runs(running_lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    folder = tmp_path_factory.mktemp("multitpu")
    db = f"sqlite:///{folder / 'farm.db'}"
    # Module scope runs before each test's isolated home: give the commands a data dir of their own.
    env = {**os.environ, "FARM_DATA_DIR": str(folder / "data")}
    subprocess.run([sys.executable, "-c", PREPARE, db], check=True, timeout=600, env=env)
    matrix = folder / "m.yaml"
    matrix.write_text(MATRIX.replace("HOST", running_lab.host("x86-usb").name))
    inventory = str(running_lab.inventory.path)
    for name in ("side", "seeds3"):
        farm("run", "--matrix", name, "--matrix-file", str(matrix), "-i", inventory, "--db", db, env=env)
    return db, json.loads(farm("results", "--db", db, "--status", "all", "--format", "json", env=env))


def test_per_accelerator_jobs_overlap_each_on_its_own_tpu(lab_runs: tuple[str, list[dict]]) -> None:
    _, rows = lab_runs
    side = [r for r in rows if r["concurrency"] == "per-accelerator"]
    assert len(side) == 2 and all(r["status"] == "succeeded" and r["simulated"] == "stand-in" for r in side)
    assert sorted(r["edgetpu_device"] for r in side) == ["usb:0", "usb:1"]
    assert sorted(r["usb_speed_measured"] for r in side) == [480, 5000]
    a, b = side
    assert a["window_start"] < b["window_end"] and b["window_start"] < a["window_end"]  # ran at the same time
    assert all(r["jobs_beside"] >= 1 for r in side)


def test_three_placements_and_two_pipelines_succeed(lab_runs: tuple[str, list[dict]]) -> None:
    _, rows = lab_runs
    placed = {r["placement"]: r for r in rows if r["models_in_cell"] == 2}
    assert set(placed) == {"same-tpu", "separate-tpus", "cocompiled"}
    assert all(r["status"] == "succeeded" for r in placed.values())
    # Two models on one TPU swap each other's parameters out on every invoke; co-compiled they share the cache.
    assert placed["same-tpu"]["model_0_ms"] > placed["cocompiled"]["model_0_ms"]
    assert placed["same-tpu"]["throughput_ips"] < placed["cocompiled"]["throughput_ips"]
    pipes = {r["num_segments"]: r for r in rows if r["num_segments"]}
    assert set(pipes) == {2, 3} and all(r["status"] == "succeeded" and r["throughput_ips"] > 0 for r in pipes.values())


def test_the_report_shows_the_seed_comparisons(lab_runs: tuple[str, list[dict]]) -> None:
    db, _ = lab_runs
    out = farm("report", "--db", db, "--all-runs", env=dict(os.environ))
    for title in ("Edge TPUs side by side", "Multi-model cells", "Pipelined segments"):
        assert title in out
