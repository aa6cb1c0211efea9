"""The lingering agent (agent/linger.py): what a check leaves running, and how the next one reaches it.

Real processes throughout: the built agent archive under Python 3.6 and this Python, real Unix
sockets, and over SSH the lab's real sshd serving ``direct-streamlocal`` channels.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm_lab.lingering import lingering_agents, stop_lingering_agents
from farm_lab.sshd import Sshd
from orchestrator.agent_client import AgentSession
from orchestrator.agent_linger import PROHIBITED, SOCKETS, daemon_name, still_prohibited
from orchestrator.errors import StreamRefused
from orchestrator.facts_check import check_hosts
from orchestrator.inventory import Host
from orchestrator.transport.local import LocalTransport
from orchestrator.transport.ssh import SshTransport
from orchestrator.transport.streamlocal import StreamLocalRefused, open_streamlocal
from tests.test_agent import python36
from tests.test_agent_start import deployed

pytest_plugins = ["tests.lab_support"]

NAME = "0123456789abcdef01234567"
WAIT_S = 60.0  # for a process to come or go: generous, the machine may be loaded


def serve(python: str, archive: Path, requests: list[dict], state: Path) -> list[dict]:
    lines = "".join(json.dumps({**r, "id": n}) + "\n" for n, r in enumerate(requests, 1))
    done = subprocess.run([python, str(archive), "serve"], input=lines, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FARM_AGENT_DIR": str(state)}, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT_S} s")
        time.sleep(0.05)


def listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def talk(path: str, requests: list[dict]) -> list[dict]:
    """Requests on the socket, one answer each; fewer answers where the daemon closed the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(WAIT_S)
        connection.connect(path)
        reader = connection.makefile("rb")
        answers = []
        for n, request in enumerate(requests, 1):
            try:
                connection.sendall(json.dumps({**request, "id": n}).encode() + b"\n")
                line = reader.readline()
            except (ConnectionResetError, BrokenPipeError):  # closed unanswered, before or after the request
                break
            if not line:
                break
            answers.append(json.loads(line))
        return answers


def pythons() -> list[str]:
    return ["3.6", "this"]


@pytest.mark.parametrize("python", pythons())
def test_a_serve_asked_to_linger_leaves_one_daemon_that_answers_on_its_socket(tmp_path: Path, python: str) -> None:
    interpreter = python36() if python == "3.6" else sys.executable
    archive, state = deployed(tmp_path / "home"), tmp_path / "state"
    ask = {"op": "ping", "linger": {"name": NAME, "seconds": 120}}
    first = serve(interpreter, archive, [ask], state)[0]
    path = first["linger_socket"]
    assert first["ok"] and path in (str(state / "linger" / f"{NAME}.sock"), f"/tmp/farm-agent-{os.getuid()}/{NAME}.sock")
    wait_for(lambda: listening(path), "socket")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state / "linger").st_mode) == 0o700
    facts = talk(path, [{"op": "facts"}, {"op": "ping"}])
    assert [a["id"] for a in facts] == [1, 2] and facts[0]["ok"] and facts[0]["facts"]["cpu_count"] >= 1
    # The session's child is gone once it read the end of its connection: the daemon stays, alone.
    wait_for(lambda: len(lingering_agents(str(tmp_path))) == 1, "one daemon")
    daemons = lingering_agents(str(tmp_path))
    # A later session asking for the same daemon is told the same socket and starts no second one.
    again = serve(interpreter, archive, [ask], state)[0]
    assert again["linger_socket"] == path
    time.sleep(1.0)  # a second daemon, had one been started, would be running by now
    assert lingering_agents(str(tmp_path)) == daemons
    # Every connection is a session of its own: two at once are both answered.
    with socket.socket(socket.AF_UNIX) as held:
        held.connect(path)
        assert talk(path, [{"op": "ping"}])[0]["ok"]


