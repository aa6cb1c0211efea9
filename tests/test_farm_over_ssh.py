"""A whole farm over SSH, as a user drives it: the simulated lab's real sshd hosts, real agents, real inference.

Every board plays with its own interpreter, so what the store says about a host's
Python and runtime is checked against that interpreter itself, asked directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from sqlalchemy import select

from orchestrator.agent_client import AgentSession
from orchestrator.deploy import build_agent
from orchestrator.inventory import Host
from orchestrator.store import open_store
from orchestrator.store.schema import HostFactsRow, HostRow
from orchestrator.transport.ssh import SshTransport
from tests.model_setup import register_models

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

# Small models and short timing: the point is the farm's plumbing, not the numbers.
MATRIX = """
matrices:
  smoke:
    models: [dense_stack-l10, conv_stack-l1]
    threads: [1, 2]
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0, max_seconds: 20}
"""
NO_RUNTIME_BOARD = "jetson-nano-jp4"


def farm(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, check=False,
                          timeout=timeout, env={**os.environ, "COLUMNS": "250"})
    if check and done.returncode != 0:
        raise AssertionError(f"farm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def interpreter_versions(python: str) -> tuple[str, str | None]:
    """What the host's own interpreter says: its version, and its tflite-runtime's (None without one)."""
    probe = ("import platform\ntry:\n    import tflite_runtime; v = tflite_runtime.__version__\n"
             "except ImportError:\n    v = None\nprint(platform.python_version(), v)")
    version, runtime = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True,
                                      timeout=60).stdout.split()
    return version, None if runtime == "None" else runtime


@pytest.fixture(scope="module")
def truth(running_lab: RunningLab) -> dict[str, tuple[str, str | None]]:
    return {h.name: interpreter_versions(h.python) for h in running_lab.inventory.hosts}


def write_inventory(path: Path, running_lab: RunningLab, keep: set[str] | None = None, change: Any = None,
                    extra: list[dict] | None = None) -> Path:
    """The lab's inventory (only the hosts in ``keep``), each entry passed through ``change``, plus ``extra``."""
    entries = [e for e in yaml.safe_load(running_lab.lab.inventory_path.read_text())["hosts"]
               if keep is None or e["name"] in keep]
    entries = [change(dict(e)) if change else e for e in entries] + (extra or [])
    path.write_text(yaml.safe_dump({"hosts": entries}, sort_keys=False))
    return path


def fresh_workdir(entry: dict) -> dict:
    # The lab's hosts share one login home: a private workdir makes this test's first deploy a real upload.
    entry["workdir"] = f"{entry['workdir']}/t-{uuid.uuid4().hex[:10]}"
    return entry


def table_line(output: str, host: str) -> str:
    return next(line for line in output.splitlines() if f" {host} " in line)


