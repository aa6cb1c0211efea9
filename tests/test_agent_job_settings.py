"""A job's power mode and Edge TPU, end to end inside the agent: set, verified, recorded, restored.

The agent's real job path (``run_job`` and the ``serve`` loop) runs against
simulated boards with the stand-in nvpmodel/jetson_clocks and a sysfs USB tree;
inference is real tflite-runtime on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import contact
from agent.bench import file_sha256, run_job
from agent.schema import make_job, validate_result
from farm_lab import hardware
from tests.conftest import REPO, SHARED_MODELS
from tests.test_agent import python36 as python36_path
from tests.test_agent_power import fake_sudo, use_board

QUICK = {"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 5, "min_seconds": 0.0}
FIVE_WATT = {"name": "5W", "nvpmodel": 1, "settle_seconds": 0}
STATUS = "var/lib/nvpmodel/status"


def job(path: Path, **kwargs) -> dict:
    timing = {**QUICK, **kwargs.pop("timing", {})}
    return make_job(kwargs.pop("job_id", "job-1"), str(path), file_sha256(str(path)), timing=timing, **kwargs)


def mode_of(root: Path) -> str:
    return (root / STATUS).read_text().strip()


def online(root: Path) -> str:
    return (root / "sys/devices/system/cpu/online").read_text().strip()


@pytest.fixture
def nano(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "nano"
    hardware.install_jetson_nano(root)
    hardware.install_ina3221(root)
    use_board(monkeypatch, root, tmp_path / "agent")
    return root


@pytest.fixture
def x86(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "x86"
    root.mkdir()
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-3\n")
    hardware.install_usb_accelerators(root, [("2-1", 5000), ("1-1.2", 480)])
    use_board(monkeypatch, root, tmp_path / "agent")
    return root


def test_a_5w_job_runs_at_5w_records_both_and_puts_the_board_back(nano: Path, shared_model: Path) -> None:
    assert mode_of(nano) == "pmode:0000" and online(nano) == "0-3"
    result = validate_result(run_job(job(shared_model, power=FIVE_WATT)))
    assert result["status"] == "succeeded", result.get("error")
    settings = result["power"]
    assert settings["requested"]["name"] == "5W"
    assert settings["before"]["nvpmodel"] == 0 and settings["before"]["name"] == "MAXN"
    measured = settings["measured"]
    assert (measured["nvpmodel"], measured["name"], measured["ok"]) == (1, "5W", True)
    assert measured["cpus_online"] == [0, 1]  # the stand-in took CPUs 2 and 3 offline, as 5W does
    assert set(measured["cpu_max_freq_khz"].values()) == {918000}
    assert settings["switched"] is True and settings["restore"] == {"ok": True}
    assert mode_of(nano) == "pmode:0000" and online(nano) == "0-3"
    conditions = result["conditions"]
    assert conditions["before"]["cpus_online"] == [0, 1, 2, 3] and conditions["after"]["cpus_online"] == [0, 1, 2, 3]
    assert conditions["during"]["available"] and conditions["during"]["rail"] == "POM_5V_IN"
    # The stand-in writes 5W's rail readings while the mode holds: lower than MAXN's 1900 mW at rest.
    assert conditions["during"]["average_w"] == pytest.approx(1.6, abs=0.01)
    # The simulated board's scaling_cur_freq does not follow load, so the clock heuristic may flag the
    # run; whatever it decides, the result's flag is the sampler's, with its reasons.
    assert result["throttled"] is conditions["during"]["throttled"]
    assert result["throttled"] == bool(conditions["during"]["throttle_reasons"])


def test_a_job_already_in_its_mode_neither_switches_nor_settles(nano: Path, shared_model: Path) -> None:
    ten = {"name": "10W", "nvpmodel": 0, "settle_seconds": 30}  # a settle would show as a 30 s job
    started = time.monotonic()
    result = run_job(job(shared_model, power=ten))
    assert result["status"] == "succeeded" and result["power"]["switched"] is False
    assert result["power"]["measured"]["nvpmodel"] == 0
    assert time.monotonic() - started < 25


def test_a_failing_job_still_restores_the_mode(nano: Path) -> None:
    broken = SHARED_MODELS / "model_invoking_error.tflite"
    result = run_job(job(broken, power=FIVE_WATT))
    assert result["status"] == "failed" and result["error"]["kind"] == "benchmark"
    assert result["power"]["measured"]["nvpmodel"] == 1 and result["power"]["restore"] == {"ok": True}
    assert mode_of(nano) == "pmode:0000" and online(nano) == "0-3"


def test_sudo_refused_fails_the_job_with_the_sudoers_line(nano: Path, tmp_path: Path, shared_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake_sudo(tmp_path / "bin", 'echo "sudo: a password is required" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("FARM_NO_SUDO")
    monkeypatch.setattr("agent.tools.needs_sudo", lambda: True)
    result = validate_result(run_job(job(shared_model, power=FIVE_WATT)))
    assert result["status"] == "failed" and result["error"]["kind"] == "infrastructure"
    message = result["error"]["message"]
    assert "sudo refused" in message and "NOPASSWD:" in message and "/etc/sudoers.d/farm" in message
    assert "nvpmodel" in message and "Traceback" not in message
    assert mode_of(nano) == "pmode:0000"


def test_an_unknown_mode_fails_before_anything_changes(nano: Path, shared_model: Path) -> None:
    result = run_job(job(shared_model, power={"name": "15W", "nvpmodel": 7}))
    assert result["status"] == "failed"
    assert "nvpmodel mode 7" in result["error"]["message"] and "0 (MAXN), 1 (5W)" in result["error"]["message"]
    assert mode_of(nano) == "pmode:0000"


@pytest.mark.parametrize("request_, port, speed", [
    ({"port": "1-1.2"}, "1-1.2", 480),
    ({"port": "usb3-left", "ports": {"usb3-left": {"port": "2-1", "speed": 5000}}}, "2-1", 5000),
])
def test_edgetpu_job_without_libedgetpu_is_skipped_with_the_port_and_speed_it_would_have_used(
        x86: Path, request_: dict, port: str, speed: int) -> None:
    model = SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    result = validate_result(run_job(job(model, delegate="edgetpu", edgetpu=request_)))
    assert result["status"] == "skipped", result.get("error")
    assert result["error"]["kind"] == "unsupported"
    message = result["error"]["message"]
    assert "libedgetpu.so.1 is not installed" in message
    tpu = result["edgetpu"]
    assert (tpu["port"], tpu["speed"]) == (port, speed)
    # libedgetpu enumerates in reverse sysfs-path order: usb2's 2-1 is usb:0, usb1's 1-1.2 usb:1.
    assert tpu["device"] == {"2-1": "usb:0", "1-1.2": "usb:1"}[port]
    assert f"{tpu['device']} (port {port} at {speed} Mb/s)" in message


def test_edgetpu_job_on_a_port_without_a_tpu_fails_naming_the_ports_there(x86: Path) -> None:
    model = SHARED_MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    result = run_job(job(model, delegate="edgetpu", edgetpu={"port": "3-4"}))
    assert result["status"] == "failed" and "port-missing" in result["error"]["message"]
    assert "2-1 at 5000 Mb/s" in result["error"]["message"]


def test_facts_show_power_modes_edge_tpus_and_conditions(x86: Path) -> None:
    found = contact.facts()
    devices = {d["port"]: d["speed"] for d in found["edgetpu"]["devices"]}
    assert devices == {"2-1": 5000, "1-1.2": 480}
    assert found["edgetpu"]["library"]["path"] is None
    assert found["power_restored"] == []
    assert "temperatures_c" in found["conditions"]


# --- the long-lived agent, killed mid-job ---------------------------------------------------------------

def serve(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent", "serve"], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ask(agent: subprocess.Popen, message: dict) -> dict:
    assert agent.stdin is not None and agent.stdout is not None
    agent.stdin.write(json.dumps(message) + "\n")
    agent.stdin.flush()
    return json.loads(agent.stdout.readline())


def wait_for(check, what: str, limit: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def long_job(model: Path) -> dict:
    return job(model, power=FIVE_WATT, timing={"min_runs": 10 ** 7, "min_seconds": 600, "max_seconds": 600})


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_agent_killed_mid_job_leaves_the_board_restored_by_the_next_contact(
        nano: Path, shared_model: Path, sig: int) -> None:
    env = dict(os.environ)
    agent = serve(env)
    try:
        assert agent.stdin is not None
        agent.stdin.write(json.dumps({"op": "run", "id": 1, "job": long_job(shared_model)}) + "\n")
        agent.stdin.flush()
        wait_for(lambda: mode_of(nano) == "pmode:0001" and online(nano) == "0-1", "the job to set 5W")
        time.sleep(0.5)  # into the timed loop
        agent.send_signal(sig)
        agent.wait(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    if sig == signal.SIGKILL:
        assert mode_of(nano) == "pmode:0001", "SIGKILL cannot be caught: the board stays in the job's mode"
    else:
        assert mode_of(nano) == "pmode:0000", "SIGTERM is caught: the agent restores before it exits"
    again = serve(env)
    try:
        reply = ask(again, {"op": "ping", "id": 1})
        reports = reply["power_restored"]
        if sig == signal.SIGKILL:
            [report] = reports
            assert report["restored"] is True and report["left_by_pid"] == agent.pid
            assert report["mode"]["name"] == "MAXN" and report["requested"]["name"] == "5W"
            assert report["now"]["nvpmodel"] == 0
        else:
            assert reports == []
        assert mode_of(nano) == "pmode:0000" and online(nano) == "0-3"
        assert ask(again, {"op": "ping", "id": 2})["power_restored"] == []  # said once, not every time
        ask(again, {"op": "exit", "id": 3})
    finally:
        again.wait(timeout=30)


def test_a_contact_while_a_job_holds_the_mode_leaves_it_alone_and_reports_nothing(
        nano: Path, shared_model: Path) -> None:
    env = dict(os.environ)
    running = serve(env)
    other = None
    try:
        assert running.stdin is not None
        running.stdin.write(json.dumps({"op": "run", "id": 1, "job": long_job(shared_model)}) + "\n")
        running.stdin.flush()
        wait_for(lambda: mode_of(nano) == "pmode:0001", "the job to set 5W")
        other = serve(env)  # a controller reconnecting while a detached job still runs
        assert ask(other, {"op": "ping", "id": 1})["power_restored"] == []
        facts = ask(other, {"op": "facts", "id": 2})["facts"]
        assert facts["power_restored"] == [] and facts["power"]["current"]["nvpmodel"] == 1
        assert mode_of(nano) == "pmode:0001"
        running.send_signal(signal.SIGTERM)
        running.wait(timeout=30)
        assert mode_of(nano) == "pmode:0000"
        assert ask(other, {"op": "ping", "id": 3})["power_restored"] == []
    finally:
        for agent in (running, other):
            if agent is not None and agent.poll() is None:
                agent.kill()
                agent.wait()


def test_power_modes_work_under_python_36(nano: Path, shared_model: Path, tmp_path: Path) -> None:
    """JetPack 4's system Python: the agent sets, verifies and restores there too (no runtime: the job fails after)."""
    python36 = python36_path()
    spec = job(shared_model, power=FIVE_WATT)
    (tmp_path / "job.json").write_text(json.dumps(spec))
    done = subprocess.run([python36, "-m", "agent", "run", str(tmp_path / "job.json")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    result = json.loads(done.stdout)
    measured = result["power"]["measured"]
    assert (measured["nvpmodel"], measured["cpus_online"]) == (1, [0, 1]), done.stderr
    assert result["power"]["restore"] == {"ok": True} and mode_of(nano) == "pmode:0000"
    if result["status"] != "succeeded":  # 3.6 has no tflite-runtime here: the runtime is what fails
        assert "no TFLite runtime found" in result["error"]["message"]
