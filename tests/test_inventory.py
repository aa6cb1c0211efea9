from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.inventory import load_inventory


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    return path


def test_default_inventory_is_this_machine_through_the_local_transport() -> None:
    inventory = load_inventory(None)
    assert [h.name for h in inventory.hosts] == ["local"]
    assert inventory.hosts[0].transport == "local"
    assert inventory.hosts[0].python == sys.executable


def test_full_host_entry_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """
defaults:
  user: farm
  identity_file: ~/.ssh/lab
hosts:
  - name: nano-1
    address: 10.0.0.5
    port: 2222
    board: jetson-nano
    python: /usr/bin/python3
    tags: [lab-a, usb3]
  - name: pi-1
    address: pi1
    user: pi
""")
    nano, pi = load_inventory(path).hosts
    assert (nano.user, nano.port, nano.identity_file, nano.tags) == ("farm", 2222, "~/.ssh/lab", ("lab-a", "usb3"))
    assert (pi.user, pi.port, pi.python) == ("pi", 22, "python3")
    assert nano.source.endswith("inv.yaml:6")


@pytest.mark.parametrize("text, line, words", [
    ("hosts:\n  - name: a\n    address: [unclosed\n", 4, "malformed YAML"),
    ("hosts:\n  - name: a\n    address: x\n    colour: red\n", 4, "field 'colour': unknown field"),
    ("hosts:\n  - name: a\n    address: x\n  - name: a\n    address: y\n", 4, "duplicate host name 'a' (first defined at line 2)"),
    ("hosts:\n  - name: a\n    address: x\n    port: 99999\n", 4, "port 99999 is out of range"),
    ("hosts:\n  - name: a\n    address: x\n    port: twenty\n", 4, "field 'port'"),
    ("hosts:\n  - name: a\n    address: x\n    password: hunter2\n", 4, "passwords do not belong"),
    ("hosts:\n  - address: x\n", 2, "a host needs a name"),
    ("hosts:\n  - name: 'a b;rm -rf'\n    address: x\n", 2, "is not a valid host name"),
    ("hosts:\n  - name: a\n", 2, "an ssh host needs an address"),
    ("hosts: []\n", 1, "non-empty list"),
    ("servers:\n  - name: a\n", 1, "unknown top-level key"),
    ("hosts:\n  - name: a\n    address: x\n    tags: lab\n", 4, "field 'tags'"),
])
def test_bad_inventories_name_file_line_and_field(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message


def test_missing_inventory_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_inventory(tmp_path / "nope.yaml")


def test_select_by_name_and_tag(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  - {name: a, address: x, tags: [t1]}\n  - {name: b, address: y, tags: [t2]}\n")
    inventory = load_inventory(path)
    assert [h.name for h in inventory.select(tags=["t2"])] == ["b"]
    assert [h.name for h in inventory.select(names=["a"])] == ["a"]
    with pytest.raises(InputError, match="no host named 'c'"):
        inventory.select(names=["c"])


def test_power_modes_default_per_board_and_can_be_named(tmp_path: Path) -> None:
    path = write(tmp_path, """
hosts:
  - {name: nano, address: x, board: jetson-nano}
  - name: nano-custom
    address: y
    board: jetson-nano
    power_modes: {MAXN: {nvpmodel: 0, jetson_clocks: true}}
    usb_ports: {usb3-left: {port: 2-1, speed: 5000}}
  - {name: pi, address: z, board: rpi4}
  - {name: pc, address: w}
""")
    nano, custom, pi, pc = load_inventory(path).hosts
    assert nano.power_modes == {"10W": {"nvpmodel": 0}, "5W": {"nvpmodel": 1}}
    assert custom.power_modes == {"MAXN": {"nvpmodel": 0, "jetson_clocks": True}}
    assert custom.usb_ports == {"usb3-left": {"port": "2-1", "speed": 5000}}
    assert set(pi.power_modes) == {"performance", "powersave"}
    assert pc.power_modes == {}


@pytest.mark.parametrize("text, words", [
    ("power_modes: {5W: {nvpmodel: one}}", "field 'power_modes.5W.nvpmodel': got 'one'"),
    ("power_modes: {5W: {volts: 5}}", "field 'power_modes.5W.volts': unknown setting"),
    ("usb_ports: {left: {speed: 480}}", "field 'usb_ports.left.port': a USB port needs"),
])
def test_bad_power_modes_and_ports(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, f"hosts:\n  - name: a\n    address: x\n    {text}\n")
    with pytest.raises(InputError, match=words.replace(".", r"\.").replace("(", r"\(")):
        load_inventory(path)


def test_a_host_with_usb_ports_keeps_its_name_and_port_zero_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts:\n  - name: pi-1\n    address: x\n    usb_ports: {usb3-left: {port: 2-1}}\n")
    assert [h.name for h in load_inventory(path).hosts] == ["pi-1"]
    with pytest.raises(InputError, match="port 0 is out of range"):
        load_inventory(write(tmp_path, "hosts:\n  - name: a\n    address: x\n    port: 0\n"))
