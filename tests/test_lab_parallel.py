"""The lab starts its hosts several at once: same files and lines as one after another, a failure named."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from farm_lab import sshd as lab_sshd
from farm_lab.account import LabError
from farm_lab.lab import Lab, plan_hosts
from farm_lab.parallel import each_in_order
from orchestrator.inventory import load_inventory
from orchestrator.transport.ssh import SshTransport
from tests.conftest import missing_service

HOSTS = 12


@pytest.fixture(autouse=True)
def _openssh() -> None:
    if not lab_sshd.SSHD.is_file():
        missing_service(f"OpenSSH server is not installed ({lab_sshd.SSHD}): apt-get install openssh-server")


def _addresses(count: int) -> list[str]:
    return [h.address for h in plan_hosts(count, None, 22)]


def test_outcomes_come_in_order_though_a_later_item_finishes_first() -> None:
    last_done = threading.Event()

    def work(item: int) -> int:
        if item == 0:
            assert last_done.wait(30), "item 3 never ran beside item 0"
        if item == 3:
            last_done.set()
        return item * 10

    outcomes = list(each_in_order(work, [0, 1, 2, 3], workers=4))
    assert [(o.item, o.value, o.error) for o in outcomes] == [(0, 0, None), (1, 10, None), (2, 20, None),
                                                             (3, 30, None)]


def test_after_a_failure_no_further_item_starts() -> None:
    ran: list[int] = []

    def work(item: int) -> int:
        ran.append(item)
        if item == 2:
            raise OSError("no room")
        return item

    outcomes = list(each_in_order(work, list(range(6)), workers=1))
    assert ran == [0, 1, 2]
    assert [o.item for o in outcomes] == [0, 1, 2]
    assert isinstance(outcomes[2].error, OSError) and outcomes[2].value is None


def test_a_lab_of_twelve_answers_each_with_its_own_key(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    port = lab_sshd.free_port(_addresses(HOSTS))
    lines: list[str] = []
    try:
        inventory = load_inventory(lab.up(HOSTS, port=port, say=lines.append))
        planned = [h.name for h in plan_hosts(HOSTS, None, port)]
        assert [h.name for h in inventory.hosts] == planned
        assert [line.split(":")[0] for line in lines] == planned, "lines come in host order"

        known = [line.split() for line in lab.known_hosts.read_text().splitlines()]
        assert [entry[0] for entry in known] == [f"[{a}]:{port}" for a in _addresses(HOSTS)]
        assert len({entry[2] for entry in known}) == HOSTS, "every host has its own host key"
        for host, entry in zip(inventory.hosts, known, strict=True):
            public = (lab.dir / "hosts" / host.name / "ssh_host_ed25519_key.pub").read_text().split()
            assert entry[1:3] == public[:2]
            # Strict host key checking against the lab's known_hosts: a host serving another's key fails here.
            with SshTransport(host, known_hosts=lab.known_hosts) as transport:
                # The login user reads its host's device root (a copy made by root, given to that user).
                assert transport.run(["sh", "-c", 'cat "$FARM_DEVICE_ROOT/etc/os-release"']).stdout.startswith(
                    ("NAME=", "PRETTY_NAME="))

        # Hosts 1 and 7 are both Jetson Nanos: their device roots are copies, not one tree shared.
        first, seventh = (Path(inventory.hosts[i].env_dict["FARM_DEVICE_ROOT"]) for i in (0, 6))
        governor = "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
        (first / governor).write_text("powersave\n")
        assert (seventh / governor).read_text() == "schedutil\n"
    finally:
        lab.down(purge=True)


def test_a_host_that_cannot_start_is_named_and_down_stops_the_others(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    addresses = _addresses(HOSTS)
    port = lab_sshd.free_port(addresses)
    blocked = plan_hosts(HOSTS, None, port)[5]
    lines: list[str] = []
    with socket.socket() as squatter:
        squatter.bind((blocked.address, port))
        squatter.listen()
        try:
            with pytest.raises(LabError) as failure:
                lab.up(HOSTS, port=port, say=lines.append)
            message = str(failure.value)
            assert message.startswith(f"sshd for {blocked.name} could not listen on {blocked.address}:{port}")
            assert "choose another port with --port" in message
            assert blocked.name not in " ".join(lines)
            names = [line.split(":")[0] for line in lines]
            assert names == sorted(names), "lines come in host order"
            # Nothing describes a lab that did not come up...
            assert not lab.inventory_path.exists() and not lab.known_hosts.exists()
            # ...but the state lists every host, so down finds each one that started.
            status = {s.host.name: s.up for s in lab.status()}
            assert len(status) == HOSTS and not status[blocked.name]
            assert {name for name, up in status.items() if up} == set(names)
        finally:
            stopped = lab.down(purge=True)
    assert sorted(stopped) == sorted(names)
