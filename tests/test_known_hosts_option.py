"""Which known_hosts a host's keys are checked against: the inventory says so, a --known-hosts wins.

Nothing is guessed from files lying beside an inventory (a lab's lab.json and known_hosts included).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from orchestrator.errors import InputError
from orchestrator.inventory import load_inventory
from orchestrator.replan import resume_options, stored_transport_options
from orchestrator.transport.ssh import SshTransport

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_known_hosts_is_relative_to_the_inventory_not_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = write(tmp_path / "farm" / "inv.yaml",
                      "defaults:\n  known_hosts: keys/known_hosts\nhosts:\n  - name: a\n    address: h\n"
                      "  - name: b\n    address: h\n    known_hosts: /etc/farm/known_hosts\n"
                      "  - name: c\n    address: h\n    known_hosts: ~/kh\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a, b, c = load_inventory(Path("..") / "farm" / "inv.yaml").hosts
    assert a.known_hosts == str(tmp_path / "farm" / "keys" / "known_hosts")
    assert b.known_hosts == "/etc/farm/known_hosts"  # a host's own entry wins over the defaults
    assert c.known_hosts == str(Path.home() / "kh")
    assert SshTransport(a).known_hosts == tmp_path / "farm" / "keys" / "known_hosts"
    assert SshTransport(a, known_hosts=tmp_path / "given").known_hosts == tmp_path / "given"
    assert inventory.is_file()


def test_a_lab_directory_beside_an_inventory_that_names_no_known_hosts_is_not_trusted(tmp_path: Path) -> None:
    write(tmp_path / "lab.json", json.dumps({"version": 1}))
    write(tmp_path / "known_hosts", "127.0.0.2 ssh-ed25519 AAAA\n")
    [host] = load_inventory(write(tmp_path / "inventory.yaml", "hosts:\n  - name: a\n    address: h\n")).hosts
    assert host.known_hosts is None
    assert SshTransport(host).known_hosts == Path.home() / ".ssh" / "known_hosts"


@pytest.mark.parametrize("value, problem", [("3", "got 3"), ("[a, b]", "got ['a', 'b']"),
                                            ('"a\\nb"', "control character")])
def test_a_bad_known_hosts_names_its_line(tmp_path: Path, value: str, problem: str) -> None:
    path = write(tmp_path / "bad.yaml", f"hosts:\n  - name: a\n    address: h\n    known_hosts: {value}\n")
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    text = str(caught.value)
    assert "bad.yaml:4" in text and "known_hosts" in text and problem in text, text


def test_a_resume_keeps_the_runs_options_unless_given_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stored = json.loads(json.dumps(stored_transport_options(
        {"accept_new_host_keys": True, "known_hosts": Path("keys"), "connect_timeout": 3.0, "hook": object()})))
    assert stored == {"accept_new_host_keys": True, "known_hosts": str(tmp_path / "keys"), "connect_timeout": 3.0}
    # Flags left at their defaults on the resume's command line do not undo what the run started with.
    assert resume_options(stored, {"accept_new_host_keys": False}) == stored
    given = resume_options(stored, {"accept_new_host_keys": False, "known_hosts": Path("/other")})
    assert given["known_hosts"] == Path("/other") and given["accept_new_host_keys"] is True


def farm_check(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "inventory", "check", "-i", str(inventory),
                           "--db", f"sqlite:///{inventory.parent / 'check.db'}", *extra], capture_output=True,
                          text=True, timeout=180, check=False, env={**os.environ, "COLUMNS": "250"})


def test_over_ssh_the_inventorys_known_hosts_is_used_and_the_command_line_wins(
        running_lab: RunningLab, tmp_path: Path) -> None:
    [entry] = [e for e in yaml.safe_load(running_lab.lab.inventory_path.read_text())["hosts"]
               if e["board"] == "rpi4"]
    # A lab's directory look-alike: lab.json and the lab's keys beside an inventory that names none.
    shutil.copy(running_lab.lab.state_path, tmp_path / "lab.json")
    shutil.copy(running_lab.known_hosts, tmp_path / "known_hosts")
    write(tmp_path / "empty_known_hosts", "")
    bare = write(tmp_path / "bare.yaml", yaml.safe_dump({"hosts": [entry]}))
    refused = farm_check(bare)
    assert refused.returncode == 4 and "is unknown" in " ".join(refused.stdout.split()), refused.stdout

    named = write(tmp_path / "named.yaml", yaml.safe_dump({"defaults": {"known_hosts": "known_hosts"},
                                                           "hosts": [entry]}))
    assert "1 of 1 host(s) reachable" in farm_check(named).stdout
    overridden = farm_check(named, "--known-hosts", str(tmp_path / "empty_known_hosts"))
    assert overridden.returncode == 4 and "is unknown" in " ".join(overridden.stdout.split())
    wrong = write(tmp_path / "wrong.yaml", yaml.safe_dump({"defaults": {"known_hosts": "empty_known_hosts"},
                                                           "hosts": [entry]}))
    assert "1 of 1 host(s) reachable" in farm_check(wrong, "--known-hosts", str(running_lab.known_hosts)).stdout


def test_an_ansible_inventory_names_it_with_farm_known_hosts_and_convert_keeps_it(tmp_path: Path) -> None:
    from orchestrator.inventory_writer import farm_yaml

    ini = write(tmp_path / "ansible" / "hosts.ini",
                "[lab]\nh1 ansible_host=10.0.0.1\nh2 ansible_host=10.0.0.2\n\n[lab:vars]\nfarm_known_hosts=keys/kh\n")
    inventory = load_inventory(ini)
    assert {h.known_hosts for h in inventory.hosts} == {str(tmp_path / "ansible" / "keys" / "kh")}
    converted = yaml.safe_load(farm_yaml(inventory))
    assert converted["defaults"]["known_hosts"] == str(tmp_path / "ansible" / "keys" / "kh")
    assert all("known_hosts" not in host for host in converted["hosts"])
