"""Power modes and USB ports as matrix dimensions, end to end, as a user drives them.

A small simulated lab of real sshd hosts, two Jetson Nanos (stand-in nvpmodel on
their PATH) and an x86 PC with two Coral USB Accelerators (one on a USB 3 port
at 5000 Mb/s, one behind a USB 2 hub at 480), runs ``farm run`` over a matrix of
every power mode and every USB port; ``farm results`` reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from farm_lab import sshd as lab_sshd
from farm_lab.lab import Lab
from farm_lab.sshd import free_port
from orchestrator.inventory import Inventory, load_inventory
from orchestrator.store import open_store
from orchestrator.store.schema import HostFactsRow, HostRow, JobRow, ResultRow
from tests.conftest import SHARED_MODELS, missing_service
from tests.model_setup import register_models
from tests.quick_all import quick_all_matrix

BOARDS = ["jetson-nano", "jetson-nano", "x86-usb"]
QUICK = "{warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0, max_seconds: 20}"
MATRIX = f"""
matrices:
  power-usb:
    models: [dense_stack-l10, mnv1-tpu]
    threads: [1, 2]
    power_modes: all
    usb_ports: all
    timing: {QUICK}
  long-5w:
    models: [dense_stack-l10]
    threads: [1]
    power_modes: [5W]
    hosts: [{{host}}]
    timing: {{warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 10000000, min_seconds: 8, max_seconds: 8}}