def test_an_idle_daemon_exits_and_removes_its_socket(tmp_path: Path) -> None:
    archive, state = deployed(tmp_path / "home"), tmp_path / "state"
    path = serve(sys.executable, archive, [{"op": "ping", "linger": {"name": NAME, "seconds": 1}}],
                 state)[0]["linger_socket"]
    wait_for(lambda: lingering_agents(str(tmp_path)) == [] and not os.path.exists(path), "exit after 1 s idle")
    # Gone with its lock released: the next session's request starts a new one.
    serve(sys.executable, archive, [{"op": "ping", "linger": {"name": NAME, "seconds": 60}}], state)
    wait_for(lambda: listening(path), "new daemon")
    assert talk(path, [{"op": "ping"}])[0]["ok"]


def test_a_daemon_whose_agent_files_changed_answers_nothing_and_exits(tmp_path: Path) -> None:
    archive, state = deployed(tmp_path / "home"), tmp_path / "state"
    path = serve(sys.executable, archive, [{"op": "ping", "linger": {"name": NAME, "seconds": 120}}],
                 state)[0]["linger_socket"]
    wait_for(lambda: listening(path), "socket")
    assert talk(path, [{"op": "ping"}])[0]["ok"]
    # A file added to the unpacked agent: what the daemon has in memory is no longer what is deployed.
    (archive.with_suffix(".d") / "agent" / "added.py").write_text("")
    assert talk(path, [{"op": "ping"}]) == []
    wait_for(lambda: lingering_agents(str(tmp_path)) == [] and not os.path.exists(path), "stale daemon's exit")


@pytest.mark.parametrize("wish", [{"name": "../../etc", "seconds": 60}, {"name": NAME, "seconds": 0},
                                  {"name": NAME, "seconds": True}, {"name": NAME, "seconds": 10 ** 6},
                                  {"name": NAME}, "yes"])
def test_a_malformed_linger_request_is_answered_without_a_daemon(tmp_path: Path, wish: object) -> None:
    archive, state = deployed(tmp_path / "home"), tmp_path / "state"
    reply = serve(sys.executable, archive, [{"op": "ping", "linger": wish}], state)[0]
    assert reply["ok"] and "linger_socket" not in reply
    time.sleep(0.3)
    assert lingering_agents(str(tmp_path)) == [] and not (state / "linger").exists()


def test_a_state_folder_too_deep_for_a_socket_path_lingers_in_a_private_folder_of_tmp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    archive, state = deployed(deep / "home"), deep / "state"
    path = serve(sys.executable, archive, [{"op": "ping", "linger": {"name": NAME, "seconds": 60}}],
                 state)[0]["linger_socket"]
    folder = f"/tmp/farm-agent-{os.getuid()}"
    assert path == f"{folder}/{NAME}.sock"
    wait_for(lambda: listening(path), "socket")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and os.stat(folder).st_uid == os.getuid()
    assert talk(path, [{"op": "ping"}])[0]["ok"]


def test_a_tmp_folder_of_another_user_is_never_used(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to make a folder owned by another user")
    folder = Path(f"/tmp/farm-agent-{os.getuid()}")
    stop_lingering_agents(str(folder))
    moved = folder.with_name(folder.name + ".kept")
    if folder.exists():
        folder.rename(moved)
    try:
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)  # nobody's, as a squatter would leave it
        deep = tmp_path / ("d" * 60) / ("e" * 60)
        archive, state = deployed(deep / "home"), deep / "state"
        reply = serve(sys.executable, archive, [{"op": "ping", "linger": {"name": NAME, "seconds": 60}}], state)[0]
        assert reply["ok"] and "linger_socket" not in reply
        assert list(folder.iterdir()) == []
    finally:
        folder.rmdir()
        if moved.exists():
            moved.rename(folder)


def local_host(**fields: object) -> Host:
    return Host(**{"name": "here", "transport": "local", "python": sys.executable, "workdir": ".cache/farm-linger",
                   **fields})


