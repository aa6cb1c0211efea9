"""SshTransport against real OpenSSH servers: the simulated lab, started by these tests."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.schema import make_job
from farm_lab.sshd import SSHD, Sshd, _descendants
from orchestrator.agent_client import AgentSession
from orchestrator.errors import TransportError
from orchestrator.inventory import Host
from orchestrator.transport import open_transport
from orchestrator.transport.ssh import SshTransport

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]


@pytest.fixture
def rpi(running_lab: RunningLab) -> Host:
    # A fresh workdir per test: the hosts share one login home, and tests must not see each other's files.
    host = running_lab.host("rpi4")
    return dataclasses.replace(host, workdir=f"{host.workdir}/test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def transport(running_lab: RunningLab, rpi: Host):
    with SshTransport(rpi, known_hosts=running_lab.known_hosts) as opened:
        yield opened


def test_open_transport_gives_ssh_for_ssh_hosts(running_lab: RunningLab, rpi: Host) -> None:
    opened = open_transport(rpi, known_hosts=running_lab.known_hosts)
    assert isinstance(opened, SshTransport)
    opened.close()


def test_run_quotes_every_argument_and_passes_env(transport: SshTransport, rpi: Host) -> None:
    awkward = ["a b", "$HOME", "it's", "`id`", "*", ";", ""]
    done = transport.run(["printf", "%s|", *awkward])
    assert done.ok and done.stdout == "|".join(awkward) + "|"
    done = transport.run(["sh", "-c", 'echo "$FOO/$FARM_DEVICE_ROOT"'], env={"FOO": "x y'z"})
    assert done.stdout.strip() == f"x y'z/{rpi.env_dict['FARM_DEVICE_ROOT']}"


def test_run_reports_exit_codes_stderr_and_a_missing_command(transport: SshTransport) -> None:
    done = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.exit_code, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert transport.run(["no-such-command-here"]).exit_code == 127
    # The command's stdin is closed, as with the local transport: cat must not wait forever.
    assert transport.run(["cat"], timeout=5).stdout == ""


def test_run_reads_large_stdout_and_stderr_together(transport: SshTransport) -> None:
    script = "head -c 400000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero | tr '\\0' b >&2"
    done = transport.run(["sh", "-c", script], timeout=30)
    assert done.stdout == "a" * 400000 and done.stderr == "b" * 300000


def test_run_timeout_raises_and_the_connection_stays_usable(transport: SshTransport) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match="timed out after 0.5 s"):
        transport.run(["sleep", "10"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert transport.run(["true"]).ok


def test_files_put_get_exists_rename(transport: SshTransport, rpi: Host, tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(bytes(range(256)) * 1000)
    remote = f"{rpi.workdir}/deep/er/data.bin"
    assert not transport.exists(remote)
    transport.put(local, remote)  # creates the parents
    assert transport.exists(remote)
    back = tmp_path / "back.bin"
    transport.get(remote, back)
    assert back.read_bytes() == local.read_bytes()
    # Relative paths are relative to the login home, like the local transport's.
    assert transport.run(["cmp", remote, f"{rpi.workdir}/deep/er/data.bin"]).ok

    other = tmp_path / "other.bin"
    other.write_bytes(b"new")
    transport.put(other, f"{rpi.workdir}/tmp.bin")
    transport.rename(f"{rpi.workdir}/tmp.bin", remote)  # replaces the existing file
    assert not transport.exists(f"{rpi.workdir}/tmp.bin")
    transport.get(remote, back)
    assert back.read_bytes() == b"new"
    with pytest.raises(FileNotFoundError):
        transport.get(f"{rpi.workdir}/missing", back)
    with pytest.raises(FileNotFoundError):
        transport.rename(f"{rpi.workdir}/missing", remote)


def test_one_connection_serves_every_call(transport: SshTransport, rpi: Host, tmp_path: Path) -> None:
    transport.run(["true"])
    first = transport._connection
    local = tmp_path / "f"
    local.write_text("x")
    transport.put(local, f"{rpi.workdir}/f")
    transport.exists(f"{rpi.workdir}/f")
    channel = transport.start(["cat"])
    channel.send_line("hello")
    assert channel.read_line(timeout=5) == "hello"
    channel.close()
    assert transport._connection is first
    assert first is not None and first.transport is not None
    sock = first.transport.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10000


def test_many_connections_at_once(running_lab: RunningLab) -> None:
    """A controller opens a whole lab at once: sshd's default MaxStartups would drop some of these."""
    hosts = [dataclasses.replace(h, name=f"{h.name}-{n}") for h in running_lab.inventory.hosts for n in range(5)]

    def reach(host: Host) -> str:
        with SshTransport(host, known_hosts=running_lab.known_hosts) as transport:
            return transport.run(["echo", host.name]).stdout.strip()

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        assert list(pool.map(reach, hosts)) == [h.name for h in hosts]


