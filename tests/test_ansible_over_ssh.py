"""An Ansible INI inventory of the simulated lab's real sshd hosts: the mapped fields really connect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.inventory import load_inventory

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]


def ansible_ini(running_lab: RunningLab) -> str:
    """The lab as its owner would keep it for Ansible: a group per board family, login settings as group vars."""
    hosts = running_lab.inventory.hosts
    families: dict[str, list[str]] = {}
    for host in hosts:
        env = repr(host.env_dict)
        families.setdefault("jetsons" if host.board.startswith("jetson") else "others", []).append(
            f"{host.name} ansible_host={host.address} ansible_port={host.port} "
            f"ansible_python_interpreter={host.python} farm_board={host.board} "
            f"farm_workdir={host.workdir} farm_env=\"{env}\"")
    user, key = hosts[0].user, hosts[0].identity_file
    assert all((h.user, h.identity_file) == (user, key) for h in hosts), "the lab shares one login"
    sections = [f"[{family}]\n" + "\n".join(lines) for family, lines in families.items()]
    return ("\n\n".join(sections) + "\n\n[lab:children]\n" + "\n".join(families) +
            f"\n\n[lab:vars]\nansible_user={user}\nansible_ssh_private_key_file={key}\n"
            "ansible_connection=ssh\nntp_server=ntp.example.com\n")


def test_inventory_check_over_an_ansible_ini_inventory_reaches_every_lab_host(
        running_lab: RunningLab, tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(ansible_ini(running_lab))
    mapped = load_inventory(path)
    lab_hosts = {h.name: h for h in running_lab.inventory.hosts}
    assert len(mapped.hosts) == len(lab_hosts) >= 4
    for host in mapped.hosts:
        lab_host = lab_hosts[host.name]
        assert (host.address, host.port, host.user, host.identity_file, host.python, host.board, host.workdir,
                host.env) == (lab_host.address, lab_host.port, lab_host.user, lab_host.identity_file,
                              lab_host.python, lab_host.board, lab_host.workdir, lab_host.env)
        assert host.tags[-1] == "lab" and host.tags[0] in ("jetsons", "others")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "inventory", "check", "-i", str(path), "--db",
         f"sqlite:///{tmp_path / 'check.db'}", "--known-hosts", str(running_lab.known_hosts)],
        capture_output=True, text=True, check=False, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(lab_hosts)} of {len(lab_hosts)} host(s) reachable" in done.stdout
    assert "(Ansible INI inventory)" in done.stdout
    for host in mapped.hosts:
        cells = [cell.strip() for cell in next(
            line for line in done.stdout.splitlines() if f" {host.name} " in line).split("│")[1:-1]]
        # reachable, and nothing the host says about itself contradicts the mapped farm_board
        assert cells[1] == "yes" and cells[-1] == "", cells
