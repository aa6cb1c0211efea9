"""The lab in network namespaces: hosts reached over veth pairs, links cut and restored, sshd and agents killed."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm_lab import sshd as lab_sshd
from farm_lab.netns import NetnsLab, ip
from orchestrator.agent_client import AgentSession
from orchestrator.errors import TransportError
from orchestrator.inventory import Inventory, load_inventory
from orchestrator.transport.ssh import SshTransport
from tests.conftest import missing_service

BOARDS = ["jetson-nano", "rpi4"]


@pytest.fixture(scope="module")
def netns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetnsLab, Inventory]]:
    if not lab_sshd.SSHD.is_file():
        missing_service(f"OpenSSH server is not installed ({lab_sshd.SSHD})")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing_service("the namespaced lab needs root and iproute2 (ip netns)")
    lab = NetnsLab(tmp_path_factory.mktemp("netns-lab"))
    try:
        inventory = load_inventory(lab.up(len(BOARDS), boards=BOARDS, port=22, say=print))
        yield lab, inventory
    finally:
        lab.down(purge=True)


def transport(lab: NetnsLab, inventory: Inventory, index: int = 0, timeout: float = 3.0) -> SshTransport:
    return SshTransport(inventory.hosts[index], known_hosts=lab.known_hosts, connect_timeout=timeout)


def test_hosts_live_in_their_own_namespaces_behind_veth_pairs(netns_lab: tuple[NetnsLab, Inventory]) -> None:
    lab, inventory = netns_lab
    assert len(lab.namespaces()) == len(BOARDS)
    for host in inventory.hosts:
        link = lab.link(host.name)
        assert host.address == link.inside_address and host.address.startswith("10.")
        # sshd listens inside the namespace only: its address is not one of this machine's.
        assert link.inside_address not in ip("-4", "addr", "show").stdout
        assert lab.sshd(host.name).pid() in lab.pids_in(link.netns)
    with transport(lab, inventory) as ssh:
        done = ssh.run(["sh", "-c", "echo $SSH_CONNECTION"])
        assert done.ok and done.stdout.split()[0] == lab.link(inventory.hosts[0].name).outside_address


def test_a_cut_link_loses_packets_until_restored(netns_lab: tuple[NetnsLab, Inventory]) -> None:
    lab, inventory = netns_lab
    name = inventory.hosts[0].name
    with transport(lab, inventory) as ssh:
        assert ssh.run(["true"]).ok
        lab.cut_link(name)
        try:
            assert not lab.link_is_up(name)
            with pytest.raises(TransportError):
                ssh.run(["sleep", "0"], timeout=3)
            with pytest.raises(TransportError), transport(lab, inventory, timeout=2) as fresh:
                fresh.run(["true"])
        finally:
            lab.restore_link(name)
        assert lab.link_is_up(name)
        # The old connection may be gone or may recover; a new one works again either way.
        with transport(lab, inventory) as fresh:
            assert fresh.run(["true"]).ok


def test_sshd_killed_and_restarted(netns_lab: tuple[NetnsLab, Inventory]) -> None:
    lab, inventory = netns_lab
    name = inventory.hosts[1].name
    with transport(lab, inventory, 1) as ssh:
        assert ssh.run(["true"]).ok
        # The listener alone: the open session survives, new connections are refused.
        assert lab.kill_sshd(name, sessions=False)
        assert ssh.run(["true"]).ok
        with pytest.raises(TransportError), transport(lab, inventory, 1) as fresh:
            fresh.run(["true"])
        lab.start_sshd(name)
        with transport(lab, inventory, 1) as fresh:
            assert fresh.run(["true"]).ok
        # With its sessions: the open connection is lost too.
        assert lab.kill_sshd(name)
        with pytest.raises(TransportError):
            ssh.run(["true"], timeout=5)
        lab.start_sshd(name)
    with transport(lab, inventory, 1) as fresh:
        assert fresh.run(["true"]).ok


def test_agents_of_one_host_are_sigkilled(netns_lab: tuple[NetnsLab, Inventory]) -> None:
    lab, inventory = netns_lab
    first, second = inventory.hosts
    with transport(lab, inventory, 0) as one, transport(lab, inventory, 1) as two:
        session, other = AgentSession(one).open(), AgentSession(two).open()
        try:
            assert lab.agent_pids(first.name) and lab.agent_pids(second.name)
            killed = lab.kill_agents(first.name)
            assert killed
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in killed):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            with pytest.raises(TransportError):
                session.request({"op": "ping"}, timeout=10)
            assert other.request({"op": "ping"}, timeout=10)["ok"]  # the other host's agent is untouched
        finally:
            session.close()
            other.close()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def test_down_removes_namespaces_and_links(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None or not lab_sshd.SSHD.is_file():
        missing_service("the namespaced lab needs root, iproute2 and OpenSSH server")
    lab = NetnsLab(tmp_path / "lab")
    lab.up(1, boards=["rpi4"], port=22, say=lambda _: None)
    netns = lab.namespaces()
    outside = lab.link(lab.hosts()[0].name).outside
    assert len(netns) == 1 and outside in ip("link", "show").stdout
    lab.down(purge=True)
    assert netns[0] not in ip("netns", "list").stdout
    assert outside not in ip("link", "show").stdout
