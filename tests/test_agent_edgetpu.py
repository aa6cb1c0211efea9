"""Edge TPU discovery on simulated device roots: ports, speeds, usb:N, and why a request cannot be met."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import edgetpu
from farm_lab import hardware

PORTS = {"usb3-left": {"port": "2-1", "speed": 5000}, "usb2-hub": {"port": "1-1.2", "speed": 480}}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    board = tmp_path / "board"
    board.mkdir()
    monkeypatch.setenv("FARM_DEVICE_ROOT", str(board))
    return board


@pytest.fixture
def two_tpus(root: Path) -> Path:
    hardware.install_usb_accelerators(root, [("2-1", 5000), ("1-1.2", 480)])
    hardware.install_libedgetpu(root, package="libedgetpu1-max", version="16.0")
    return root


def plain_device(root: Path, port: str, ids: tuple[str, str], speed: int, **extra: str) -> None:
    """A device as plain folders, the way a copied sysfs (or the lab's boards.py) lays it out."""
    folder = root / "sys/bus/usb/devices" / port
    folder.mkdir(parents=True, exist_ok=True)
    bus, _, chain = port.partition("-")
    attributes = {"idVendor": ids[0], "idProduct": ids[1], "speed": str(speed), "busnum": bus, "devnum": "7",
                  "devpath": chain, **extra}
    for name, value in attributes.items():
        (folder / name).write_text(value + "\n")


def test_two_usb_accelerators_with_their_ports_speeds_and_indexes(two_tpus: Path) -> None:
    found = edgetpu.discover()
    by_port = {d["port"]: d for d in found["devices"]}
    assert set(by_port) == {"2-1", "1-1.2"}  # root hubs (usbN), the hub 1-1 and interfaces are not TPUs
    assert by_port["2-1"]["speed"] == 5000 and by_port["2-1"]["speed_name"] == "USB 3.0 SuperSpeed"
    assert by_port["1-1.2"]["speed"] == 480 and by_port["1-1.2"]["bus"] == 1
    # libusb lists devices in reverse sysfs-path order: .../usb2/2-1 before .../usb1/1-1/1-1.2.
    assert by_port["2-1"]["device"] == "usb:0" and by_port["1-1.2"]["device"] == "usb:1"
    assert found["order"] == "assumed" and found["warnings"] == []
    assert found["library"] == {"name": "libedgetpu.so.1", "path": "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1",
                                "target": "libedgetpu.so.1.0", "package": "libedgetpu1-max", "version": "16.0",
                                # An empty file stands in for the library here: it has no edgetpu_version().
                                "runtime_version": None, "simulated": False, "error": None}


def test_plain_folders_give_the_same_indexes_as_sysfs_links(root: Path) -> None:
    plain_device(root, "1-1.2", ("18d1", "9302"), 480)
    plain_device(root, "2-1", ("18d1", "9302"), 5000)
    devices = {d["port"]: d["device"] for d in edgetpu.discover()["devices"]}
    assert devices == {"2-1": "usb:0", "1-1.2": "usb:1"}


def test_tpus_waiting_for_firmware_come_first_and_are_flagged(root: Path) -> None:
    hardware.install_usb_accelerators(root, [("2-1", 5000), ("1-1.2", 480, "dfu")])
    found = edgetpu.discover()
    assert [(d["port"], d["state"], d["device"]) for d in found["devices"]] == [
        ("1-1.2", "dfu", "usb:0"), ("2-1", "app", "usb:1")]
    assert found["devices"][0]["vendor_id"] == "1a6e" and found["devices"][0]["product_id"] == "089a"
    assert "re-enumerates" in found["warnings"][0]


def test_resolve_by_inventory_name_port_path_or_device(two_tpus: Path) -> None:
    chosen = edgetpu.resolve({"port": "usb3-left"}, ports=PORTS)
    assert chosen["device"] == "usb:0" and chosen["port"] == "2-1"
    assert chosen["name"] == "usb3-left" and chosen["expect_speed"] == 5000
    assert edgetpu.resolve({"port": "1-1.2"})["device"] == "usb:1"
    assert edgetpu.resolve({"device": "usb:1"})["port"] == "1-1.2"
    assert edgetpu.resolve(None)["device"] == "usb:0"  # no request: the first, named explicitly


def test_a_tpu_at_the_wrong_speed_is_refused_with_both_speeds(two_tpus: Path) -> None:
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({"port": "1-1.2", "expect_speed": 5000})
    assert caught.value.reason == "wrong-speed"
    assert "480 Mb/s (USB 2.0 High Speed)" in caught.value.message
    assert "5000 Mb/s (USB 3.0 SuperSpeed)" in caught.value.message
    with pytest.raises(edgetpu.EdgeTpuError, match="480 Mb/s"):
        edgetpu.resolve({"port": "usb2-hub", "expect_speed": 5000}, ports=PORTS)


def test_missing_port_and_a_port_holding_something_else(two_tpus: Path) -> None:
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({"port": "3-1"})
    assert caught.value.reason == "port-missing"
    assert "usb:0 on port 2-1 at 5000 Mb/s" in caught.value.message
    plain_device(two_tpus, "2-2", ("0781", "5583"), 5000, manufacturer="SanDisk", product="Ultra Fit")
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({"port": "2-2"})
    assert caught.value.reason == "not-edgetpu"
    assert "0781:5583 (SanDisk Ultra Fit)" in caught.value.message
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({"device": "usb:5"})
    assert caught.value.reason == "device-missing"
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({"device": "usb:0", "port": "1-1.2"})
    assert caught.value.reason == "bad-request"


def test_missing_libedgetpu_is_the_reason_even_with_tpus_plugged_in(root: Path) -> None:
    hardware.install_usb_accelerators(root, [("2-1", 5000)])
    found = edgetpu.discover()
    assert found["library"]["path"] is None and "apt-get install libedgetpu1-std" in found["library"]["error"]
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({"port": "2-1"}, found=found)
    assert caught.value.reason == "library-missing" and "libedgetpu.so.1 is not installed" in caught.value.message


def test_no_tpu_at_all(root: Path) -> None:
    hardware.install_libedgetpu(root)
    with pytest.raises(edgetpu.EdgeTpuError) as caught:
        edgetpu.resolve({})
    assert caught.value.reason == "no-edgetpu"


def test_dev_board_pcie_tpu(root: Path) -> None:
    hardware.install_devboard(root)
    hardware.install_libedgetpu(root, multiarch="aarch64-linux-gnu")
    found = edgetpu.discover()
    assert found["devices"] == [{"type": "pci", "path": "/dev/apex_0", "port": None, "speed": None,
                                 "device": "pci:0"}]
    assert edgetpu.resolve({"device": "pci:0"})["path"] == "/dev/apex_0"


def test_pycoral_absence_is_not_an_error(root: Path) -> None:
    info = edgetpu.pycoral()
    if info["present"]:
        pytest.skip("pycoral is installed here")
    assert info["version"] is None and "pycoral" in info["error"]
    assert edgetpu.discover()["pycoral"]["present"] is False
