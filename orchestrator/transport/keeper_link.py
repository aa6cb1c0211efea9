"""The controller's side of the SSH keeper (``keeper.py``): where it listens, how to ask it for a stream.

A check reaches each host's lingering agent (agent/linger.py) through a ``direct-streamlocal`` channel.
Opened on a new SSH connection, that channel costs the controller a whole handshake (key exchange,
host key check, authentication: 5-7 ms of CPU per host here, as much as the check's own work), and
the host's sshd a new session process. The keeper is a process of the controller's user that holds
the connections open between checks, as OpenSSH's ``ControlMaster``/``ControlPersist`` does: the
next check asks it over a Unix socket for a stream to the same agent, and it opens a channel on the
connection it has. Its connections are made by ``SshTransport`` in the keeper, with the same host
key checks, keys and errors as a check's own.

Nothing waits for the keeper: where none listens, the first check that wants one starts it in the
background and goes on as before, over its own connection; the next check finds it.
``FARM_SSH_KEEPER=0`` turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StreamRefused, TransportError
from ..inventory import Host

KEEPER_ENV = "FARM_SSH_KEEPER"
FOLDER = "ssh-keeper"
SHORT_FOLDER = "/tmp/farm-ssh-keeper-{uid}"
MAX_SOCKET_PATH = 107
PROTOCOL = 1
# The keeper may have to connect first (a host it holds no connection to): its reply may take a handshake.
REPLY_MARGIN_S = 5.0

_spawn_lock = threading.Lock()
_spawned: dict[str, float] = {}  # socket path -> when this process last started a keeper for it
RESPAWN_AFTER_S = 60.0  # a keeper that went away (stopped, idle) is started again, but not for every host

# Files whose change makes another keeper: one started from older code must not serve newer callers.
_CODE_FILES = ("keeper.py", "keeper_link.py", "ssh.py", "ssh_direct.py", "streamlocal.py")


def enabled() -> bool:
    return os.environ.get(KEEPER_ENV, "1").strip().lower() not in ("0", "no", "off", "false")


def _cache_folder() -> Path:
    return _cache_folder_for(os.environ.get("FARM_CACHE_DIR"), os.environ.get("XDG_CACHE_HOME"),
                             os.environ.get("HOME"))


@functools.lru_cache(maxsize=16)
def _cache_folder_for(farm_cache: str | None, xdg_cache: str | None, home: str | None) -> Path:
    # Asked per host of a check: platformdirs reads the environment it is keyed on here.
    if farm_cache:
        return Path(farm_cache)
    import platformdirs  # only here: the CLI's short commands never need it

    return Path(platformdirs.user_cache_dir("farm"))


def keeper_name() -> str:
    """One keeper per interpreter, code, home, cache folder and ssh-agent: what its connections depend on."""
    return _name(os.environ.get("HOME"), os.environ.get("SSH_AUTH_SOCK"), str(_cache_folder()))


@functools.lru_cache(maxsize=16)
def _name(home: str | None, agent_socket: str | None, cache: str) -> str:
    # Cached per process: its code does not change under it, whatever happens to the files.
    import paramiko  # already imported by every caller (the SSH transport)

    here = Path(__file__).parent
    parts: list[Any] = [sys.executable, home, agent_socket, cache, paramiko.__version__, PROTOCOL]
    for name in _CODE_FILES:
        try:
            info = (here / name).stat()
            parts.append((name, info.st_size, info.st_mtime_ns))
        except OSError:
            parts.append((name, None))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def socket_path(name: str | None = None) -> Path:
    """Under the cache folder; where that is too long for a Unix socket path, a private folder of /tmp."""
    return _socket_path(name or keeper_name(), _cache_folder())


@functools.lru_cache(maxsize=16)
def _socket_path(name: str, cache: Path) -> Path:
    path = cache / FOLDER / f"{name}.sock"
    if len(str(path).encode()) <= MAX_SOCKET_PATH:
        return path
    return Path(SHORT_FOLDER.format(uid=os.getuid())) / f"{name}.sock"


def host_request(host: Host, known_hosts: Path | None, accept_new_host_keys: bool,
                 connect_timeout: float) -> dict[str, Any]:
    """What the keeper needs to connect to ``host`` exactly as this controller would.

    ``known_hosts`` is the file this controller chose (the caller's, else the inventory's); the inventory's is
    then left out, as the chosen one wins: a CLI run given ``--known-hosts`` and a caller whose inventory names
    the same file reach the same kept connection, not one each.
    """
    return {"host": {"name": host.name, "address": host.address, "port": host.port, "user": host.user,
                     "identity_file": host.identity_file,
                     "known_hosts": None if known_hosts else host.known_hosts, "agent_linger": host.agent_linger},
            "known_hosts": str(known_hosts) if known_hosts else None,
            "accept_new_host_keys": accept_new_host_keys, "connect_timeout": connect_timeout}


def open_kept_stream(request: dict[str, Any], stream: str, idle_s: int) -> tuple[socket.socket, bytes] | None:
    """A stream to the Unix socket ``stream`` on the host, relayed by the keeper over its kept connection.

    None where no keeper listens (one is started for the next check) or it cannot be asked: the caller
    then opens the stream itself. StreamRefused where the host refused the stream, TransportError where
    the keeper could not reach the host (the same message a check's own connection would give).
    The socket comes with what was read past the keeper's answer: the stream's first bytes, if any.
    """
    path = socket_path()
    connection = _connect(path)
    if connection is None:
        _spawn(path)
        return None
    timeout = float(request.get("connect_timeout") or 10.0) * 2 + REPLY_MARGIN_S
    try:
        connection.settimeout(timeout)
        message = {"v": PROTOCOL, "op": "stream", "stream": stream, "idle": idle_s, **request}
        connection.sendall(json.dumps(message).encode() + b"\n")
        reply, rest = _read_line(connection)
        connection.settimeout(None)
    except OSError:
        connection.close()
        return None  # a keeper going away (stale, stopped) while asked: the caller's own way still works
    try:
        answer = json.loads(reply)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        connection.close()
        return None
    if answer.get("ok") is True:
        return connection, rest
    connection.close()
    error = str(answer.get("error") or "the SSH keeper gave no reason")
    if answer.get("refused"):
        raise StreamRefused(error)
    if answer.get("unreachable"):
        raise TransportError(error)
    return None  # anything else the keeper could not do is the caller's to try


def ask(op: str, path: Path | None = None, timeout: float = 5.0) -> dict[str, Any] | None:
    """A one-line request to a running keeper (``stats``, ``stop``); None where none listens."""
    connection = _connect(path or socket_path())
    if connection is None:
        return None
    with connection:
        try:
            connection.settimeout(timeout)
            connection.sendall(json.dumps({"v": PROTOCOL, "op": op}).encode() + b"\n")
            answer = json.loads(_read_line(connection)[0])
        except (OSError, ValueError):
            return None
    return answer if isinstance(answer, dict) else None


def stop(path: Path | None = None, wait_s: float = 10.0) -> bool:
    """Ask the running keeper to stop and wait until it has (its connections closed); False if none ran."""
    stats = ask("stats", path)
    if stats is None or ask("stop", path) is None:
        return False
    deadline = time.monotonic() + wait_s
    while _running(int(stats["pid"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _running(pid: int) -> bool:
    """Alive and not a zombie (a keeper this process started stays one until this process reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cpu_seconds(path: Path | None = None) -> float:
    """CPU seconds the running keeper has used, every thread's (0 where none runs): a controller's CPU per
    check must count its keeper's too. Asked of the keeper: its process clock is exact, /proc's ticks are not."""
    answer = ask("stats", path)
    return float(answer.get("cpu_s") or 0.0) if answer else 0.0


def _connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        return None
    return connection


def _read_line(connection: socket.socket) -> tuple[bytes, bytes]:
    """The keeper's answer line, and whatever came after it (the stream's, for the caller)."""
    received = b""
    while b"\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionResetError("the SSH keeper closed the connection")
        received += chunk
    line, _, rest = received.partition(b"\n")
    return line, rest


def _spawn(path: Path) -> None:
    """Start a keeper for ``path`` in its own session, once per process; it exits by itself when idle."""
    key, now = str(path), time.monotonic()
    with _spawn_lock:
        if now - _spawned.get(key, -RESPAWN_AFTER_S) < RESPAWN_AFTER_S:
            return
        _spawned[key] = now
    from agent.linger import _private_folder_ok  # the agent's check of a private folder, shared

    if not _private_folder_ok(str(path.parent)):
        return
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(path.with_suffix(".log"), "ab") as log:
        subprocess.Popen([sys.executable, "-m", "orchestrator.transport.keeper", str(path), str(_cache_folder())],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", env=env,
                         start_new_session=True, close_fds=True)
