"""The lab engineer's own SSH setup: ~/.ssh/config's UserKnownHostsFile and the system's known_hosts are
honoured, and `--log-file` traces an SSH connection (paramiko's log included) against a real sshd."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from orchestrator.errors import TransportError
from orchestrator.transport.ssh import SshTransport

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]


def ssh_config(home: Path, text: str) -> None:
    folder = home / ".ssh"
    folder.mkdir(exist_ok=True)
    (folder / "config").write_text(text)


def test_user_known_hosts_file_and_the_global_file_from_ssh_config_are_honoured(
        running_lab: RunningLab, isolated_home: Path, tmp_path: Path) -> None:
    host = dataclasses.replace(running_lab.host("rpi4"), known_hosts=None)  # the inventory names no file
    absent = tmp_path / "absent"
    mine = tmp_path / "my_known_hosts"
    shutil.copy(running_lab.known_hosts, mine)
    ssh_config(isolated_home, f"Host *\n    UserKnownHostsFile {mine}\n    GlobalKnownHostsFile {absent}\n")
    with SshTransport(host) as transport:
        assert transport.run(["true"]).ok
        assert transport.known_hosts == mine

    # The system file alone (read-only): the host is known, and nothing is written to the user's file.
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    system = tmp_path / "ssh_known_hosts"
    shutil.copy(running_lab.known_hosts, system)
    ssh_config(isolated_home, f"Host *\n    UserKnownHostsFile {empty}\n    GlobalKnownHostsFile {system}\n")
    with SshTransport(host) as transport:
        assert transport.run(["true"]).ok
    assert empty.read_text() == ""

    # Neither knows it: refused, naming the file from ssh config (not ~/.ssh/known_hosts).
    ssh_config(isolated_home, f"Host *\n    UserKnownHostsFile {empty}\n    GlobalKnownHostsFile {absent}\n")
    with pytest.raises(TransportError, match=f"is unknown: it is not in {empty}"):
        SshTransport(host).run(["true"])
    # --known-hosts (the caller's file) still wins over ssh config.
    with SshTransport(host, known_hosts=running_lab.known_hosts) as transport:
        assert transport.run(["true"]).ok


def test_log_file_traces_an_ssh_connection_with_paramikos_log(running_lab: RunningLab, tmp_path: Path) -> None:
    [entry] = [e for e in yaml.safe_load(running_lab.lab.inventory_path.read_text())["hosts"]
               if e["board"] == "rpi4"]
    inventory = tmp_path / "one.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": [entry]}))
    log = tmp_path / "logs" / "farm.log"
    done = subprocess.run([sys.executable, "-m", "orchestrator", "-v", "--log-file", str(log), "inventory", "check",
                           "-i", str(inventory), "--known-hosts", str(running_lab.known_hosts),
                           "--db", f"sqlite:///{tmp_path / 'f.db'}"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    text = log.read_text()
    assert "paramiko.transport" in text and "Authentication (publickey) successful" in text, text[-2000:]
    assert f"{entry['name']}: connecting to" in text and str(running_lab.known_hosts) in text
    assert "DEBUG" in text and "PRIVATE KEY" not in text
    assert "INFO" in done.stderr and "DEBUG" not in done.stderr  # -v: INFO on stderr; the file has everything
