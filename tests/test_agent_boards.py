"""Board families: each recognised from a device root built here, its power control and default modes,
and the registry that picks a family (a new one included) for the agent and the controller alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import boards, conditions, facts, power
from agent.boards.base import BoardFamily, NoPowerControl, PowerControl
from agent.boards.coral_devboard import CoralDevBoard
from agent.boards.generic_linux import GenericLinux
from agent.boards.governor import GovernorDriver
from agent.boards.jetson import Jetson, JetsonDriver, jetpack_of, parse_l4t
from agent.boards.raspberry_pi import RaspberryPi
from orchestrator.facts_check import contradictions
from orchestrator.inventory import Host, default_power_modes, load_inventory

NANO_RELEASE = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty device root, with a tools folder first on PATH for stand-in executables."""
    device = tmp_path / "root"
    device.mkdir()
    tools = tmp_path / "bin"
    tools.mkdir()
    monkeypatch.setenv("FARM_DEVICE_ROOT", str(device))
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin")
    return device


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def identity(root: Path, model: str | None, *compatible: str) -> None:
    if model is not None:
        write(root, "proc/device-tree/model", model + "\0")
    if compatible:
        write(root, "proc/device-tree/compatible", "".join(c + "\0" for c in compatible))


def cpufreq(root: Path, governor: str, cpus: int = 2) -> None:
    write(root, "sys/devices/system/cpu/online", f"0-{cpus - 1}\n")
    for cpu in range(cpus):
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq/"
        write(root, base + "scaling_governor", governor + "\n")
        write(root, base + "scaling_available_governors", "ondemand powersave performance\n")
        write(root, base + "scaling_max_freq", "1500000\n")


def standin(root: Path, name: str, body: str) -> None:
    tool = Path(os.environ["PATH"].split(os.pathsep)[0]) / name
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)


# --- Jetson ----------------------------------------------------------------------------------------------

def test_jetson_by_its_model_and_by_its_release_file_beside_nvpmodel(root: Path) -> None:
    identity(root, "NVIDIA Jetson Nano Developer Kit", "nvidia,p3450-0000", "nvidia,tegra210")
    assert isinstance(boards.family_for(), Jetson)
    assert isinstance(power.driver_for(None), JetsonDriver)
    (root / "proc/device-tree/model").unlink()
    write(root, "etc/nv_tegra_release", NANO_RELEASE)
    assert facts.detect_board() == "NVIDIA Jetson (R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, " \
                                   "EABI: aarch64)"
    assert isinstance(boards.family_for(), Jetson)
    assert facts.gather()["l4t"] == "32.7.1"
    # A carrier board's own model name says nothing; the release file then counts only beside nvpmodel.
    identity(root, "Acme Carrier Board")
    assert isinstance(boards.family_for(), GenericLinux)
    standin(root, "nvpmodel", "exit 0\n")
    assert isinstance(boards.family_for(), Jetson)


def test_jetson_default_modes_per_module_longest_name_first() -> None:
    assert default_power_modes("jetson-nano") == {"10W": {"nvpmodel": 0}, "5W": {"nvpmodel": 1}}
    assert default_power_modes("jetson-nano-jp4") == {"10W": {"nvpmodel": 0}, "5W": {"nvpmodel": 1}}
    orin = default_power_modes("jetson-agx-orin-64gb")
    assert orin["MAXN"] == {"nvpmodel": 0} and orin["50W"] == {"nvpmodel": 3}
    assert default_power_modes("jetson-orin-nx")["25W"] == {"nvpmodel": 3}
    assert default_power_modes("jetson-tx2") == {}, "a module without a table gets no guessed ids"
    orin["MAXN"]["nvpmodel"] = 9  # callers get copies: the family's table is not theirs to change
    assert default_power_modes("jetson-agx-orin")["MAXN"] == {"nvpmodel": 0}