def test_a_second_local_check_reaches_the_lingering_agent_and_gets_the_same_facts(tmp_path: Path) -> None:
    host = local_host()
    first = check_hosts([host], {})[0]
    assert first.reachable and not first.lingering, first.error
    wait_for(lambda: listening(SOCKETS.get(daemon_name(host))), "daemon")
    second = check_hosts([host], {})[0]
    assert second.reachable and second.lingering, second.error
    for key in ("board", "os", "python", "cpu_count", "runtime"):
        assert second.facts[key] == first.facts[key], key
    # The book survives the process: it is in the cache folder, under the daemon's name.
    book = Path(os.environ["HOME"]) / ".cache" / "farm" / "lingering-agents.json"
    assert json.loads(book.read_text())[daemon_name(host)].endswith(f"{daemon_name(host)}.sock")


def test_a_stale_socket_in_the_book_costs_one_start_and_is_corrected(tmp_path: Path) -> None:
    host = local_host()
    SOCKETS.put(daemon_name(host), str(tmp_path / "nobody-listens.sock"))
    check = check_hosts([host], {})[0]
    assert check.reachable and not check.lingering, check.error
    assert SOCKETS.get(daemon_name(host)) != str(tmp_path / "nobody-listens.sock")
    wait_for(lambda: listening(SOCKETS.get(daemon_name(host))), "daemon")
    assert check_hosts([host], {})[0].lingering


class LateDaemonTransport(LocalTransport):
    """This machine, where the lingering daemon binds its socket only just after a stream to it was refused:
    as when a check follows the one that asked for the daemon before the daemon has started (a loaded host)."""

    started = False

    def connect_socket(self, path: str):
        try:
            return super().connect_socket(path)
        except StreamRefused:
            if not self.started:
                self.started = True
                # Another contact asks for the daemon; it binds when that contact ends, before this one's probe.
                AgentSession(LocalTransport(self.host)).open(linger=True).close()
                wait_for(lambda: listening(path), "the late daemon")
            raise


def test_a_daemon_that_listens_only_after_a_refused_stream_does_not_mark_the_host_as_forbidding_streams(
        tmp_path: Path) -> None:
    host = local_host()
    name = daemon_name(host)
    assert not check_hosts([host], {})[0].lingering
    path = SOCKETS.get(name)
    wait_for(lambda: listening(path), "daemon")
    stop_lingering_agents(str(tmp_path))
    wait_for(lambda: not listening(path), "the daemon to stop")
    session = AgentSession(LateDaemonTransport(host)).open(first={"op": "facts"}, linger=True)
    session.close()
    assert session.transport.started and not session.lingering  # refused, then started with a probe
    # The probe found a daemon listening; a second stream to it opened: nothing forbids streams here.
    assert SOCKETS.get(name) == path and not still_prohibited(SOCKETS.get(name))
    assert check_hosts([host], {})[0].lingering


def test_agent_linger_zero_leaves_nothing_running(tmp_path: Path) -> None:
    host = local_host(agent_linger=0)
    assert [c.lingering for c in check_hosts([host, host], {})] == [False, False]
    time.sleep(0.5)
    assert lingering_agents(str(tmp_path)) == []
    assert not check_hosts([host], {})[0].lingering


def test_checks_over_ssh_reach_the_lab_hosts_lingering_agents_through_sshd(running_lab) -> None:
    hosts = list(running_lab.inventory.hosts)
    options = {"known_hosts": running_lab.known_hosts}
    first = check_hosts(hosts, options)
    assert all(c.reachable for c in first), [c.error for c in first]
    marker = f"/farm-lab/{running_lab.lab.id}/"
    sockets = [SOCKETS.get(daemon_name(h)) for h in hosts]
    assert all(sockets), sockets
    # The lab's hosts are this machine: their daemons' sockets can be seen here.
    wait_for(lambda: all(listening(s) for s in sockets), "a listening daemon per host")
    second = check_hosts(hosts, options)
    assert [c.lingering for c in second] == [True] * len(hosts), [c.error for c in second]
    for before, after in zip(first, second, strict=True):
        assert after.facts["board"] == before.facts["board"] and after.facts["python"] == before.facts["python"]
    # Daemons stopped behind the controller's back: the next check starts the agents again, and they linger.
    stop_lingering_agents(marker)
    wait_for(lambda: lingering_agents(marker) == [], "daemons to stop")
    third = check_hosts(hosts, options)
    assert all(c.reachable and not c.lingering for c in third), [c.error for c in third]
    # Refused because nobody listened, not by sshd: each agent offered its socket again, and lingers.
    assert [SOCKETS.get(daemon_name(h)) for h in hosts] == sockets


