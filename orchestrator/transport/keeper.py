"""The SSH keeper: keeps a check's SSH connections open for the next check, as OpenSSH's ControlPersist does.

Started in the background by ``keeper_link`` (``python -m orchestrator.transport.keeper SOCKET FOR``), it
listens on a Unix socket of the controller's user (0600, in a 0700 folder; a peer of another uid is
turned away). Each request is one JSON line; ``stream`` names a host, as the controller would reach it,
and a Unix socket on that host (a lingering agent's). The keeper answers one JSON line, then relays
bytes both ways between its caller and a ``direct-streamlocal`` channel on the connection it keeps for
that host, until both sides are done. ``stats`` and ``stop`` answer and close.

Its connections are ``SshTransport``'s own: same resolution through ``~/.ssh/config``, same keys, same
host key checks, same error messages. A connection is kept while it is used; it is closed after the
host's ``agent_linger`` seconds without a stream, or as soon as what it was made from changes (the
host's inventory entry, its known_hosts or key files, the SSH and fabric config files): the next
request then makes a new one. The keeper exits when it keeps none and nobody asked for a minute,
when its socket is removed or taken over, and on SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from ..errors import FarmError, StreamRefused, TransportError
from ..inventory import Host
from . import ssh_direct
from .keeper_link import PROTOCOL
from .ssh import SshTransport

# Keepalives on connections that may sit idle for many minutes: one every 5 s (a check's own) would cost
# hundreds of hosts' sshd a wake each per 5 s, and the keeper a packet each.
KEPT_KEEPALIVE_S = 30
# A connection that is kept answers a channel open in milliseconds; one that does not in this long is
# dropped for a new connection, which fails as a check's own would where the host is down.
REUSED_OPEN_TIMEOUT_S = 3.0
EXIT_AFTER_IDLE_S = 60.0
REAP_EVERY_S = 5.0
REQUEST_TIMEOUT_S = 10.0

log = logging.getLogger("farm.keeper")


@dataclass
class Kept:
    """One host's kept connection."""

    key: str
    transport: SshTransport
    idle_s: float
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    streams: int = 0  # open through it now


@functools.lru_cache(maxsize=1024)
def _expanded(path: str, home: str | None) -> str:
    return os.path.expanduser(path)


def _file_identity(path: str | None) -> Any:
    if not path:
        return None
    try:
        info = os.stat(_expanded(path, os.environ.get("HOME")))
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def connection_key(request: dict[str, Any]) -> str:
    """What a connection was made from: any change means a new one (new keys, a host key removed...)."""
    host = request.get("host") or {}
    # Looked at for every stream: a key removed from known_hosts a moment ago must fail the next check.
    files = dict.fromkeys((request.get("known_hosts"), host.get("known_hosts"), "~/.ssh/known_hosts",
                           host.get("identity_file")))
    made_from = {k: v for k, v in host.items() if k != "agent_linger"}  # how long to keep it is not how it is made
    return json.dumps([made_from, request.get("known_hosts"), bool(request.get("accept_new_host_keys")),
                       [_file_identity(f) for f in files], ssh_direct._identity()], sort_keys=True, default=str)


