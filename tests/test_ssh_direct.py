"""A host without a gateway resolves, through the shared config, to what fabric's own Connection resolves."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fabric import Config, Connection

from orchestrator.transport import ssh_direct

SSH_CONFIG = """
Host alias
    HostName 10.1.2.3
    Port 2201
    User aliceuser
    IdentityFile ~/.ssh/alias_key

Host *.lab
    User labuser
    IdentityFile ~/.ssh/lab_key

Host jumped
    HostName 10.9.9.9
    ProxyJump alias

Host commanded
    ProxyCommand nc %h %p

Host *
    IdentityFile ~/.ssh/every_key
"""


@pytest.fixture
def ssh_home(isolated_home: Path) -> Path:
    folder = isolated_home / ".ssh"
    folder.mkdir(mode=0o700)
    (folder / "config").write_text(SSH_CONFIG)
    return isolated_home


def fabric_view(address: str, user: str | None, port: int | None) -> tuple:
    connection = Connection(address, user=user, port=port, config=Config(), connect_timeout=7)
    return (connection.host, connection.port, connection.user, connection.connect_kwargs.get("key_filename"),
            dict(connection.ssh_config))


def direct_view(address: str, user: str | None, port: int | None) -> tuple | None:
    link = ssh_direct.resolve(address, user, port, 7)
    if link is None:
        return None
    return link.host, link.port, link.user, link.connect_kwargs.get("key_filename"), dict(link.ssh_config)


@pytest.mark.parametrize(("address", "user", "port"), [
    ("alias", None, None), ("alias", "bob", 2222), ("box.lab", None, None), ("box.lab", "carol", None),
    ("127.0.0.9", None, None), ("127.0.0.9", "dave", 2299), ("::1", None, None)])
def test_direct_resolution_matches_fabric(ssh_home: Path, address: str, user: str | None, port: int | None) -> None:
    assert direct_view(address, user, port) == fabric_view(address, user, port)


@pytest.mark.parametrize("address", ["jumped", "commanded", "erin@alias", "alias:2200"])
def test_gateways_and_shorthand_are_left_to_fabric(ssh_home: Path, address: str) -> None:
    assert ssh_direct.resolve(address, None, None, 7) is None


def test_an_edited_ssh_config_is_read_again(ssh_home: Path) -> None:
    assert direct_view("alias", None, None)[:3] == ("10.1.2.3", 2201, "aliceuser")
    config = ssh_home / ".ssh" / "config"
    before = config.stat().st_mtime_ns
    config.write_text(SSH_CONFIG.replace("Port 2201", "Port 2202"))
    if config.stat().st_mtime_ns == before:  # a coarse clock: make the change visible the way an editor would
        os.utime(config, ns=(time.time_ns(), before + 1_000_000))
    assert direct_view("alias", None, None)[:3] == ("10.1.2.3", 2202, "aliceuser")
    assert direct_view("alias", None, None) == fabric_view("alias", None, None)
