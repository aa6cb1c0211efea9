"""Power modes on simulated boards: the agent's real code path against the stand-in tools, as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent import power, tools
from agent.boards.governor import GovernorDriver
from agent.boards.jetson import JetsonDriver
from farm_lab import hardware
from tests.conftest import REPO

FIVE_WATT = {"name": "5W", "nvpmodel": 1, "jetson_clocks": False, "settle_seconds": 0}
CPU = "sys/devices/system/cpu"


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"


def use_board(monkeypatch: pytest.MonkeyPatch, root: Path, agent_dir: Path) -> None:
    # The stand-ins' "#!/usr/bin/env python3" finds this interpreter first: a pyenv shim costs 0.1 s a call.
    interpreter = agent_dir.parent / "python3-first"
    interpreter.mkdir(exist_ok=True)
    if not (interpreter / "python3").exists():
        (interpreter / "python3").symlink_to(sys.executable)
    path = f"{interpreter}{os.pathsep}{os.environ['PATH']}"
    for name, value in hardware.standin_env(root, {"PATH": path}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FARM_AGENT_DIR", str(agent_dir))
    monkeypatch.setenv("FARM_NO_SUDO", "1")


@pytest.fixture
def nano(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent_dir: Path) -> Path:
    root = tmp_path / "nano"
    hardware.install_jetson_nano(root)
    use_board(monkeypatch, root, agent_dir)
    return root


@pytest.fixture
def rpi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent_dir: Path) -> Path:
    root = tmp_path / "rpi"
    hardware.install_rpi(root, "4B")
    use_board(monkeypatch, root, agent_dir)
    return root


def read(root: Path, relative: str) -> str:
    return (root / relative).read_text().strip()


def max_freqs(root: Path, cpus: range) -> list[int]:
    return [int(read(root, f"{CPU}/cpu{cpu}/cpufreq/scaling_max_freq")) for cpu in cpus]


def standin(tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def assert_maxn(root: Path) -> None:
    assert read(root, f"{CPU}/online") == "0-3"
    assert max_freqs(root, range(4)) == [1479000] * 4
    assert power.current_mode()["name"] == "MAXN"


# --- the stand-ins speak like the real tools ---------------------------------------------------------

def test_nvpmodel_standin_output_matches_the_real_tool(nano: Path) -> None:
    assert standin("nvpmodel", "-q").stdout == "NV Power Mode: MAXN\n0\n"
    listing = standin("nvpmodel", "-p", "--verbose").stdout
    assert "NVPM VERB: POWER_MODEL: ID=0 NAME=MAXN" in listing and "NVPM VERB: POWER_MODEL: ID=1 NAME=5W" in listing
    bad = standin("nvpmodel", "-m", "7")
    assert bad.returncode != 0 and "NVPM ERROR: request for bad power mode 7" in bad.stdout
    assert standin("nvpmodel", "-m", "1").returncode == 0
    assert read(nano, "var/lib/nvpmodel/status") == "pmode:0001"
    assert standin("nvpmodel", "-q").stdout == "NV Power Mode: 5W\n1\n"
    assert read(nano, f"{CPU}/online") == "0-1"
    assert [read(nano, f"{CPU}/cpu{c}/online") for c in range(4)] == ["1", "1", "0", "0"]


def test_jetson_clocks_standin_store_show_restore(nano: Path, tmp_path: Path) -> None:
    saved = tmp_path / "l4t_dfs.conf"
    assert standin("jetson_clocks", "--store", str(saved)).returncode == 0
    assert f"/{CPU}/cpu0/cpufreq/scaling_min_freq:102000" in saved.read_text()
    # Like the real script it asks before overwriting, and an answer that is not "y" (here EOF) refuses.
    again = standin("jetson_clocks", "--store", str(saved))
    assert again.returncode == 1 and "Can I overwrite it? Y/N:" in again.stdout
    assert standin("jetson_clocks").returncode == 0
    shown = standin("jetson_clocks", "--show").stdout
    assert "cpu0: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000" in shown
    assert "NV Power Mode: MAXN" in shown
    assert standin("jetson_clocks", "--restore", str(saved)).returncode == 0
    assert read(nano, f"{CPU}/cpu0/cpufreq/scaling_min_freq") == "102000"
    missing = standin("jetson_clocks", "--restore", str(tmp_path / "nope.conf"))
    assert missing.returncode == 1 and "file not found" in missing.stdout


# --- Jetson: nvpmodel and jetson_clocks ----------------------------------------------------------------

def test_5w_takes_two_cpus_offline_and_restore_returns_to_maxn(nano: Path) -> None:
    with power.applied(FIVE_WATT) as info:
        assert read(nano, f"{CPU}/online") == "0-1"
        assert info["before"]["name"] == "MAXN" and info["before"]["nvpmodel"] == 0
        measured = info["measured"]
        assert measured["ok"] and measured["name"] == "5W" and measured["nvpmodel"] == 1
        assert measured["cpus_online"] == [0, 1]
        assert measured["cpu_max_freq_khz"] == {"0": 918000, "1": 918000}
        assert measured["jetson_clocks"] is False
        assert os.path.exists(power.state_path())
    assert info["restore"] == {"ok": True}
    assert_maxn(nano)
    assert not os.path.exists(power.state_path())


def test_restores_maxn_when_the_benchmark_raises(nano: Path) -> None:
    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom), power.applied(FIVE_WATT):
        assert power.current_mode()["name"] == "5W"
        raise Boom("invoke failed")
    assert_maxn(nano)
    assert not os.path.exists(power.state_path())


def test_jetson_clocks_on_for_the_run_then_back_off(nano: Path) -> None:
    spec = {"name": "MAXN+clocks", "nvpmodel": 0, "jetson_clocks": True, "settle_seconds": 0}
    with power.applied(spec) as info:
        assert info["measured"]["jetson_clocks"] is True
        assert read(nano, f"{CPU}/cpu0/cpufreq/scaling_min_freq") == "1479000"
    assert power.current_mode()["jetson_clocks"] is False
    assert read(nano, f"{CPU}/cpu0/cpufreq/scaling_min_freq") == "102000"


def test_a_mode_named_like_an_nvpmodel_mode_needs_no_id(nano: Path) -> None:
    with power.applied({"name": "5W", "settle_seconds": 0}) as info:
        assert info["measured"]["nvpmodel"] == 1
    assert_maxn(nano)


def test_a_mode_the_board_lacks_fails_before_anything_changes(nano: Path) -> None:
    with pytest.raises(power.PowerError, match=r"nvpmodel mode 7.*0 \(MAXN\), 1 \(5W\)"), \
            power.applied({"name": "15W", "nvpmodel": 7, "settle_seconds": 0}):
        pytest.fail("the block must not run")
    assert_maxn(nano)
    assert not os.path.exists(power.state_path())


def test_a_failed_restore_is_reported_and_retried_by_pending_restore(nano: Path) -> None:
    conf = nano / "etc/nvpmodel.conf"
    text = conf.read_text()
    with power.applied(FIVE_WATT) as info:
        conf.unlink()  # nvpmodel cannot work without its config: the restore will fail
    assert info["restore"]["ok"] is False and "NVPM ERROR" in info["restore"]["error"]
    assert os.path.exists(power.state_path())
    conf.write_text(text)
    report = power.pending_restore()
    assert report is not None and report["restored"] is True
    assert_maxn(nano)


# --- crash safety ------------------------------------------------------------------------------------------

CHILD = """
import sys, time
from agent import power
with power.applied({"name": "5W", "nvpmodel": 1, "settle_seconds": 0}):
    print("inside", flush=True)
    time.sleep(60)
