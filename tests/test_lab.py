"""The simulated lab: board layouts, the plan, and real sshd hosts brought up, checked and stopped."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from typer.testing import CliRunner

from agent import facts as agent_facts
from farm_lab import pythons
from farm_lab import sshd as lab_sshd
from farm_lab.account import LabError
from farm_lab.boards import BOARDS, DEFAULT_BOARDS, write_device_root
from farm_lab.cli import app
from farm_lab.lab import Lab, lab_known_hosts, plan_hosts
from orchestrator.agent_client import AgentSession
from orchestrator.inventory import NAME_PATTERN, load_inventory
from orchestrator.transport.ssh import SshTransport

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

# What the agent must report for each board, read through its device root over SSH.
EXPECTED = {
    "jetson-nano": ("NVIDIA Jetson Nano Developer Kit", "3.7.", "2.11.0", "Ubuntu 18.04.6 LTS", "4.9.253-tegra"),
    "jetson-nano-jp4": ("NVIDIA Jetson Nano Developer Kit", "3.6.", None, "Ubuntu 18.04.5 LTS", "4.9.140-tegra"),
    "rpi3b+": ("Raspberry Pi 3 Model B Plus Rev 1.3", "3.11.", "2.14.0", "Debian GNU/Linux 12 (bookworm)",
               "6.1.0-rpi7-rpi-v8"),
    "rpi4": ("Raspberry Pi 4 Model B Rev 1.4", "3.11.", "2.14.0", "Debian GNU/Linux 12 (bookworm)",
             "6.1.0-rpi7-rpi-v8"),
    "devboard": ("Freescale i.MX8MQ Phanbein", "3.7.", "2.11.0", "Mendel GNU/Linux 5 (Eagle)", "4.14.98-imx"),
    "x86-usb": (None, "3.11.", "2.14.0", "Ubuntu 22.04.4 LTS", "5.15.0-105-generic"),
}


def test_every_board_has_expectations() -> None:
    assert set(EXPECTED) == set(BOARDS) == set(DEFAULT_BOARDS)


def test_six_hosts_cover_every_board_and_smaller_labs_have_no_python36() -> None:
    six = plan_hosts(6, None, 22)
    assert {h.board for h in six} == set(BOARDS)
    assert [h.address for h in six] == [f"127.0.0.{n}" for n in range(2, 8)]
    assert all(NAME_PATTERN.match(h.name) for h in six)
    assert six[1].name == "lab-02-rpi3bplus"
    assert "jetson-nano-jp4" not in {h.board for h in plan_hosts(5, None, 22)}
    assert [h.board for h in plan_hosts(3, ["rpi4", "devboard"], 22)] == ["rpi4", "devboard", "rpi4"]
    assert plan_hosts(300, None, 22)[-1].address == "127.0.1.45"


def test_unknown_boards_are_refused_with_the_known_ones() -> None:
    with pytest.raises(LabError, match="unknown board 'rpi5'.*jetson-nano.*x86-usb"):
        plan_hosts(2, ["rpi5"], 22)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_device_roots_read_like_their_boards(board: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_device_root(BOARDS[board], tmp_path / "root")
    monkeypatch.setenv("FARM_DEVICE_ROOT", str(tmp_path / "root"))
    model, _, _, os_name, kernel = EXPECTED[board]
    assert agent_facts.detect_board() == model
    assert agent_facts.os_release() == os_name
    assert agent_facts.kernel_release() == kernel
    assert agent_facts.cpus_online() == [0, 1, 2, 3]
    assert agent_facts.memory_total_kib() == BOARDS[board].memory_kib


def test_x86_host_has_two_usb_accelerators_at_their_speeds(tmp_path: Path) -> None:
    write_device_root(BOARDS["x86-usb"], tmp_path)
    devices = tmp_path / "sys" / "bus" / "usb" / "devices"
    corals = {d.name: (d / "speed").read_text().strip() for d in devices.iterdir()
              if (d / "idVendor").read_text().strip() == "18d1" and (d / "idProduct").read_text().strip() == "9302"}
    assert corals == {"2-1": "5000", "1-1.2": "480"}
    assert not (tmp_path / "proc" / "device-tree").exists()


def test_jetson_root_has_the_l4t_release_and_a_cpufreq_skeleton(tmp_path: Path) -> None:
    write_device_root(BOARDS["jetson-nano"], tmp_path)
    assert (tmp_path / "etc/nv_tegra_release").read_text().startswith(
        "# R32 (release), REVISION: 7.1, GCID: ")
    assert "BOARD: t210ref, EABI: aarch64" in (tmp_path / "etc/nv_tegra_release").read_text()
    cpufreq = tmp_path / "sys/devices/system/cpu/cpu3/cpufreq"
    assert (cpufreq / "scaling_governor").read_text() == "schedutil\n"
    assert (cpufreq / "cpuinfo_max_freq").read_text() == "1479000\n"
    assert (tmp_path / "sys/class/thermal/thermal_zone1/type").read_text() == "CPU-therm\n"


def test_up_writes_an_inventory_the_controller_reads(running_lab: RunningLab) -> None:
    hosts = running_lab.inventory.hosts
    assert len(hosts) == 6 and {h.board for h in hosts} == set(BOARDS)
    assert len({h.workdir for h in hosts}) == 6, "hosts share one login home: workdirs must differ"
    assert len({h.address for h in hosts}) == 6
    lab = running_lab.lab
    assert lab_known_hosts(lab.dir) == running_lab.known_hosts
    assert len(running_lab.known_hosts.read_text().splitlines()) == 6
    # Trust in the lab's keys is written into the inventory, relative to it, not guessed from lab.json.
    assert yaml.safe_load(lab.inventory_path.read_text())["defaults"] == {"known_hosts": "known_hosts"}
    assert {h.known_hosts for h in hosts} == {str(running_lab.known_hosts)}
    assert stat.S_IMODE(lab.dir.stat().st_mode) == 0o700
    for host in hosts:
        assert host.tags == ("lab", host.board)
        assert host.port == running_lab.port and host.user
        assert stat.S_IMODE(Path(host.identity_file or "").stat().st_mode) == 0o600
        assert Path(host.python).is_file()
        assert Path(host.env_dict["FARM_DEVICE_ROOT"]).is_dir()
        if os.geteuid() == 0:
            assert host.user == "farmlab"


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_facts_of_every_board_over_ssh(running_lab: RunningLab, board: str) -> None:
    host = running_lab.host(board)
    model, python, runtime, os_name, kernel = EXPECTED[board]
    with SshTransport(host, known_hosts=running_lab.known_hosts) as transport, AgentSession(transport) as session:
        facts = session.facts()
        login = transport.run(["id", "-un"]).stdout.strip()
    assert facts["board"] == model
    assert facts["python"]["version"].startswith(python)
    assert facts["runtime"]["version"] == runtime
    if runtime is None:
        assert facts["runtime"]["name"] is None and "no TFLite runtime found" in facts["runtime"]["error"]
    else:
        assert facts["runtime"]["name"] == "tflite_runtime" and facts["runtime"]["error"] is None
    assert (facts["os"], facts["kernel"], facts["cpu_count"]) == (os_name, kernel, 4)
    assert facts["device_root"] == host.env_dict["FARM_DEVICE_ROOT"]
    assert login == host.user


def test_up_again_starts_nothing_new_and_prints_the_inventory_last(running_lab: RunningLab) -> None:
    lab = running_lab.lab
    before = {s.host.name: s.pid for s in lab.status()}
    result = CliRunner().invoke(app, ["up", "--hosts", "6", "--dir", str(lab.dir), "--port", str(running_lab.port)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == str(lab.inventory_path)
    assert result.output.count("already up") == 6
    after = lab.status()
    assert {s.host.name: s.pid for s in after} == before and all(s.up for s in after)


def test_status_up_down_and_purge_touch_only_their_own_lab(running_lab: RunningLab, tmp_path: Path) -> None:
    other = Lab(tmp_path / "small")
    port = running_lab.free_port(["127.0.0.2", "127.0.0.3"])
    other.up(2, ["rpi4", "jetson-nano"], port=port, say=lambda _: None)
    first, second = other.status()
    assert first.up and second.up
    runner = CliRunner()
    shown = runner.invoke(app, ["status", "--dir", str(other.dir)])
    assert shown.exit_code == 0 and "lab-02-jetson-nano" in shown.output

    other.up(1, ["rpi4"], port=port, say=lambda _: None)  # shrinking stops the extra host
    assert [s.host.name for s in other.status()] == ["lab-01-rpi4"]
    assert not lab_sshd._alive(second.pid or 0)

    down = runner.invoke(app, ["down", "--dir", str(other.dir)])
    assert down.exit_code == 0 and "Stopped 1 host(s): lab-01-rpi4" in down.output
    assert not lab_sshd._alive(first.pid or 0)
    assert runner.invoke(app, ["status", "--dir", str(other.dir)]).exit_code == 1
    assert all(s.up for s in running_lab.lab.status()), "another lab's down stopped our hosts"

    public = Path(other.state()["public_dir"])  # type: ignore[index]
    assert runner.invoke(app, ["down", "--dir", str(other.dir), "--purge"]).exit_code == 0
    assert not other.dir.exists() and not public.exists()


def test_a_port_in_use_fails_fast_and_down_still_finds_what_started(running_lab: RunningLab,
                                                                    tmp_path: Path) -> None:
    clash = Lab(tmp_path / "clash")
    with pytest.raises(LabError, match=r"127.0.0.2:\d+: Bind to port .* choose another port with --port"):
        clash.up(1, ["rpi4"], port=running_lab.port, say=lambda _: None)
    assert [s.host.name for s in clash.status()] == ["lab-01-rpi4"] and not clash.status()[0].up
    clash.down(purge=True)
    assert all(s.up for s in running_lab.lab.status())


def test_missing_sshd_tells_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_sshd, "SSHD", tmp_path / "no-sshd")
    with pytest.raises(LabError, match="apt-get install openssh-server"):
        Lab(tmp_path / "lab").up(1)
    result = CliRunner().invoke(app, ["up", "--hosts", "1", "--dir", str(tmp_path / "lab")])
    assert result.exit_code == 1 and "apt-get install openssh-server" in result.output


def test_missing_pythons_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FARM_LAB_PYTHON37", str(tmp_path / "python3.7"))
    with pytest.raises(LabError, match=r"FARM_LAB_PYTHON37=.*python3.7 is not an executable Python 3.7"):
        pythons.find_interpreter("3.7")
    monkeypatch.setattr(pythons, "_pyenv_roots", list)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LabError, match=r"needs Python 3.99.*pyenv install 3.99.*FARM_LAB_PYTHON399"):
        pythons.find_interpreter("3.99")


def test_lab_pythons_do_not_depend_on_roots_home(running_lab: RunningLab) -> None:
    """The login user cannot enter /root: every interpreter must live (with its base) elsewhere."""
    for python in {h.python for h in running_lab.inventory.hosts}:
        config = (Path(python).parent.parent / "pyvenv.cfg").read_text()
        home = next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("home"))
        if os.geteuid() == 0:
            assert not home.startswith("/root"), config


def test_the_pythons_cache_lock_is_shared_by_builds_and_kept_from_an_exclusive_holder(tmp_path: Path) -> None:
    """Venvs build side by side under the cache's shared lock; an older farm's exclusive one waits for them."""
    import fcntl

    lock = tmp_path / ".lock"
    with pythons.file_lock(lock, shared=True), lock.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a second build beside this one
        fcntl.flock(other, fcntl.LOCK_UN)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with lock.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving


def test_a_venv_being_built_does_not_hold_up_another(running_lab: RunningLab) -> None:
    """While one venv's lock is held (its first build under way elsewhere), another, already built, is ready
    at once; the venv whose lock is held waits for it."""
    import threading

    from farm_lab.account import lab_account

    account = lab_account()
    cache = running_lab.lab.cache or pythons.default_cache_dir(account)
    building, ready = (pythons.PythonEnv(BOARDS[b].python, BOARDS[b].runtime) for b in ("jetson-nano-jp4", "rpi4"))
    found: list[Path] = []
    got: list[Path] = []
    # As a build in another process holds them: the cache's lock shared, its own venv's exclusive.
    with pythons.file_lock(cache / ".lock", shared=True), pythons.file_lock(cache / "venvs" / f".{building.key}.lock"):
        waiting = threading.Thread(target=lambda: found.append(pythons.prepare(building, cache, account)),
                                   daemon=True)
        waiting.start()
        other = threading.Thread(target=lambda: got.append(pythons.prepare(ready, cache, account)), daemon=True)
        other.start()
        other.join(timeout=300)  # a bound for a broken lock, which would wait for ever; ready is milliseconds
        assert not other.is_alive(), "a venv already built waited for another venv's build"
        assert got == [cache / "venvs" / ready.key / "bin" / "python"] and got[0].is_file()
        assert found == [] and waiting.is_alive()  # still waiting: nothing gives the lock up but this test
    waiting.join()
    assert found == [cache / "venvs" / building.key / "bin" / "python"]


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_every_command_has_an_example_in_its_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example: farm lab " + command in result.output


def test_loaded_inventory_matches_the_file(running_lab: RunningLab) -> None:
    again = load_inventory(running_lab.lab.inventory_path)
    assert [h.name for h in again.hosts] == [h.name for h in running_lab.inventory.hosts]
