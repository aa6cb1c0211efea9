"""`farm nightly` end to end on real inference: an A/A pair finds nothing, a real slowdown is caught where it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_run import farm

AA_MATRIX = """
matrices:
  nightly:
    models: [family:dense_stack]
    threads: [1, 2]
    timing: {min_runs: 20, min_seconds: 0.02, warmup_min_seconds: 0.01}
"""

HOG_MATRIX = """
matrices:
  nightly:
    models: [conv_stack-l2, conv_stack-l3]
    threads: [1]
    timing: {min_runs: 8, min_seconds: 0, warmup_min_seconds: 0}
"""


def l4t_release(revision: str) -> str:
    return f"# R32 (release), REVISION: {revision}, GCID: 1, BOARD: t210ref, EABI: aarch64, DATE: today\n"


def pinned_inventory(tmp_path: Path, busy_root: Path | None = None) -> Path:
    """Two local hosts, each agent pinned to its own CPU, so load on one CPU slows one host only.

    ``busy_root``: the busy host's agent reads that device root, where a test can play a JetPack update.
    """
    lines = ["hosts:"]
    for name, cpu in (("calm", 0), ("busy", 1)):
        wrapper = tmp_path / f"python-cpu{cpu}"
        root = f"FARM_DEVICE_ROOT={busy_root} " if busy_root is not None and name == "busy" else ""
        wrapper.write_text(f'#!/bin/sh\n{root}exec taskset -c {cpu} "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
        lines += [f"  - name: {name}", "    transport: local", f"    python: {wrapper}"]
    path = tmp_path / "pinned.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def nightly(db: str, matrix_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return farm("nightly", "--matrix-file", str(matrix_file), "--db", db, *extra, check=False, timeout=600)


def verdicts(db: str, nightly_id: int) -> dict[str, str]:
    rows = json.loads(farm("query", "SELECT cell_key, state FROM cell_verdicts WHERE nightly_id = :n",
                           "--param", f"n={nightly_id}", "--db", db, "--format", "json").stdout)
    return {row["cell_key"]: row["state"] for row in rows}


def test_aa_nightlies_find_no_regression_in_twenty_cells(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'aa.db'}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(AA_MATRIX)
    farm("models", "build", "--family", "dense_stack", "--layers", "2,4,6,8,10,12,14,16,18,20", "--db", db_url)
    first = nightly(db_url, matrix, "--force", "--junit", str(tmp_path / "first.xml"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert set(verdicts(db_url, 1).values()) == {"new"} and len(verdicts(db_url, 1)) == 20
    idle = nightly(db_url, matrix)
    assert idle.returncode == 0 and "nothing to run" in idle.stdout
    second = nightly(db_url, matrix, "--force", "--junit", str(tmp_path / "second.xml"))
    states = verdicts(db_url, 3)
    assert second.returncode == 0, second.stdout
    assert len(states) == 20 and "regressed" not in states.values(), states
    from junitparser import JUnitXml

    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "second.xml"))))
    assert suite.tests == 20 and suite.failures == 0


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or shutil.which("taskset") is None, reason="needs 2 CPUs and taskset")
def test_a_cpu_hog_on_one_host_regresses_exactly_that_hosts_cells(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(HOG_MATRIX)
    busy_root = tmp_path / "busy-root"
    (busy_root / "etc").mkdir(parents=True)
    (busy_root / "etc/nv_tegra_release").write_text(l4t_release("4.4"))
    inventory = pinned_inventory(tmp_path, busy_root)
    farm("models", "build", "--family", "conv_stack", "--layers", "2,3", "--db", db)
    base = nightly(db, matrix, "--inventory", str(inventory), "--force")
    assert base.returncode == 0, base.stdout + base.stderr
    # Between the nightlies the busy host gets a JetPack update (L4T R32.4.4 -> R32.7.1), as in SEEDS §4.
    (busy_root / "etc/nv_tegra_release").write_text(l4t_release("7.1"))
    # Same priority as the agents: a boosted hog would push every other process onto CPU 0 and slow "calm" too.
    hog = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        loaded = nightly(db, matrix, "--inventory", str(inventory), "--force", "--html", str(tmp_path / "n.html"),
                         "--markdown", str(tmp_path / "n.md"))
    finally:
        hog.kill()
        hog.wait()
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr
    states = verdicts(db, 2)
    assert "regressed" in loaded.stdout
    regressed = {key for key, state in states.items() if state == "regressed"}
    assert regressed and all(key.startswith("busy|") for key in regressed), loaded.stdout
    # Every busy cell regresses, unless the baseline itself was too noisy to tell (this machine is shared):
    # then the verdict must say so (the noise bar beat the slowdown), not call the cell unchanged silently.
    rows = json.loads(farm("query", "SELECT cell_key, state, ratio, detail FROM cell_verdicts WHERE nightly_id = 2",
                           "--db", db, "--format", "json").stdout)
    for row in rows:
        if row["cell_key"].startswith("busy|") and row["state"] != "regressed":
            assert row["ratio"] > 1 and "change" in row["detail"] and "<" in row["detail"], (row, loaded.stdout)
    assert all(state == "unchanged" for key, state in states.items() if key.startswith("calm|")), states
    # The update is named as the likely cause of exactly the busy host's regressions.
    report = (tmp_path / "n.md").read_text()
    regressed_rows = [line for line in report.splitlines() if "| regressed" in line]
    assert regressed_rows and all(line.startswith("| busy · ") and "busy: l4t 32.4.4 → 32.7.1" in line
                                  for line in regressed_rows), report
    assert "calm: l4t" not in report
    page = (tmp_path / "n.html").read_text()
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    assert "regressed" in (tmp_path / "n.md").read_text()