"""


def start_child() -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "inside"
    return child


def test_a_killed_agent_leaves_a_state_file_that_pending_restore_undoes(nano: Path) -> None:
    child = start_child()
    child.kill()  # SIGKILL: no finally block runs
    child.wait()
    state = json.loads(Path(power.state_path()).read_text())
    assert state["pid"] == child.pid and state["saved"]["name"] == "MAXN" and state["requested"]["name"] == "5W"
    assert read(nano, f"{CPU}/online") == "0-1"

    report = power.pending_restore()
    assert report is not None and report["restored"] is True
    assert report["left_by_pid"] == child.pid and report["mode"]["name"] == "MAXN"
    assert report["now"]["name"] == "MAXN"
    assert_maxn(nano)
    assert not os.path.exists(power.state_path())
    assert power.pending_restore() is None


def test_sigterm_restores_and_a_live_owner_is_left_alone(nano: Path) -> None:
    child = start_child()
    try:
        report = power.pending_restore()
        assert report is not None and report["restored"] is False and "still running" in report["error"]
        with pytest.raises(power.PowerError, match="still pending"), power.applied(FIVE_WATT):
            pytest.fail("must not run while another agent holds the board")
        assert power.current_mode()["name"] == "5W"
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM
    assert_maxn(nano)
    assert not os.path.exists(power.state_path())


# --- privilege -----------------------------------------------------------------------------------------------

def pretend_real_board_as_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the sudo path as a non-root agent on real hardware would (simulated roots never use sudo)."""
    monkeypatch.delenv("FARM_NO_SUDO")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(tools, "needs_sudo", lambda: True)