def test_deploy_uploads_once_then_sends_nothing(running_lab: RunningLab, rpi: Host) -> None:
    with SshTransport(rpi, known_hosts=running_lab.known_hosts) as transport:
        with AgentSession(transport) as session:
            assert session.uploaded_agent
        with AgentSession(transport) as session:
            assert not session.uploaded_agent
            assert session.facts()["board"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_a_job_runs_over_ssh_with_the_boards_runtime(running_lab: RunningLab, shared_model: Path) -> None:
    host = running_lab.host("devboard")  # Python 3.7 + tflite-runtime 2.11
    digest = hashlib.sha256(shared_model.read_bytes()).hexdigest()
    with SshTransport(host, known_hosts=running_lab.known_hosts) as transport, AgentSession(transport) as session:
        remote = session.upload_model(shared_model, digest)
        job = make_job("ssh-job", remote, digest, threads=2,
                       timing={"warmup_min_runs": 1, "warmup_min_seconds": 0.0, "min_runs": 3, "min_seconds": 0.0})
        result = session.run_job(job)
    assert result["status"] == "succeeded", result
    assert result["runtime"]["version"] == "2.11.0"


def test_agent_channel_reports_timeouts_and_exits(transport: SshTransport) -> None:
    channel = transport.start(["cat"])
    started = time.monotonic()
    with pytest.raises(TransportError, match="no answer from the agent in 0.3 s"):
        channel.read_line(timeout=0.3)
    assert time.monotonic() - started < 3
    channel.close()
    long_line = transport.start(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo next"])
    assert long_line.read_line(timeout=10) == "x" * 3000000
    assert long_line.read_line(timeout=10) == "next"
    long_line.close()
    killed = transport.start(["sh", "-c", "kill -9 $PPID"])  # the login shell: sshd then sends no status
    with pytest.raises(TransportError, match="agent was killed by a signal"):
        killed.read_line(timeout=5)
    killed.close()
    failing = transport.start(["sh", "-c", "echo 'Traceback: boom' >&2; exit 4"])
    with pytest.raises(TransportError, match=r"exited with code 4.*Traceback: boom"):
        failing.read_line(timeout=5)
    failing.close()
    # Stdout and stderr share the channel's window: stderr beyond it, unread, would stop the reply for good.
    chatty = transport.start(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' e >&2; echo >&2; echo done"])
    assert chatty.read_line(timeout=60) == "done"
    chatty.close()


def test_unknown_host_key_is_refused_then_accepted_and_saved(running_lab: RunningLab, rpi: Host,
                                                              tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    refused = SshTransport(rpi, known_hosts=known)
    with pytest.raises(TransportError) as caught:
        refused.run(["true"])
    message = str(caught.value)
    assert rpi.name in message and "--accept-new-host-keys" in message and "SHA256:" in message
    assert known.read_text() == ""

    with SshTransport(rpi, known_hosts=known, accept_new_host_keys=True) as accepting:
        assert accepting.run(["true"]).ok
    saved = known.read_text()
    assert saved.startswith(f"[{rpi.address}]:{rpi.port} ssh-ed25519 ")
    lab_line = next(line for line in running_lab.known_hosts.read_text().splitlines()
                    if line.startswith(f"[{rpi.address}]:{rpi.port} "))
    assert saved.strip() == lab_line
    with SshTransport(rpi, known_hosts=known) as strict:  # now known: no flag needed
        assert strict.run(["true"]).ok


def test_changed_host_key_is_always_refused(running_lab: RunningLab, rpi: Host, tmp_path: Path) -> None:
    other = running_lab.host("devboard")
    lines = running_lab.known_hosts.read_text().splitlines()
    other_key = next(line for line in lines if line.startswith(f"[{other.address}]:")).split(" ", 1)[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{rpi.address}]:{rpi.port} {other_key}\n")  # another host's key under this name
    for accept in (False, True):
        with pytest.raises(TransportError, match="CHANGED") as caught:
            SshTransport(rpi, known_hosts=known, accept_new_host_keys=accept).run(["true"])
        assert rpi.name in str(caught.value) and "ssh-keygen -R" in str(caught.value)
    assert known.read_text() == f"[{rpi.address}]:{rpi.port} {other_key}\n"


def test_a_host_that_is_down_fails_fast_and_clearly(running_lab: RunningLab, rpi: Host) -> None:
    dead = dataclasses.replace(rpi, name="dead-host", port=running_lab.free_port([rpi.address]))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        SshTransport(dead, known_hosts=running_lab.known_hosts, connect_timeout=3).run(["true"])
    assert time.monotonic() - started < 3
    assert str(caught.value) == (f"dead-host: cannot connect to {rpi.address}:{dead.port}: connection refused; "
                                 "is sshd running there and listening on that port?")


def test_a_port_that_is_not_ssh_is_named_as_such(rpi: Host) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        silent = dataclasses.replace(rpi, name="silent", address="127.0.0.1", port=server.getsockname()[1])
        with pytest.raises(TransportError, match="did not answer as an SSH server within 0.5 s"):
            SshTransport(silent, connect_timeout=0.5).run(["true"])


def test_unknown_host_name_is_a_clear_error(running_lab: RunningLab, rpi: Host) -> None:
    nowhere = dataclasses.replace(rpi, name="nowhere", address="no-such-host.invalid")
    with pytest.raises(TransportError, match="nowhere: cannot connect to no-such-host.invalid.*unknown host name"):
        SshTransport(nowhere, known_hosts=running_lab.known_hosts).run(["true"])


def test_keys_the_host_does_not_accept_give_a_clear_error(running_lab: RunningLab, rpi: Host,
                                                          tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    host = dataclasses.replace(rpi, identity_file=str(stranger))
    with pytest.raises(TransportError, match="refused our SSH keys.*never uses passwords"):
        SshTransport(host, known_hosts=running_lab.known_hosts).run(["true"])
    missing = dataclasses.replace(rpi, identity_file=str(tmp_path / "nope"))
    with pytest.raises(TransportError, match="identity file .*nope.* does not exist"):
        SshTransport(missing, known_hosts=running_lab.known_hosts).run(["true"])


def test_keys_from_ssh_agent_are_used(running_lab: RunningLab, rpi: Host, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not agent_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        keyless = dataclasses.replace(rpi, identity_file=None)  # and no ~/.ssh/id_*: only the agent has it
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        with pytest.raises(TransportError, match="no SSH key to offer"):
            SshTransport(keyless, known_hosts=running_lab.known_hosts).run(["true"])
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
        subprocess.run(["ssh-add", "-q", str(rpi.identity_file)], check=True, capture_output=True)
        with SshTransport(keyless, known_hosts=running_lab.known_hosts) as transport:
            assert transport.run(["true"]).ok
    finally:
        agent.terminate()
        agent.wait()


def test_ssh_config_alias_is_honoured(running_lab: RunningLab, rpi: Host, isolated_home: Path) -> None:
    ssh_dir = isolated_home / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text(f"Host lab-alias\n  HostName {rpi.address}\n  Port {rpi.port}\n"
                                    f"  User {rpi.user}\n  IdentityFile {rpi.identity_file}\n")
    aliased = Host(name="aliased", address="lab-alias")  # port, user and key all come from ~/.ssh/config
    with SshTransport(aliased, known_hosts=running_lab.known_hosts) as transport:
        assert transport.run(["id", "-un"]).stdout.strip() == rpi.user


def test_proxyjump_gateways_work_and_have_their_host_keys_checked(running_lab: RunningLab, isolated_home: Path,
                                                                  tmp_path: Path) -> None:
    jump, target = running_lab.host("rpi3b+"), running_lab.host("devboard")
    ssh_dir = isolated_home / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text(
        f"Host jump\n  HostName {jump.address}\n  Port {jump.port}\n  User {jump.user}\n"
        f"  IdentityFile {jump.identity_file}\n"
        f"Host behind\n  HostName {target.address}\n  Port {target.port}\n  User {target.user}\n"
        f"  IdentityFile {target.identity_file}\n  ProxyJump jump\n")
    behind = Host(name="behind", address="behind")
    with SshTransport(behind, known_hosts=running_lab.known_hosts) as transport:
        assert transport.run(["true"]).ok
    # Only the final host's key is known: the gateway's must be refused all the same.
    known = tmp_path / "known_hosts"
    known.write_text(next(line + "\n" for line in running_lab.known_hosts.read_text().splitlines()
                          if line.startswith(f"[{target.address}]:")))
    with pytest.raises(TransportError, match=rf"host key of {jump.address}:{jump.port} \(a gateway to"):
        SshTransport(behind, known_hosts=known).run(["true"])


def test_a_dropped_connection_is_reported_then_reopened(running_lab: RunningLab, rpi: Host) -> None:
    transport = SshTransport(rpi, known_hosts=running_lab.known_hosts)
    assert transport.run(["true"]).ok
    channel = transport.start(["cat"])
    sshd = next(s for s in running_lab.lab._saved_sshds() if s.name == rpi.name)
    listener = sshd.pid()
    assert listener is not None
    # Kill the server side of every session on this host: what a rebooting board does to a link.
    for pid in _descendants(listener):
        subprocess.run(["kill", "-9", str(pid)], check=False)
    started = time.monotonic()
    with pytest.raises(TransportError, match="SSH connection was lost"):
        channel.read_line(timeout=10)
    assert time.monotonic() - started < 5
    assert transport.run(["true"]).ok  # a fresh connection
    transport.close()


DEAD_LINK_CLIENT = """
import dataclasses, json, subprocess, sys, time
from pathlib import Path
from orchestrator.errors import TransportError
from orchestrator.inventory import Host
from orchestrator.transport.ssh import SshTransport
host = Host(**json.loads(sys.argv[1]))
transport = SshTransport(host, accept_new_host_keys=True, known_hosts=Path(sys.argv[2]))
channel = transport.start(["cat"])
channel.send_line("ping")
assert channel.read_line(timeout=10) == "ping"
subprocess.run(["ip", "-n", sys.argv[3], "link", "set", sys.argv[4], "down"], check=True)
started = time.monotonic()
try:
    channel.read_line(timeout=120)
except TransportError as exc:
    print(json.dumps({"seconds": time.monotonic() - started, "error": str(exc)}))
"""


@pytest.mark.slow
def test_a_dead_link_is_detected_in_seconds(running_lab: RunningLab, rpi: Host, tmp_path: Path) -> None:
    """Packets vanish (a board unplugged): keepalives and TCP_USER_TIMEOUT end the wait in seconds, not minutes.

    Needs a link that can be cut: two private network namespaces joined by a veth pair.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("cutting a link needs root and iproute2 (network namespaces)")
    tag = uuid.uuid4().hex[:6]
    client_ns, server_ns, client_if, server_if = f"farm{tag}c", f"farm{tag}s", f"fv{tag}c", f"fv{tag}s"

    def ip(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)

    if ip("netns", "add", client_ns).returncode != 0:
        pytest.skip("cannot create network namespaces here")
    sshd = Sshd("dead-link", "10.77.0.2", 22, tmp_path / "sshd", _authorized_keys_of(running_lab), rpi.user or "")
    try:
        for args in (("netns", "add", server_ns),
                     ("link", "add", client_if, "netns", client_ns, "type", "veth", "peer", "name", server_if,
                      "netns", server_ns),
                     ("-n", client_ns, "addr", "add", "10.77.0.1/24", "dev", client_if),
                     ("-n", server_ns, "addr", "add", "10.77.0.2/24", "dev", server_if),
                     ("-n", client_ns, "link", "set", client_if, "up"),
                     ("-n", server_ns, "link", "set", server_if, "up"),
                     ("-n", server_ns, "link", "set", "lo", "up")):
            done = ip(*args)
            if done.returncode != 0:
                pytest.skip(f"cannot build a private network: ip {' '.join(args)}: {done.stderr.strip()}")
        sshd.ensure_host_key()
        sshd.write_config()
        subprocess.run(["ip", "netns", "exec", server_ns, str(SSHD), "-f", str(sshd.config_path), "-E",
                        str(sshd.log_path)], check=True)
        host = {"name": "dead-link", "address": "10.77.0.2", "port": 22, "user": rpi.user,
                "identity_file": rpi.identity_file, "python": rpi.python}
        client = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", DEAD_LINK_CLIENT,
                                 json.dumps(host), str(tmp_path / "known_hosts"), server_ns, server_if],
                                capture_output=True, text=True, timeout=120, check=False, cwd=Path(__file__).parent.parent)
        assert client.returncode == 0, client.stderr
        outcome = json.loads(client.stdout)
        print(f"\ndead link detected after {outcome['seconds']:.1f} s: {outcome['error']}")
        assert outcome["seconds"] < 30 and "SSH connection was lost" in outcome["error"]
    finally:
        sshd.stop()
        ip("netns", "del", client_ns)
        ip("netns", "del", server_ns)


def _authorized_keys_of(running_lab: RunningLab) -> Path:
    state = running_lab.lab.state() or {}
    return Path(state["public_dir"]) / "authorized_keys"


def test_round_trips_reuse_one_open_connection_with_nagle_off(transport: SshTransport) -> None:
    # How fast a round trip is (a few ms; ~40 with Nagle plus delayed ACKs) is bench/ssh_round_trip.py's
    # goal: a timed limit here fails whenever the shared machine is busy. This checks what makes it fast.
    assert transport.run(["true"]).ok
    link = transport._transport()
    assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert all(transport.run(["true"]).ok for _ in range(5))
    assert transport._transport() is link  # no new handshake per command
    session = AgentSession(transport).open()
    try:
        replies = [session.request({"op": "ping"}, timeout=10) for _ in range(5)]
    finally:
        session.close()
    assert [reply["id"] for reply in replies] == sorted({reply["id"] for reply in replies})
    assert all(reply["ok"] and reply["version"] for reply in replies)
    assert transport._transport() is link  # the agent's channel rode the same connection