def test_an_orin_in_an_inventory_gets_its_modes(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("hosts:\n  - {name: orin, address: x, board: jetson-agx-orin}\n")
    (orin,) = load_inventory(path).hosts
    assert set(orin.power_modes) == {"MAXN", "15W", "30W", "50W"}


def test_jetson_release_and_jetpack_parsing() -> None:
    assert parse_l4t("# R35 (release), REVISION: 4.1, GCID: 33958178") == "35.4.1"
    assert parse_l4t("# R32 (release), REVISION: 5, GCID: 1") == "32.5.0"
    assert parse_l4t("Raspberry Pi 4") is None and parse_l4t(None) is None
    assert jetpack_of("32.5.0") == "4.5" and jetpack_of("36.4.3") == "6.2" and jetpack_of("36.9.9") is None


def test_jetson_rails_quirks_and_input_rail(root: Path) -> None:
    identity(root, "NVIDIA Jetson AGX Orin Developer Kit")
    hwmon = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/"
    for channel, label, millivolts, milliamps in ((1, "VDD_GPU_SOC", 5000, 600), (2, "VDD_CPU_CV", 5000, 400),
                                                  (3, "VIN_SYS_5V0", 5000, 300)):
        write(root, hwmon + f"in{channel}_label", label + "\n")
        write(root, hwmon + f"in{channel}_input", f"{millivolts}\n")
        write(root, hwmon + f"curr{channel}_input", f"{milliamps}\n")
    reading = conditions.power()
    assert reading["source"] == "ina3221"
    # No rail of this module feeds the whole board under a name the family knows: the total is the sum.
    assert reading["total_rail"] == "sum" and reading["total_mw"] == 6500
    assert Jetson().is_input_rail("POM_5V_IN") and Jetson().is_input_rail("VDD_IN")
    assert not Jetson().is_input_rail("VDD_GPU_SOC")
    assert "PMIC-Die" in boards.placeholder_zones()


# --- Raspberry Pi ----------------------------------------------------------------------------------------

def test_raspberry_pi_by_model_or_compatible_with_governor_modes(root: Path) -> None:
    identity(root, None, "raspberrypi,5-model-b", "brcm,bcm2712")
    assert isinstance(boards.family_for(), RaspberryPi), "the compatible string alone names a Pi"
    identity(root, "Raspberry Pi 5 Model B Rev 1.0")
    cpufreq(root, "ondemand")
    control = power.driver_for(None)
    assert isinstance(control, GovernorDriver) and control.board == "Raspberry Pi 5 Model B Rev 1.0"
    assert control.current_mode()["governor"] == "ondemand"
    assert default_power_modes("rpi5") == {"performance": {"governor": "performance"},
                                           "powersave": {"governor": "powersave"}}


def test_only_a_pi_asks_its_firmware_whether_it_throttles(root: Path) -> None:
    standin(root, "vcgencmd", 'echo "throttled=0x50005"\n')
    identity(root, "Raspberry Pi 4 Model B Rev 1.4")
    assert boards.firmware_throttling()["now"] == ["under-voltage", "throttled"]
    assert conditions.throttling()["method"] == "vcgencmd"
    identity(root, "Freescale i.MX8MQ Phanbein")  # the same vcgencmd on PATH speaks for no other board
    assert boards.firmware_throttling() is None
    assert conditions.throttling()["method"] == "heuristic"


# --- Coral Dev Board and other Linux hosts ---------------------------------------------------------------

def test_coral_devboard_by_its_soc_names(root: Path) -> None:
    identity(root, "Freescale i.MX8MQ Phanbein", "fsl,imx8mq-phanbein", "fsl,imx8mq")
    assert isinstance(boards.family_for(), CoralDevBoard)
    (root / "proc/device-tree/model").unlink()
    assert isinstance(boards.family_for(), CoralDevBoard), "the compatible string alone names the board"
    assert isinstance(boards.family_for("devboard"), CoralDevBoard)
    assert set(default_power_modes("devboard")) == {"performance", "powersave"}


def test_a_pc_is_generic_linux_with_its_governor_or_no_control(root: Path) -> None:
    assert isinstance(boards.family_for(), GenericLinux) and facts.detect_board() is None
    control = power.driver_for(None)
    assert isinstance(control, NoPowerControl)
    with pytest.raises(power.PowerError, match="neither nvpmodel nor a cpufreq governor"):
        control.check({"name": "5W"})
    cpufreq(root, "powersave")
    assert isinstance(power.driver_for(None), GovernorDriver)
    assert default_power_modes("x86") == {} and default_power_modes(None) == {}


def test_each_family_is_picked_by_its_board_names() -> None:
    picked = {name: type(boards.family_for(name)).__name__ for name in (
        "jetson-nano", "NVIDIA Jetson Nano Developer Kit", "rpi4", "Raspberry Pi 3 Model B Plus Rev 1.3",
        "devboard", "Freescale i.MX8MQ Phanbein")}
    assert picked == {"jetson-nano": "Jetson", "NVIDIA Jetson Nano Developer Kit": "Jetson", "rpi4": "RaspberryPi",
                      "Raspberry Pi 3 Model B Plus Rev 1.3": "RaspberryPi", "devboard": "CoralDevBoard",
                      "Freescale i.MX8MQ Phanbein": "CoralDevBoard"}


def test_facts_check_compares_families_not_words() -> None:
    nano = Host("nano", board="jetson-nano")
    assert contradictions(nano, {"board": "NVIDIA Jetson Nano Developer Kit"}) == []
    assert contradictions(nano, {"board": "Raspberry Pi 4 Model B Rev 1.4"}) == [
        "board declared jetson-nano, host reports Raspberry Pi 4 Model B Rev 1.4"]
    assert contradictions(Host("pi", board="rpi4"), {"board": "Freescale i.MX8MQ Phanbein"})
    assert contradictions(Host("pc", board="x86"), {"board": "Raspberry Pi 4"}) == []  # no family declared


# --- a new family --------------------------------------------------------------------------------------------

class PinControl(PowerControl):
    """A board whose power mode is one file: enough to show the registry hands out a new family's control."""

    name = "pin"

    def _path(self) -> str:
        return os.path.join(os.environ["FARM_DEVICE_ROOT"], "sys/power-pin")

    def current_mode(self):
        with open(self._path()) as handle:
            return {"driver": self.name, "name": handle.read().strip()}

    def check(self, spec):
        if spec.get("name") not in ("low", "high"):
            raise power.PowerError("no such pin mode")

    def save(self, state_dir):
        return self.current_mode()

    def set_mode(self, spec):
        with open(self._path(), "w") as handle:
            handle.write(spec["name"])

    def verify(self, spec):
        now = self.current_mode()
        now["mismatches"] = [] if now["name"] == spec["name"] else ["pin is " + now["name"]]
        now["ok"] = not now["mismatches"]
        return now

    def restore(self, saved):
        self.set_mode(saved)


class BeagleBoard(BoardFamily):
    name = "beagleboard"
    name_hints = ("beagle",)
    inventory_prefixes = ("beagle",)
    power_controls = (PinControl,)

    def present(self):
        return False

    def power_control(self, board=None):
        return PinControl()

    def default_power_modes(self, inventory_board):
        return {"low": {}, "high": {}}


def test_a_new_family_is_one_class_in_the_registry(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    identity(root, "TI AM335x BeagleBone Black")
    write(root, "sys/power-pin", "high")
    assert isinstance(boards.family_for(), GenericLinux)
    monkeypatch.setattr(boards, "FAMILIES", [BeagleBoard(), *boards.FAMILIES])
    assert isinstance(boards.family_for(), BeagleBoard)
    assert default_power_modes("beaglebone-black") == {"low": {}, "high": {}}  # what the controller reads
    monkeypatch.setenv("FARM_AGENT_DIR", str(tmp_path / "agent"))
    with power.applied({"name": "low", "settle_seconds": 0}, driver=power.driver_for(None)) as info:
        assert info["measured"]["ok"] and (root / "sys/power-pin").read_text() == "low"
    assert info["restore"] == {"ok": True} and (root / "sys/power-pin").read_text() == "high"
    # A state file left by a killed agent names the control; the registry finds the new family's.
    assert isinstance(boards.control_named("pin"), PinControl)
    assert isinstance(boards.control_named("unheard-of"), NoPowerControl)


def test_a_family_that_leaves_out_part_of_the_interface_cannot_be_made() -> None:
    class Halfway(BoardFamily):
        def present(self):
            return True

    with pytest.raises(TypeError, match="power_control"):
        Halfway()


def test_the_families_say_which_mode_a_board_reports_and_how_a_measured_mode_reads() -> None:
    # What the controller used to spell out per board (nvpmodel ids, governors) it now asks the families.
    nano_at_5w = {"driver": "nvpmodel", "name": "5W", "nvpmodel": 1, "governor": "schedutil"}
    assert boards.measured_label(nano_at_5w) == "5W (nvpmodel 1)"
    assert boards.measured_label({"driver": "governor", "name": "powersave", "governor": "powersave"}) == "powersave"
    assert boards.measured_label({"driver": "none", "name": None}) is None
    assert boards.mode_matches({"nvpmodel": 1}, nano_at_5w)
    assert not boards.mode_matches({"nvpmodel": 0}, nano_at_5w)
    # An nvpmodel mode is told by its id, never by the governor a Jetson also reports.
    assert not boards.mode_matches({"nvpmodel": 0, "governor": "schedutil"}, nano_at_5w)
    assert boards.mode_matches({"governor": "performance"}, {"governor": "performance"})
    assert not boards.mode_matches({"settle_seconds": 2}, {"governor": "performance"})