class Keeper:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.kept: dict[str, Kept] = {}  # by host name
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.last_request = time.monotonic()
        self.relaying = 0
        self.counts = {"streams": 0, "connections": 0, "refused": 0, "unreachable": 0}
        self._socket_identity: tuple[int, int] | None = None

    # -- lifetime ---------------------------------------------------------------------------------------------

    def serve(self) -> int:
        lock = open(self.path.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another keeper has this name: it serves
        with contextlib.suppress(OSError):
            os.truncate(self.path.with_suffix(".log"), 0)  # this keeper's log only
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        listener.listen(512)
        info = self.path.stat()
        self._socket_identity = (info.st_dev, info.st_ino)
        self.path.with_suffix(".pid").write_text(f"{os.getpid()}\n")
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()
        log.info("keeper %d listening on %s", os.getpid(), self.path)
        listener.settimeout(1.0)  # the loop looks at self.stopping once a second
        try:
            while not self.stopping.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    log.warning("accept: %s", exc)
                    time.sleep(0.1)
                    continue
                if not self._same_user(connection):
                    connection.close()
                    continue
                threading.Thread(target=self._handle, args=(connection,), daemon=True).start()
        finally:
            listener.close()
            self._remove_own_socket()
            with self.lock:
                kept, self.kept = list(self.kept.values()), {}
            for entry in kept:
                entry.transport.close()
            log.info("keeper %d stopped", os.getpid())
        return 0

    def _same_user(self, connection: socket.socket) -> bool:
        if not hasattr(socket, "SO_PEERCRED"):
            return True  # the socket's 0600 mode and its 0700 folder still keep others out
        _, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
        return uid == os.getuid()

    def _socket_still_ours(self) -> bool:
        try:
            info = self.path.stat()
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._socket_identity

    def _remove_own_socket(self) -> None:
        if self._socket_still_ours():
            with contextlib.suppress(OSError):
                self.path.unlink()
            with contextlib.suppress(OSError):
                self.path.with_suffix(".pid").unlink()

    def _reap(self) -> None:
        while not self.stopping.wait(REAP_EVERY_S):
            now = time.monotonic()
            with self.lock:
                idle = [name for name, k in self.kept.items() if not k.streams and now - k.last_used > k.idle_s]
                closing = [self.kept.pop(name) for name in idle]
                empty = not self.kept and not self.relaying
            for entry in closing:
                log.info("%s: idle for %.0f s, closing its connection", entry.transport.host.name, entry.idle_s)
                entry.transport.close()
            if not self._socket_still_ours():
                log.info("socket %s removed or taken over: stopping", self.path)
                self.stopping.set()
            elif empty and now - self.last_request > EXIT_AFTER_IDLE_S:
                self.stopping.set()

    # -- requests ---------------------------------------------------------------------------------------------

    def _handle(self, connection: socket.socket) -> None:
        try:
            connection.settimeout(REQUEST_TIMEOUT_S)
            received = b""
            while b"\n" not in received:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                received += chunk
            line, _, rest = received.partition(b"\n")
            connection.settimeout(None)
            request = json.loads(line)
            if not isinstance(request, dict) or request.get("v") != PROTOCOL:
                self._answer(connection, {"ok": False, "error": f"the SSH keeper speaks protocol {PROTOCOL}"})
                return
            self.last_request = time.monotonic()
            op = request.get("op")
            if op == "stream":
                self._stream(connection, request, rest)
            elif op == "stats":
                self._answer(connection, self.stats())
            elif op == "stop":
                self._answer(connection, {"ok": True})
                self.stopping.set()
            else:
                self._answer(connection, {"ok": False, "error": f"unknown request {op!r}"})
        except (OSError, ValueError) as exc:
            log.info("a request failed: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    @staticmethod
    def _answer(connection: socket.socket, answer: dict[str, Any]) -> None:
        connection.sendall(json.dumps(answer).encode() + b"\n")

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"ok": True, "pid": os.getpid(), "kept": sorted(self.kept), "relaying": self.relaying,
                    "cpu_s": time.process_time(), **self.counts}

    def _entry(self, request: dict[str, Any]) -> Kept:
        key = connection_key(request)
        fields = request["host"]
        name = str(fields["name"])
        idle_s = float(request.get("idle") or 0)
        with self.lock:
            entry = self.kept.get(name)
            if entry is not None and entry.key == key:
                entry.idle_s = idle_s
                return entry
            stale = entry
            host = Host(name=name, address=str(fields["address"]), port=int(fields["port"]), user=fields.get("user"),
                        identity_file=fields.get("identity_file"), known_hosts=fields.get("known_hosts"),
                        agent_linger=fields.get("agent_linger"))
            known_hosts = request.get("known_hosts")
            transport = SshTransport(host, accept_new_host_keys=bool(request.get("accept_new_host_keys")),
                                     known_hosts=Path(known_hosts) if known_hosts else None,
                                     connect_timeout=float(request.get("connect_timeout") or 10.0))
            entry = self.kept[name] = Kept(key, transport, idle_s)
        if stale is not None:
            log.info("%s: its inventory entry or SSH files changed: a new connection", name)
            stale.transport.close()
        return entry

    def _open(self, entry: Kept, stream: str) -> paramiko.Channel:
        with entry.lock:  # one connection per host, however many ask at once
            reused = entry.transport.connected()
            if not reused:
                self._count("connections")
            try:
                channel = entry.transport.open_stream(stream, REUSED_OPEN_TIMEOUT_S if reused else None)
            except TransportError:
                if not reused:
                    raise
                log.info("%s: its kept connection did not answer: a new one", entry.transport.host.name)
                entry.transport.close()
                self._count("connections")
                channel = entry.transport.open_stream(stream)
                reused = False
            if not reused:
                entry.transport.set_keepalive(KEPT_KEEPALIVE_S)
            entry.streams += 1
            return channel

    def _stream(self, connection: socket.socket, request: dict[str, Any], rest: bytes) -> None:
        stream = request.get("stream")
        if not isinstance(stream, str) or not isinstance(request.get("host"), dict):
            self._answer(connection, {"ok": False, "error": "a stream request names a host and a socket path"})
            return
        try:
            entry = self._entry(request)
        except (KeyError, TypeError, ValueError) as exc:
            self._answer(connection, {"ok": False, "error": f"a malformed host in the request: {exc}"})
            return
        try:
            channel = self._open(entry, stream)
        except StreamRefused as exc:
            self._count("refused")
            self._answer(connection, {"ok": False, "refused": True, "error": str(exc)})
            return
        except FarmError as exc:
            self._count("unreachable")
            with self.lock:
                if self.kept.get(entry.transport.host.name) is entry:
                    del self.kept[entry.transport.host.name]
            entry.transport.close()
            self._answer(connection, {"ok": False, "unreachable": True, "error": str(exc)})
            return
        self._count("streams")
        with self.lock:
            self.relaying += 1
        try:
            self._answer(connection, {"ok": True})
            _relay(connection, channel, rest)
        finally:
            with self.lock:
                self.relaying -= 1
            entry.streams -= 1
            entry.last_used = time.monotonic()


def _relay(connection: socket.socket, channel: paramiko.Channel, rest: bytes) -> None:
    """Bytes both ways until the caller is done.

    The caller speaks first and closes when it has its answers (an agent's session is request and
    reply), so its EOF ends the stream: the channel is closed at once, which ends the agent's input
    on the host, without an EOF each way first. The host ending first (a stale agent closing) is
    passed on as EOF to the caller.
    """

    def outbound() -> None:
        try:
            while data := channel.recv(65536):
                connection.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_WR)

    host = threading.Thread(target=outbound, daemon=True)
    host.start()
    try:
        if rest:
            channel.sendall(rest)
        while data := connection.recv(65536):
            channel.sendall(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        channel.close()
        host.join()


def main(argv: list[str]) -> int:
    # FOR: the cache folder it serves, only so that its command line tells whose it is (tests, labs).
    if len(argv) not in (1, 2):
        print("usage: python -m orchestrator.transport.keeper SOCKET [FOR]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)  # not a line per handshake
    return Keeper(Path(argv[0])).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
