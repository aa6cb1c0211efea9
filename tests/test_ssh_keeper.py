"""The SSH keeper (orchestrator/transport/keeper.py): a check's connections kept for the next check.

Over the lab's real sshd: the keeper's connections are SshTransport's, reached through its Unix
socket by a real check, and counted by the keeper's own ``stats``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm_lab.lingering import keepers
from farm_lab.sshd import Sshd
from orchestrator.errors import StreamRefused
from orchestrator.facts_check import check_hosts
from orchestrator.inventory import Host
from orchestrator.transport import keeper_link

pytest_plugins = ["tests.lab_support"]


def wait_for(condition, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stats() -> dict:
    answer = keeper_link.ask("stats")
    assert answer is not None, "no keeper answers"
    return answer


def warmed(hosts: list[Host], options: dict) -> list:
    """Checks until the keeper holds every host's connection: agents lingering, a keeper listening."""
    first = check_hosts(hosts, options)
    assert all(c.reachable for c in first), [c.error for c in first]
    check_hosts(hosts, options)  # the first to want a keeper starts it, and goes on without
    wait_for(lambda: keeper_link.ask("stats") is not None, "the keeper to listen")
    third = check_hosts(hosts, options)
    log = keeper_link.socket_path().with_suffix(".log")
    assert all(c.lingering for c in third), ([(c.lingering, c.uploaded_agent) for c in third], stats(), log.read_text()[-3000:])
    assert stats()["kept"] == sorted(h.name for h in hosts)
    return first


def test_a_check_reaches_lingering_agents_over_the_connections_the_keeper_kept(running_lab) -> None:
    hosts = list(running_lab.inventory.hosts)
    options = {"known_hosts": running_lab.known_hosts}
    first = warmed(hosts, options)
    before = stats()
    again = check_hosts(hosts, options)
    after = stats()
    assert all(c.reachable and c.lingering for c in again), [c.error for c in again]
    assert after["streams"] - before["streams"] == len(hosts)
    assert after["connections"] == before["connections"] == len(hosts)  # no handshake in this check
    # Every stream ends with its check: the keeper sees the caller's close a moment after the caller returns.
    wait_for(lambda: stats()["relaying"] == 0, "every relayed stream to end", seconds=5)
    for old, new in zip(first, again, strict=True):
        assert (new.facts["board"], new.facts["python"]) == (old.facts["board"], old.facts["python"])


def test_the_same_known_hosts_file_named_by_the_inventory_or_by_the_caller_shares_one_connection(
        running_lab) -> None:
    # `farm inventory check --known-hosts F` on an inventory that names no file, then a caller whose
    # inventory names F: one kept connection each would cost every host a handshake per alternation.
    named = [dataclasses.replace(h, known_hosts=str(running_lab.known_hosts), agent_linger=600)
             for h in list(running_lab.inventory.hosts)[:2]]
    unnamed = [dataclasses.replace(h, known_hosts=None, agent_linger=None) for h in named]
    warmed(unnamed, {"known_hosts": running_lab.known_hosts})
    made = stats()["connections"]
    for hosts, options in ((named, {}), (unnamed, {"known_hosts": running_lab.known_hosts}),
                           (named, {"known_hosts": running_lab.known_hosts})):
        checks = check_hosts(hosts, options)
        assert all(c.reachable and c.lingering for c in checks), [c.error for c in checks]
    assert stats()["connections"] == made == len(named)


def test_the_keeper_is_off_with_farm_ssh_keeper_0(running_lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keeper_link.KEEPER_ENV, "0")
    hosts = list(running_lab.inventory.hosts)[:2]
    options = {"known_hosts": running_lab.known_hosts}
    for _ in range(3):
        checks = check_hosts(hosts, options)
        assert all(c.reachable for c in checks), [c.error for c in checks]
    assert all(c.lingering for c in checks)
    time.sleep(0.5)  # a keeper, had one been started, would listen by now
    assert keeper_link.ask("stats") is None
    assert keepers(str(os.environ["HOME"])) == []