def test_a_stream_to_a_socket_nobody_listens_on_is_refused_and_the_connection_lives_on(running_lab) -> None:
    host = running_lab.inventory.hosts[0]
    transport = SshTransport(host, known_hosts=running_lab.known_hosts)
    try:
        with pytest.raises(StreamLocalRefused):
            open_streamlocal(transport._transport(), "/nonexistent/farm.sock", timeout=30)
        assert transport.run(["true"]).ok
    finally:
        transport.close()


@dataclasses.dataclass(frozen=True)
class NoStreamsSshd(Sshd):
    """The lab's sshd with streams to sockets forbidden, as an administrator may configure one."""

    def config(self) -> str:
        return super().config() + "AllowStreamLocalForwarding no\n"


def test_a_host_whose_sshd_forbids_streams_is_not_asked_to_linger_again(running_lab, tmp_path: Path) -> None:
    lab_host = running_lab.inventory.hosts[1]
    state = running_lab.lab.state()
    port = running_lab.free_port([lab_host.address])
    sshd = NoStreamsSshd("no-streams", lab_host.address, port, tmp_path / "sshd",
                         Path(state["public_dir"]) / "authorized_keys", state["user"])
    sshd.ensure_host_key()
    sshd.write_config()
    sshd.start()
    try:
        host = dataclasses.replace(lab_host, port=port, known_hosts=None)
        options = {"known_hosts": tmp_path / "known_hosts", "accept_new_host_keys": True}
        name = daemon_name(host)
        assert not check_hosts([host], options)[0].lingering
        assert SOCKETS.get(name) and not SOCKETS.get(name).startswith(PROHIBITED)  # the agent offered one
        refused = check_hosts([host], options)[0]
        assert refused.reachable and not refused.lingering, refused.error
        assert still_prohibited(SOCKETS.get(name))
        # From now on the agent is started without being asked to stay: no daemon, no failed stream first.
        stop_lingering_agents(f"/farm-lab/{running_lab.lab.id}/{host.name}/")
        wait_for(lambda: lingering_agents(f"/farm-lab/{running_lab.lab.id}/{host.name}/") == [], "daemon to stop")
        later = check_hosts([host], options)[0]
        assert later.reachable and not later.lingering
        time.sleep(1.0)
        assert lingering_agents(f"/farm-lab/{running_lab.lab.id}/{host.name}/") == []
    finally:
        sshd.stop()


def test_a_rewritten_interpreter_wrapper_retires_the_daemon_it_started(tmp_path: Path) -> None:
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec env FARM_TEST_SETUP=1 "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    host = local_host(python=str(wrapper))
    check_hosts([host], {})
    wait_for(lambda: listening(SOCKETS.get(daemon_name(host))), "daemon")
    assert check_hosts([host], {})[0].lingering
    # The same path, another environment for every agent it starts: the daemon's is not that one any more.
    wrapper.write_text(f'#!/bin/sh\nexec env FARM_TEST_SETUP=22 "{sys.executable}" "$@"\n')
    again = check_hosts([host], {})[0]
    assert again.reachable and not again.lingering, again.error
    wait_for(lambda: listening(SOCKETS.get(daemon_name(host))), "the new setup's daemon")
    assert check_hosts([host], {})[0].lingering


def test_a_nightlys_toolchain_probe_starts_every_agent(tmp_path: Path) -> None:
    host = local_host()
    check_hosts([host], {})
    wait_for(lambda: listening(SOCKETS.get(daemon_name(host))), "daemon")
    assert not check_hosts([host], {}, linger=False)[0].lingering