def test_sudo_is_for_real_boards_only(nano: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FARM_NO_SUDO")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert power.needs_sudo() is False  # sudo would drop FARM_DEVICE_ROOT and aim the tools at this machine
    monkeypatch.setenv("FARM_DEVICE_ROOT", "/")
    assert power.needs_sudo() is True
    monkeypatch.setenv("FARM_NO_SUDO", "1")
    assert power.needs_sudo() is False


def test_stand_ins_refuse_to_act_on_the_real_machine(nano: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FARM_DEVICE_ROOT")
    for tool in ("nvpmodel", "jetson_clocks", "vcgencmd"):
        done = standin(tool, "-q" if tool == "nvpmodel" else "get_throttled" if tool == "vcgencmd" else "--show")
        assert done.returncode == 2 and "names no simulated board" in done.stderr


def fake_sudo(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sudo = folder / "sudo"
    sudo.write_text("#!/bin/sh\n" + body)
    sudo.chmod(0o755)
    return sudo


def test_sudo_refusal_names_the_sudoers_line_and_changes_nothing(nano: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_sudo(tmp_path / "bin", 'echo "sudo: a password is required" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    pretend_real_board_as_a_user(monkeypatch)
    with pytest.raises(power.PowerError) as caught, power.applied(FIVE_WATT):
        pytest.fail("the block must not run")
    message = str(caught.value)
    assert "a password is required" in message
    tools = hardware.standins_dir()
    assert f"ALL=(root) NOPASSWD: {tools / 'nvpmodel'}, {tools / 'jetson_clocks'}" in message
    assert caught.value.remedy and "/etc/sudoers.d/farm" in caught.value.remedy
    assert_maxn(nano)
    assert not os.path.exists(power.state_path())


def test_tools_run_through_sudo_n_by_absolute_path(nano: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "sudo.log"
    fake_sudo(tmp_path / "bin", f'printf "%s\\n" "$*" >> {log}\n[ "$1" = "-n" ] && shift\nexec "$@"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    pretend_real_board_as_a_user(monkeypatch)
    with power.applied(FIVE_WATT) as info:
        assert info["measured"]["ok"]
    calls = log.read_text().splitlines()
    nvpmodel = hardware.standins_dir() / "nvpmodel"
    assert f"-n {nvpmodel} -m 1" in calls and f"-n {nvpmodel} -m 0" in calls
    assert any(c.startswith(f"-n {hardware.standins_dir() / 'jetson_clocks'} --store ") for c in calls)
    assert_maxn(nano)


# --- cpufreq governor boards ----------------------------------------------------------------------------------

def test_governor_mode_on_a_raspberry_pi(rpi: Path) -> None:
    assert isinstance(power.driver_for("Raspberry Pi 4 Model B Rev 1.4"), GovernorDriver)
    with power.applied({"name": "powersave", "governor": "powersave", "settle_seconds": 0}) as info:
        assert info["before"]["governor"] == "ondemand"
        assert info["measured"]["governor"] == "powersave" and info["measured"]["ok"]
        assert {read(rpi, f"{CPU}/cpu{c}/cpufreq/scaling_governor") for c in range(4)} == {"powersave"}
    assert {read(rpi, f"{CPU}/cpu{c}/cpufreq/scaling_governor") for c in range(4)} == {"ondemand"}
    with power.applied({"name": "performance", "settle_seconds": 0}) as info:  # a governor's name is enough
        assert info["measured"]["governor"] == "performance"


def test_governor_the_kernel_lacks_and_nvpmodel_on_a_pi_are_refused(rpi: Path) -> None:
    with pytest.raises(power.PowerError, match="'turbo' is not available.*performance"), \
            power.applied({"name": "turbo", "governor": "turbo", "settle_seconds": 0}):
        pytest.fail("must not run")
    with pytest.raises(power.PowerError, match="sets nvpmodel"), power.applied(FIVE_WATT):
        pytest.fail("must not run")
    assert power.current_mode()["governor"] == "ondemand"


def test_driver_for_board_names_and_facts() -> None:
    assert isinstance(power.driver_for("jetson-nano"), JetsonDriver)
    assert isinstance(power.driver_for({"board": "NVIDIA Jetson Nano Developer Kit"}), JetsonDriver)
    assert isinstance(power.driver_for("devboard"), GovernorDriver)
    assert isinstance(power.driver_for("Freescale i.MX8MQ Phanbein"), GovernorDriver)


# --- the agent's modules under the Python 3.6 that JetPack 4 ships -------------------------------------------

PY36_SCRIPT = """
import json
from agent import conditions, edgetpu, power
with power.applied({"name": "5W", "nvpmodel": 1, "jetson_clocks": True, "settle_seconds": 0}) as info:
    inside = conditions.snapshot()
    with conditions.PowerSampler(interval=0.01) as sampler:
        pass
print(json.dumps({"measured": info["measured"], "restore": info["restore"], "after": power.current_mode(),
                  "inside": inside, "tpu": edgetpu.resolve({"port": "2-1", "expect_speed": 5000}),
                  "energy": sampler.summary(inferences=10)}))
"""


def test_power_edgetpu_and_conditions_under_python_36(nano: Path, tmp_path: Path) -> None:
    from tests.test_agent import python36

    interpreter = python36()
    hardware.install_ina3221(nano)
    hardware.install_usb_accelerators(nano, [("2-1", 5000), ("1-1.2", 480)])
    hardware.install_libedgetpu(nano)
    # The stand-ins run under 3.6 too: their "#!/usr/bin/env python3" finds this one first.
    shims = tmp_path / "py36"
    shims.mkdir()
    (shims / "python3").symlink_to(interpreter)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{hardware.standins_dir()}{os.pathsep}{shims}"
           f"{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([interpreter, "-c", PY36_SCRIPT], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["measured"]["nvpmodel"] == 1 and out["measured"]["cpus_online"] == [0, 1]
    assert out["measured"]["jetson_clocks"] is True and out["restore"] == {"ok": True}
    assert out["after"]["name"] == "MAXN" and out["after"]["jetson_clocks"] is False
    assert out["inside"]["power"]["total_mw"] == 1600 + 500  # 5W at rest, plus what jetson_clocks adds
    assert out["tpu"]["device"] == "usb:0" and out["tpu"]["speed"] == 5000
    assert out["energy"]["available"] is True
    assert_maxn(nano)


def test_the_mode_list_is_asked_of_nvpmodel_once_per_config_file(nano: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A wrapper first on PATH logs each call, then runs the stand-in: the tool farm runs is still nvpmodel.
    real = tools.find_tool("nvpmodel")
    calls = tmp_path / "calls.txt"
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    (wrappers / "nvpmodel").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    (wrappers / "nvpmodel").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")

    def parses() -> int:
        return calls.read_text().splitlines().count("-p --verbose") if calls.exists() else 0

    assert JetsonDriver().modes() == [{"id": 0, "name": "MAXN"}, {"id": 1, "name": "5W"}]
    assert parses() == 1
    assert JetsonDriver().modes() == [{"id": 0, "name": "MAXN"}, {"id": 1, "name": "5W"}]
    assert parses() == 1, "an unchanged nvpmodel.conf was parsed again"
    # The current mode is always asked: it is state, not configuration.
    assert JetsonDriver().current_mode()["name"] == "MAXN"
    assert calls.read_text().splitlines().count("-q") >= 1

    conf = nano / "etc" / "nvpmodel.conf"
    conf.write_text(conf.read_text().replace("NAME=5W", "NAME=5W_LOW"))
    assert JetsonDriver().modes() == [{"id": 0, "name": "MAXN"}, {"id": 1, "name": "5W_LOW"}]
    assert parses() == 2
