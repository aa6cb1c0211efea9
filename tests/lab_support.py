"""A real simulated lab for the SSH tests: six sshd hosts on loopback, one per board.

Loaded with ``pytest_plugins`` by the test modules that need it (which import
nothing from here at run time, so pytest can load it as a plugin), and the whole
session shares one lab (starting it takes about a second once the Pythons are
cached in /var/cache/farm-lab; the very first run builds them, a minute or two).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from farm_lab import sshd as lab_sshd
from farm_lab.lab import Lab
from orchestrator.inventory import Host, Inventory, load_inventory
from tests.conftest import missing_service

LAB_HOSTS = 6


@dataclass(frozen=True)
class RunningLab:
    lab: Lab
    inventory: Inventory
    known_hosts: Path
    port: int

    def host(self, board: str) -> Host:
        return next(h for h in self.inventory.hosts if h.board == board)

    @staticmethod
    def free_port(addresses: list[str]) -> int:
        return lab_sshd.free_port(addresses)


@pytest.fixture(scope="session")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    if not lab_sshd.SSHD.is_file():
        missing_service(f"OpenSSH server is not installed ({lab_sshd.SSHD}): apt-get install openssh-server")
    directory = tmp_path_factory.mktemp("lab")
    port = lab_sshd.free_port([f"127.0.0.{n}" for n in range(2, 2 + LAB_HOSTS)])
    lab = Lab(directory)
    try:
        inventory = lab.up(LAB_HOSTS, port=port, say=print)
        yield RunningLab(lab, load_inventory(inventory), lab.known_hosts, port)
    finally:
        lab.down(purge=True)