class CountingTransport(SshTransport):
    """The real SSH transport, counting what it uploads and the SFTP sessions it opens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads: list[str] = []
        self.sftp_sessions = 0

    def put(self, local: Path, remote: str) -> None:
        self.uploads.append(remote)
        super().put(local, remote)

    def _sftp_client(self) -> Any:
        if self._sftp is None:
            self.sftp_sessions += 1
        return super()._sftp_client()


def test_deploy_to_every_host_at_once_then_again_sends_nothing(running_lab: RunningLab) -> None:
    workdir = f"t-{uuid.uuid4().hex[:10]}"
    hosts = [dataclasses.replace(h, workdir=f"{h.workdir}/{workdir}") for h in running_lab.inventory.hosts]
    bundle = build_agent()

    def deploy(host: Host) -> tuple[list[str], str, int]:
        with CountingTransport(host, known_hosts=running_lab.known_hosts) as transport:
            with AgentSession(transport) as session:
                assert session.request({"op": "ping"}, timeout=30)["ok"]
            remote = f"{host.workdir}/{bundle.file_name}"
            # Inode and size of the deployed file, and anything else the upload left in the workdir.
            seen = transport.run(["sh", "-c", f'stat -c "%i %s" {remote} && ls -a {host.workdir}']).stdout
            return transport.uploads, seen, transport.sftp_sessions

    with ThreadPoolExecutor(len(hosts)) as pool:
        first = list(pool.map(deploy, hosts))
        second = list(pool.map(deploy, hosts))
    for host, (uploads, seen, sftp_sessions) in zip(hosts, first, strict=True):
        assert sftp_sessions == 1, "the first contact needs SFTP, once"
        assert len(uploads) == 1 and uploads[0].startswith(f"{host.workdir}/{bundle.file_name}.tmp-"), uploads
        _, size, *names = seen.split()
        assert size == str(len(bundle.data)), "the deployed agent is not the whole bundle"
        # The archive and the folder its first start unpacked it into, nothing half-made.
        assert sorted(set(names) - {".", ".."}) == [bundle.unpacked_name, bundle.file_name], \
            "an upload or an unpack left a temporary file"
    for (_, seen_before, _), (uploads, seen_after, sftp_sessions) in zip(first, second, strict=True):
        # The agent started at once: no SFTP session asked whether it was there.
        assert uploads == [] and sftp_sessions == 0
        assert seen_after == seen_before, "the second deploy replaced the file"


def test_inventory_check_shows_each_hosts_own_python_and_runtime_and_stores_facts(
        running_lab: RunningLab, truth: dict[str, tuple[str, str | None]], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'check.db'}"
    # No --known-hosts: a lab's inventory brings its own known_hosts.
    done = farm("inventory", "check", "--inventory", str(running_lab.lab.inventory_path), "--db", db)
    hosts = running_lab.inventory.hosts
    assert f"{len(hosts)} of {len(hosts)} host(s) reachable" in done.stdout
    assert len({python for python, _ in truth.values()}) >= 3, "the lab should mix Pythons"
    for host in hosts:
        python, runtime = truth[host.name]
        line = table_line(done.stdout, host.name)
        assert f" {python} " in line, line
        assert (f"tflite_runtime {runtime}" if runtime else " none ") in line, line

    store = open_store(db)
    try:
        with store.session() as session:
            rows = session.execute(select(HostRow.name, HostFactsRow.facts)
                                   .join(HostFactsRow, HostFactsRow.host_id == HostRow.id)).all()
    finally:
        store.close()
    assert sorted(name for name, _ in rows) == sorted(h.name for h in hosts), "one snapshot per host"
    for name, facts in rows:
        assert facts["python"]["version"] == truth[name][0]
        assert facts["runtime"]["version"] == truth[name][1]
    boards = {h.name: h.board for h in hosts}
    for name, facts in rows:
        line = table_line(done.stdout, name)
        if boards[name].startswith("jetson"):  # the simulated Jetsons' GPU: devfreq clock, load, GPU rail
            gpu = facts["gpu"]
            assert (gpu["cuda_cores"], gpu["max_clock_hz"], gpu["clock_hz"]) == (128, 921600000, 921600000)
            assert gpu["rail"] == "POM_5V_GPU" and gpu["rail_mw"] > 0
            assert f"128 cores, 921.6/921.6 MHz, POM_5V_GPU {gpu['rail_mw']} mW" in line, line
        else:
            assert facts["gpu"] is None and "cores" not in line


def test_a_run_across_the_lab_stores_each_hosts_own_python_and_runtime(
        running_lab: RunningLab, truth: dict[str, tuple[str, str | None]], tmp_path: Path, pg_url: str) -> None:
    register_models(pg_url, builds=[("dense_stack", [10]), ("conv_stack", [1])])  # setup in this process: tests/model_setup.py
    matrix = tmp_path / "matrices.yaml"
    matrix.write_text(MATRIX)
    inventory = running_lab.lab.inventory_path
    done = farm("run", "--matrix", "smoke", "--matrix-file", str(matrix), "--inventory", str(inventory),
                "--db", pg_url)
    rows = json.loads(farm("results", "--db", pg_url, "--status", "all", "--format", "json").stdout)
    hosts = running_lab.inventory.hosts
    assert len({h.board for h in hosts}) >= 4 and len(hosts) >= 4
    assert len(rows) == len(hosts) * 2 * 2, "every host × model × threads cell is stored"
    assert "Traceback" not in done.stdout + done.stderr
    for host in hosts:
        python, runtime = truth[host.name]
        mine = [r for r in rows if r["host"] == host.name]
        assert {(r["model"], r["threads"]) for r in mine} == {(m, t) for m in ("dense_stack-l10", "conv_stack-l1")
                                                               for t in (1, 2)}
        if host.board == NO_RUNTIME_BOARD:
            assert runtime is None
            assert {r["status"] for r in mine} == {"skipped"}
            assert all("no TFLite runtime" in r["reason"] and r["reason"].count("no TFLite runtime") == 1
                       for r in mine), mine
            continue
        for row in mine:
            assert row["status"] == "succeeded", row
            assert (row["python"], row["runtime"], row["runtime_version"]) == (python, "tflite_runtime", runtime)
            assert row["samples"] >= 3 and 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"]
    # Two different Pythons and two runtime versions really did the work.
    ran = [r for r in rows if r["status"] == "succeeded"]
    assert len({r["python"] for r in ran}) >= 2 and len({r["runtime_version"] for r in ran}) >= 2


def test_an_unknown_host_key_is_refused_with_the_way_to_trust_it(running_lab: RunningLab, tmp_path: Path) -> None:
    # A copy of the lab's hosts without its defaults names no known_hosts: ~/.ssh/known_hosts has none of their keys.
    inventory = write_inventory(tmp_path / "copied.yaml", running_lab)
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    done = farm("inventory", "check", "--inventory", str(inventory), "--db", db, check=False)
    assert done.returncode == 4  # unreachable hosts: an infrastructure error
    text = " ".join(done.stdout.split())
    hosts = running_lab.inventory.hosts
    assert f"0 of {len(hosts)} host(s) reachable" in text
    assert text.count("is unknown") == len(hosts) and "--accept-new-host-keys" in text and "SHA256:" in text
    assert "Traceback" not in done.stdout + done.stderr

    known = tmp_path / "known_hosts"
    farm("inventory", "check", "--inventory", str(inventory), "--db", db, "--known-hosts", str(known),
         "--accept-new-host-keys")
    saved = sorted(known.read_text().splitlines())
    assert saved == sorted(running_lab.known_hosts.read_text().splitlines()), "accepted keys differ from the lab's"
    again = farm("inventory", "check", "--inventory", str(inventory), "--db", db, "--known-hosts", str(known))
    assert f"{len(hosts)} of {len(hosts)} host(s) reachable" in again.stdout


def test_a_host_that_is_down_is_reported_and_the_others_finish(running_lab: RunningLab, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'down.db'}"
    register_models(db, builds=[("conv_stack", [1])])  # setup in this process: tests/model_setup.py
    rpi = running_lab.host("rpi4")
    dead_port = running_lab.free_port([rpi.address])  # nothing listens there
    dead = {"name": "dead-rpi", "address": rpi.address, "port": dead_port, "user": rpi.user,
            "identity_file": rpi.identity_file, "python": rpi.python, "board": "rpi4"}
    live = [h for h in running_lab.inventory.hosts if h.board in ("rpi4", "devboard", "jetson-nano")]
    inventory = write_inventory(tmp_path / "with-dead.yaml", running_lab, keep={h.name for h in live},
                                change=fresh_workdir, extra=[dead])
    matrix = tmp_path / "matrices.yaml"
    matrix.write_text(MATRIX.replace("[dense_stack-l10, conv_stack-l1]", "[conv_stack-l1]"))

    done = farm("run", "--matrix", "smoke", "--matrix-file", str(matrix), "--inventory", str(inventory),
                "--db", db, "--known-hosts", str(running_lab.known_hosts), check=False)
    assert done.returncode == 4, done.stdout + done.stderr  # a host unreachable: infrastructure
    errors = " ".join(done.stderr.split())
    assert f"unreachable dead-rpi: dead-rpi: cannot connect to {rpi.address}:{dead_port}: connection refused" \
        in errors, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    rows = json.loads(farm("results", "--db", db, "--status", "all", "--format", "json").stdout)
    by_host: dict[str, list[dict]] = {}
    for row in rows:
        by_host.setdefault(row["host"], []).append(row)
    assert sorted(by_host) == sorted([h.name for h in live] + ["dead-rpi"])
    assert [r["status"] for r in by_host.pop("dead-rpi")] == ["failed", "failed"]
    for name, mine in by_host.items():
        assert [r["status"] for r in mine] == ["succeeded", "succeeded"], (name, mine)


def test_tensorrt_is_tried_on_the_lab_jetsons_and_skipped_at_its_import(running_lab: RunningLab,
                                                                         tmp_path: Path) -> None:
    """Both Jetsons (Python 3.7 and JetPack 4's 3.6) reach the tensorrt import through the real agent."""
    import hashlib

    from agent.schema import make_job

    model = tmp_path / "googlenet.onnx"
    model.write_bytes(b"\x08\x07 an ONNX stand-in: the job stops at the tensorrt import")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    jetsons = [h for h in running_lab.inventory.hosts if h.board.startswith("jetson")]
    assert len(jetsons) == 2
    for host in jetsons:
        with AgentSession(SshTransport(host, known_hosts=running_lab.known_hosts)) as session:
            remote = session.upload_model(model, digest)
            job = make_job(f"trt-{host.name}", remote, digest, delegate="gpu", backend="tensorrt",
                           timing={"min_runs": 1, "min_seconds": 0.0, "warmup_min_seconds": 0.0})
            result = session.run_job({**job, "precision": "fp16"})
        assert result["status"] == "skipped" and result["error"]["kind"] == "unsupported", result
        assert "tensorrt is not importable on this host" in result["error"]["message"]
        assert result["conditions"]["before"]["gpu"]["max_clock_hz"] == 921600000
