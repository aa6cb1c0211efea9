"""A lab run SIGKILLed mid-run, then `farm run --resume` without -i: it checks host keys as the run did.

The run's hosts are reached over real SSH (the simulated lab), so a resume that forgot the run's
known_hosts would fail every unfinished job "host key unknown", results already waiting in the
agents' spools included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from orchestrator.integrity import check_run
from orchestrator.store import open_store
from tests.model_setup import register_models
from tests.test_resume import statuses, wait_for

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

# Jobs of a second or more: the controller is killed with some finished and one in flight.
MATRIX = """
matrices:
  slow:
    models: [dense_stack-l10, conv_stack-l1]
    threads: [1, 2]
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 1.2, max_seconds: 20}
"""
BOARDS = ("rpi4", "devboard")


def farm(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "250"})
    if check and done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def hosts_only_inventory(path: Path, running_lab: RunningLab) -> Path:
    """The lab's hosts without the lab's ``defaults`` (so without its known_hosts), each in a fresh workdir."""
    entries = yaml.safe_load(running_lab.lab.inventory_path.read_text())["hosts"]
    for entry in entries:
        entry["workdir"] = f"{entry['workdir']}/{path.stem}"
    path.write_text(yaml.safe_dump({"hosts": entries}, sort_keys=False))
    return path


@pytest.mark.parametrize("trust", ["inventory", "command-line"])
def test_a_killed_lab_run_resumed_without_its_inventory_checks_keys_as_it_started(
        running_lab: RunningLab, tmp_path: Path, trust: str) -> None:
    db = f"sqlite:///{tmp_path / 'farm.db'}"
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    register_models(db, builds=[("dense_stack", [10]), ("conv_stack", [1])])  # setup in this process: tests/model_setup.py
    selection = [arg for board in BOARDS for arg in ("--host", running_lab.host(board).name)]
    if trust == "inventory":
        # Started the way `farm lab up` suggests: the lab's own inventory, named relative to its directory.
        started_in, inventory, extra = running_lab.lab.dir, "inventory.yaml", []
    else:
        started_in, extra = tmp_path, ["--known-hosts", str(running_lab.known_hosts)]
        inventory = hosts_only_inventory(tmp_path / f"copied-{os.getpid()}.yaml", running_lab).name

    crashed = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", "-m", "slow", "--matrix-file", str(matrix), "-i", inventory,
         *selection, *extra, "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=started_in,
        env={**os.environ, "COLUMNS": "250"})

    def killable() -> bool:
        if crashed.poll() is not None:  # it ended on its own: nothing to resume, say why now
            raise AssertionError(f"the run ended before it was killed:\n{crashed.communicate()[0]}")
        return statuses(db, 1).count("succeeded") >= 2 and "running" in statuses(db, 1)

    try:
        wait_for(killable, "two results and a job in flight")
    finally:
        os.killpg(crashed.pid, signal.SIGKILL)
        crashed.wait()
    assert "succeeded" in statuses(db, 1) and set(statuses(db, 1)) - {"succeeded"}, statuses(db, 1)

    # Elsewhere, no -i, no --known-hosts: the run's own inventory and key choice, from the store.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = farm("run", "--resume", "--db", db, cwd=elsewhere, check=False)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output
    assert "host key" not in output and "is unknown" not in output
    assert resumed.stdout.splitlines()[0] == "Run 1 resumed"
    store = open_store(db)
    try:
        report = check_run(store, 1)
    finally:
        store.close()
    assert report.ok, report.problems()
    assert report.by_status == {"succeeded": len(BOARDS) * 2 * 2}