"""
STATUS = "var/lib/nvpmodel/status"


@dataclass(frozen=True)
class SmallLab:
    lab: Lab
    inventory: Inventory
    inventory_path: Path

    def root(self, host: str) -> Path:
        entry = next(h for h in self.inventory.hosts if h.name == host)
        return Path(entry.env_dict["FARM_DEVICE_ROOT"])

    def hosts(self, board: str) -> list[str]:
        return [h.name for h in self.inventory.hosts if h.board == board]


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallLab]:
    if not lab_sshd.SSHD.is_file():
        missing_service(f"OpenSSH server is not installed ({lab_sshd.SSHD}): apt-get install openssh-server")
    lab = Lab(tmp_path_factory.mktemp("power-usb-lab"))
    port = free_port([f"127.0.0.{n}" for n in range(2, 2 + len(BOARDS))])
    try:
        inventory = lab.up(len(BOARDS), boards=BOARDS, port=port, say=print)
        yield SmallLab(lab, load_inventory(inventory), inventory)
    finally:
        lab.down(purge=True)


def farm(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          check=False, timeout=timeout, env={**os.environ, "COLUMNS": "250"})
    if check and done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, small_lab: SmallLab) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("power-usb-run")
    db = f"sqlite:///{folder / 'farm.db'}"
    register_models(db, builds=[("dense_stack", [10])],  # setup in this process: tests/model_setup.py
                    files=[(SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite", "mnv1-tpu")])
    matrix = folder / "matrices.yaml"
    matrix.write_text(MATRIX.replace("{host}", small_lab.hosts("jetson-nano")[1]))
    return {"db": db, "matrix": str(matrix), "inventory": str(small_lab.inventory_path)}


@pytest.fixture(scope="module")
def power_usb_run(workspace: dict[str, str]) -> subprocess.CompletedProcess:
    return farm("run", "--matrix", "power-usb", "--matrix-file", workspace["matrix"], "--inventory",
                workspace["inventory"], "--db", workspace["db"], "--wide", check=False)


def jobs(db: str) -> list[tuple[JobRow, str, ResultRow | None]]:
    store = open_store(db)
    try:
        with store.session() as session:
            rows = session.execute(select(JobRow, HostRow.name, ResultRow).join(HostRow, JobRow.host_id == HostRow.id)
                                   .outerjoin(ResultRow, ResultRow.job_id == JobRow.id).order_by(JobRow.id)).all()
            session.expunge_all()
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        store.close()


def test_jetson_cells_run_at_10w_and_5w_and_store_requested_and_measured(
        small_lab: SmallLab, workspace: dict[str, str], power_usb_run: subprocess.CompletedProcess) -> None:
    assert power_usb_run.returncode == 0, power_usb_run.stdout + power_usb_run.stderr
    # The run's own summary shows the new dimensions, so 10W and 5W rows are told apart.
    header = next(line for line in power_usb_run.stdout.splitlines() if "host" in line and " status " in line)
    assert " power " in header and " USB port " in header
    nanos = small_lab.hosts("jetson-nano")
    cpu_cells = [(job, host, result) for job, host, result in jobs(workspace["db"])
                 if host in nanos and job.delegate == "cpu"]
    # 2 Nanos x 2 modes x 1 model x 2 thread counts
    assert len(cpu_cells) == 8
    seen = set()
    for job, host, result in cpu_cells:
        assert job.status == "succeeded", job.reason
        assert result is not None
        power = result.detail["power"]
        assert power["requested"]["name"] == job.power_mode
        expected = {"10W": (0, "MAXN", [0, 1, 2, 3], 1479000), "5W": (1, "5W", [0, 1], 918000)}[job.power_mode]
        measured = power["measured"]
        assert (measured["nvpmodel"], measured["name"], measured["cpus_online"]) == expected[:3]
        assert set(measured["cpu_max_freq_khz"].values()) == {expected[3]}
        assert result.power_mode_measured == f"{expected[1]} (nvpmodel {expected[0]})"
        # The boards start at MAXN: 10W jobs find it set and change nothing; 5W jobs switch and restore.
        assert power["switched"] is (job.power_mode == "5W") and power["restore"]["ok"] is True
        # The INA3221 rails the stand-in nvpmodel rewrote for the mode: 5W draws less than MAXN at rest.
        assert result.avg_power_w == pytest.approx({"10W": 1.9, "5W": 1.6}[job.power_mode], abs=0.01)
        assert result.energy_mj is not None and result.energy_mj > 0
        assert result.detail["conditions"]["before"]["temperatures_c"]["CPU-therm"] == 37.5
        # A loaded lab board runs at its clock limit in either mode: nothing reads as throttled.
        assert result.throttled is False, result.detail["conditions"]
        seen.add((host, job.power_mode))
    assert seen == {(host, mode) for host in nanos for mode in ("10W", "5W")}
    for host in nanos:  # the original mode is back on every board
        root = small_lab.root(host)
        assert (root / STATUS).read_text().strip() == "pmode:0000"
        assert (root / "sys/devices/system/cpu/online").read_text().strip() == "0-3"


def test_each_host_switches_modes_once_per_group(workspace: dict[str, str], small_lab: SmallLab,
                                                 power_usb_run: subprocess.CompletedProcess) -> None:
    for host in small_lab.hosts("jetson-nano"):
        ran = sorted((job for job, name, _ in jobs(workspace["db"]) if name == host and job.status == "succeeded"),
                     key=lambda job: job.started_at)
        modes = [job.power_mode for job in ran]
        # The board starts at 10W (MAXN): those jobs first, then every 5W job together.
        assert modes == ["10W"] * modes.count("10W") + ["5W"] * modes.count("5W"), modes


def test_edgetpu_cells_run_on_the_stand_in_with_port_measured_speed_and_the_simulated_mark(
        workspace: dict[str, str], small_lab: SmallLab, power_usb_run: subprocess.CompletedProcess) -> None:
    [x86] = small_lab.hosts("x86-usb")
    tpu_cells = [(job, result) for job, host, result in jobs(workspace["db"])
                 if host == x86 and job.delegate == "edgetpu"]
    assert len(tpu_cells) == 4  # 2 ports x 2 thread counts
    speeds = {}
    for job, result in tpu_cells:
        # The lab's x86 PC has the stand-in libedgetpu: the published compiled model runs on it.
        assert job.status == "succeeded", job.reason
        assert result is not None and result.usb_speed_measured == job.usb_speed
        assert result.detail["edgetpu"]["port"] == job.usb_port and result.detail["edgetpu"]["simulated"] == "stand-in"
        speeds[job.usb_port] = (job.usb_speed, result.detail["edgetpu"]["device"])
    assert speeds == {"2-1": (5000, "usb:0"), "1-1.2": (480, "usb:1")}
    # The CPU model ran on the x86 host too, and its Jetson-only modes left it alone.
    cpu = [job for job, host, _ in jobs(workspace["db"]) if host == x86 and job.delegate == "cpu"]
    assert {job.status for job in cpu} == {"succeeded"} and {job.power_mode for job in cpu} == {None}


def test_results_list_every_cell_and_filter_and_group_by_mode_and_speed(
        workspace: dict[str, str], power_usb_run: subprocess.CompletedProcess) -> None:
    db = workspace["db"]
    stored = jobs(db)
    listed = json.loads(farm("results", "--status", "all", "--format", "json", "--db", db).stdout)
    assert sorted(row["job_id"] for row in listed) == sorted(job.id for job, _, _ in stored)
    by_job = {row["job_id"]: row for row in listed}
    for job, _, _ in stored:
        row = by_job[job.id]
        assert (row["status"], row["reason"], row["power_mode"], row["usb_port"]) == (
            job.status, job.reason, job.power_mode, job.usb_port)
    assert {row["status"] for row in listed} == {"succeeded", "skipped"}

    five = json.loads(farm("results", "--power-mode", "5W", "--format", "json", "--db", db).stdout)
    assert five and {row["power_mode"] for row in five} == {"5W"}
    assert {row["power_mode_measured"] for row in five} == {"5W (nvpmodel 1)"}
    usb2 = json.loads(farm("results", "--status", "all", "--usb-speed", "480", "--format", "json", "--db", db).stdout)
    assert len(usb2) == 2 and {(row["usb_port"], row["status"]) for row in usb2} == {("1-1.2", "succeeded")}

    groups = json.loads(farm("results", "--status", "all", "--group-by", "power_mode", "--group-by", "usb_speed",
                             "--format", "json", "--db", db).stdout)
    counts = {(g["power_mode"], g["usb_speed"]): (g["jobs"], g["succeeded"]) for g in groups}
    # Jetson cells: the CPU model ran, the Edge TPU model is skipped (no TPU there); x86: no mode. A group
    # without a USB speed is null in JSON (the column is a number whatever the selection), "-" in text.
    assert counts[("10W", None)] == (8, 4) and counts[("5W", None)] == (8, 4)
    assert counts[("-", 5000)] == (2, 2) and counts[("-", 480)] == (2, 2)
    assert counts[("-", None)] == (2, 2)
    bad = farm("results", "--group-by", "colour", "--db", db, check=False)
    assert bad.returncode != 0 and "choose from" in bad.stdout + bad.stderr and "Traceback" not in bad.stderr


def test_matrix_all_over_the_lab_covers_every_mode_and_port(small_lab: SmallLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'all.db'}"
    register_models(db, builds=[("dense_stack", [10])],  # setup in this process: tests/model_setup.py
                    files=[(SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite", "mnv1-tpu")])
    # `all` at its shortest timing (tests/quick_all.py): what it covers is under test here, not its numbers.
    done = farm("run", "--matrix", "all", "--matrix-file", str(quick_all_matrix(tmp_path)), "--inventory",
                str(small_lab.inventory_path), "--db", db, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(farm("results", "--status", "all", "--format", "json", "--db", db).stdout)
    # Per Nano: 2 modes x (CPU model + Edge TPU model) x threads 1..4; x86: (CPU + 2 ports) x 4 threads.
    assert len(listed) == 2 * 16 + 12
    for row in listed:
        assert row["status"] in ("succeeded", "skipped") and (row["status"] == "succeeded") == (row["reason"] is None)
    ran = {(r["host"], r["power_mode"], r["power_mode_measured"]) for r in listed if r["status"] == "succeeded"}
    nanos = small_lab.hosts("jetson-nano")
    [x86] = small_lab.hosts("x86-usb")
    assert ran == {(h, "10W", "MAXN (nvpmodel 0)") for h in nanos} | {(h, "5W", "5W (nvpmodel 1)") for h in nanos} \
        | {(x86, None, None)}
    x86_tpu = {(r["usb_port"], r["usb_speed"], r["status"]) for r in listed
               if r["host"] == x86 and r["delegate"] == "edgetpu"}
    assert x86_tpu == {("2-1", 5000, "succeeded"), ("1-1.2", 480, "succeeded")}
    for host in nanos:
        assert (small_lab.root(host) / STATUS).read_text().strip() == "pmode:0000"


def power_state_file(small_lab: SmallLab, host: str) -> Path:
    """Where the agent on ``host`` writes the original mode before changing it (agent/power.py's state file)."""
    state = small_lab.lab.state()
    assert state is not None
    entry = next(h for h in small_lab.inventory.hosts if h.name == host)
    tag = hashlib.sha1(os.path.abspath(small_lab.root(host)).encode()).hexdigest()[:12]
    return Path(state["home"]) / entry.workdir / f"power-restore-{tag}.json"


def restore_reports(db: str, host: str, since_job: int) -> list[tuple[str, dict]]:
    """Every restore report stored after ``since_job``: in the host's facts and in its jobs' results."""
    store = open_store(db)
    try:
        with store.session() as session:
            facts = session.scalars(select(HostFactsRow.facts).join(HostRow, HostFactsRow.host_id == HostRow.id)
                                    .where(HostRow.name == host)).all()
            details = session.scalars(select(ResultRow.detail).where(ResultRow.job_id > since_job)).all()
    finally:
        store.close()
    reports = [("facts", r) for f in facts for r in f.get("power_restored") or []]
    reports += [("result", r) for d in details for r in d.get("power_restored") or []]
    reports += [("result", d["power"]["recovered"]) for d in details if (d.get("power") or {}).get("recovered")]
    return reports


def test_agent_killed_mid_job_is_restored_at_the_next_contact_which_says_so(
        small_lab: SmallLab, workspace: dict[str, str], power_usb_run: subprocess.CompletedProcess) -> None:
    host = small_lab.hosts("jetson-nano")[1]
    root = small_lab.root(host)
    state_file = power_state_file(small_lab, host)
    last_job = max(job.id for job, _, _ in jobs(workspace["db"]))
    run = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", "--matrix", "long-5w", "--matrix-file",
                            workspace["matrix"], "--inventory", workspace["inventory"], "--db", workspace["db"]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "COLUMNS": "250"})
    try:
        deadline = time.monotonic() + 120
        while (root / STATUS).read_text().strip() != "pmode:0001" or not state_file.exists():
            if run.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the 5W job never set 5W:\n{run.communicate(timeout=60)[0]}")
            time.sleep(0.05)
        # The process that set the mode, whichever it is (the serve loop or a job it detached), dies
        # the way only SIGKILL makes it: no handler, no restore.
        pid = json.loads(state_file.read_text())["pid"]
        time.sleep(1.0)  # into the timed loop
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while os.path.exists(f"/proc/{pid}") and time.monotonic() - killed_at < 10:
            time.sleep(0.05)
        output, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # The matrix's `hosts:` chose the one board.
    assert {name for job, name, _ in jobs(workspace["db"]) if job.id > last_job} == {host}
    # The next contact (a fresh run on that host) restores whatever the kill left, and says so.
    again = farm("run", "--matrix", "power-usb", "--matrix-file", workspace["matrix"], "--inventory",
                 workspace["inventory"], "--db", workspace["db"], "--host", host)
    assert (root / STATUS).read_text().strip() == "pmode:0000", output + again.stdout
    assert (root / "sys/devices/system/cpu/online").read_text().strip() == "0-3"
    assert not state_file.exists()
    mine = [(where, r) for where, r in restore_reports(workspace["db"], host, last_job) if r.get("left_by_pid") == pid]
    assert mine, output + again.stdout
    assert all(r["restored"] for _, r in mine)
    assert {(r["requested"]["name"], r["mode"]["name"]) for _, r in mine} == {("5W", "MAXN")}
    if any(where == "facts" for where, _ in mine):  # restored on contact: the run's output says so
        said = " ".join((output + again.stdout).split())
        assert f"restored power mode MAXN: agent pid {pid} was killed while the board ran in 5W" in said, said