def test_a_host_key_removed_from_known_hosts_fails_the_next_check_as_without_a_keeper(running_lab,
                                                                                      tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(running_lab.known_hosts.read_text())
    hosts = list(running_lab.inventory.hosts)[:2]
    options = {"known_hosts": known_hosts}
    warmed(hosts, options)
    # The kept connections were made against the old file: a new one is made, and checks the key.
    gone = hosts[0]
    known_hosts.write_text("".join(line for line in running_lab.known_hosts.read_text().splitlines(True)
                                   if not line.startswith(f"[{gone.address}]:")))
    kept = check_hosts(hosts, options)
    assert not kept[0].reachable and kept[1].reachable and kept[1].lingering, [c.error for c in kept]
    assert stats()["connections"] == 4  # both hosts connected anew: the file both were checked against changed
    os.environ[keeper_link.KEEPER_ENV] = "0"
    try:
        direct = check_hosts(hosts[:1], options)[0]
    finally:
        del os.environ[keeper_link.KEEPER_ENV]
    assert kept[0].error == direct.error and "known_hosts" in (direct.error or ""), (kept[0].error, direct.error)


def test_a_host_whose_sshd_stopped_is_reported_down_and_its_connection_forgotten(running_lab,
                                                                                  tmp_path: Path) -> None:
    lab_host = running_lab.inventory.hosts[0]
    state = running_lab.lab.state()
    port = running_lab.free_port([lab_host.address])
    sshd = Sshd("keeper-test", lab_host.address, port, tmp_path / "sshd",
                Path(state["public_dir"]) / "authorized_keys", state["user"])
    sshd.ensure_host_key()
    sshd.write_config()
    sshd.start()
    host = dataclasses.replace(lab_host, port=port, known_hosts=None)
    options = {"known_hosts": tmp_path / "known_hosts", "accept_new_host_keys": True}
    try:
        warmed([host], options)
    finally:
        sshd.stop()  # its sessions too: the kept connection ends
    down = check_hosts([host], options)[0]
    assert not down.reachable and f"{lab_host.address}:{port}" in (down.error or ""), down.error
    assert stats()["kept"] == []
    # It comes back: the next check reaches it again, over a new connection.
    sshd.start()
    try:
        back = check_hosts([host], options)[0]
        assert back.reachable, back.error
    finally:
        sshd.stop()


def test_a_stream_to_a_socket_nobody_listens_on_is_refused_through_the_keeper(running_lab) -> None:
    hosts = list(running_lab.inventory.hosts)[:1]
    options = {"known_hosts": running_lab.known_hosts}
    warmed(hosts, options)
    request = keeper_link.host_request(hosts[0], running_lab.known_hosts, False, 10.0)
    with pytest.raises(StreamRefused):
        keeper_link.open_kept_stream(request, "/nonexistent/farm.sock", 60)
    assert stats()["refused"] == 1 and stats()["kept"] == [hosts[0].name]  # the connection lives on


def start_keeper(path: Path) -> subprocess.Popen:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.transport.keeper", str(path)],
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: keeper_link.ask("stats", path) is not None, "the keeper to listen")
    return process


@pytest.mark.parametrize("line", [b"not json\n", b'{"v": 99, "op": "stream"}\n', b'{"v": 1, "op": "dance"}\n',
                                  b'{"v": 1, "op": "stream", "stream": "/x.sock", "host": {"name": "h"}}\n'])
def test_a_malformed_request_is_answered_and_the_keeper_serves_on(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "k" / "keeper.sock"
    process = start_keeper(path)
    try:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(path))
            connection.sendall(line)
            answer = connection.makefile("rb").readline()
        assert answer == b"" or json.loads(answer)["ok"] is False
        assert keeper_link.ask("stats", path)["streams"] == 0
    finally:
        process.terminate()
        process.wait(10)


def test_sigterm_and_a_second_keeper_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "k" / "keeper.sock"
    process = start_keeper(path)
    second = subprocess.run([sys.executable, "-m", "orchestrator.transport.keeper", str(path)],
                            capture_output=True, timeout=60, check=False)
    assert second.returncode == 0  # the name is taken: it leaves
    assert keeper_link.ask("stats", path)["pid"] == process.pid
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert not path.exists() and not path.with_suffix(".pid").exists()


def test_the_socket_path_falls_back_to_a_private_folder_of_tmp_when_too_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_CACHE_DIR", str(tmp_path / ("d" * 120)))
    path = keeper_link.socket_path("0123456789abcdef")
    assert path == Path(f"/tmp/farm-ssh-keeper-{os.getuid()}/0123456789abcdef.sock")
    monkeypatch.setenv("FARM_CACHE_DIR", str(tmp_path / "short"))
    assert keeper_link.socket_path("0123456789abcdef") == tmp_path / "short" / "ssh-keeper" / "0123456789abcdef.sock"
