"""The SSH transport: one persistent connection per host, through fabric and paramiko.

Fabric resolves the target the way OpenSSH would (``~/.ssh/config`` aliases,
``HostName``, ``Port``, ``User``, ``IdentityFile``, ``ProxyJump``); paramiko then
carries every command, the SFTP session and the agent's channel over the one
connection, so a command costs a channel round trip, not a handshake.

Only keys authenticate (the inventory's key file, ``ssh-agent``, or the default
``~/.ssh/id_*`` when no key is named); passwords are never sent or asked for.
Host keys are checked against a known_hosts file (the caller's, else the one the
inventory names for the host, else ``UserKnownHostsFile`` from ``~/.ssh/config``,
else ``~/.ssh/known_hosts``), and also against the system's read-only files
(``GlobalKnownHostsFile``, default ``/etc/ssh/ssh_known_hosts`` and
``/etc/ssh/ssh_known_hosts2``), the way OpenSSH's
``StrictHostKeyChecking accept-new`` does when the user opts in, and ``yes``
otherwise: an unknown key is refused unless accepted, a changed key always.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import hashlib
import logging
import math
import os
import posixpath
import select
import shlex
import socket
import stat
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from ..agent_linger import linger_seconds
from ..errors import AgentTimeout, StreamRefused, TransportError
from ..inventory import Host
from . import keeper_link, ssh_direct
from .base import AgentChannel, CommandResult, Transport
from .local import UnixSocketChannel
from .ssh_direct import DirectLink
from .streamlocal import StreamLocalRefused, open_streamlocal

KEEPALIVE_SECONDS = 5
# How often an open connection's reader thread wakes when nothing arrives (its socket's timeout), to look
# for a close, a keepalive or a rekey due. paramiko's 0.1 s, kept for the handshake (its banner and auth
# timeouts are looked at on those wakes), cost the SSH keeper 0.6 ms of CPU per second per idle connection
# (37 ms/s for 60; bench/ssh_farm.py), taken from every check that ran meanwhile. Data that arrives wakes
# the thread at once whatever this is, and a close does not wait for it (_FarmTransport.close).
IDLE_POLL_S = 1.0
KEPT_POLL_S = 5.0  # the longest: a keepalive is then at most this late
# With keepalives flowing every 5 s, unacknowledged data for this long means the
# link is dead: the kernel then fails the socket instead of retrying for minutes.
TCP_USER_TIMEOUT_MS = 10_000
READ_SIZE = 65536
# A read waiting for the agent wakes this often to drain stderr (an idle lane: one cheap wake a second).
STDERR_DRAIN_S = 1.0

GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"  # OpenSSH's default GlobalKnownHostsFile
log = logging.getLogger(__name__)

# Paramiko logs every failed handshake with a traceback from its own thread; with no logging
# configured Python would print it on stderr. The failure reaches the user as one TransportError.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class SshTransport(Transport):
    def __init__(self, host: Host, *, accept_new_host_keys: bool = False, known_hosts: Path | None = None,
                 connect_timeout: float = 10.0) -> None:
        super().__init__(host)
        self.accept_new_host_keys = accept_new_host_keys
        # The caller's file (a command line's --known-hosts) wins over the one the inventory names for the host.
        chosen = known_hosts or host.known_hosts or "~/.ssh/known_hosts"
        self.known_hosts = Path(chosen).expanduser()
        # Without either, ~/.ssh/config's UserKnownHostsFile decides once the host's ssh config is read (_connect).
        self.known_hosts_chosen = bool(known_hosts or host.known_hosts)
        self.system_known_hosts: list[Path] = []
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._connection: Connection | DirectLink | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.target = host.address  # "addr:port" once resolved, for messages
        self.identity_files: list[str] = []  # the key files offered, in order, for messages

    # -- connection -------------------------------------------------------------------------------------------

    def _transport(self) -> paramiko.Transport:
        """The live paramiko transport, connecting on first use and after a dropped link."""
        with self._lock:
            connection = self._connection
            if connection is not None and connection.transport is not None and connection.transport.is_active():
                return connection.transport
            self._drop()
            self._connection = self._connect()
            assert self._connection.transport is not None
            return self._connection.transport

    def _connect(self) -> Connection | DirectLink:
        host = self.host
        # Port 22 is also the inventory's default, so it must not override a Port from ~/.ssh/config.
        port, timeout = host.port if host.port != 22 else None, max(1, math.ceil(self.connect_timeout))
        connection: Connection | DirectLink | None
        try:
            connection = ssh_direct.resolve(host.address, host.user, port, timeout)
            if connection is None:
                connection = Connection(host.address, user=host.user, port=port, config=Config(),
                                        connect_timeout=timeout)
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise TransportError(f"{host.name}: cannot resolve '{host.address}' through your SSH configuration "
                                 f"(~/.ssh/config, /etc/ssh/ssh_config): {exc}") from None
        self.target = f"{connection.host}:{connection.port}"
        if connection.host != host.address:
            self.target += f" (ssh config alias {host.address})"
        self._known_hosts_from_config(connection)
        log.info("%s: connecting to %s as %s; host keys from %s%s", host.name, self.target, connection.user,
                 self.known_hosts, "".join(f" and {p} (system)" for p in self.system_known_hosts))
        # OpenSSH skips an IdentityFile from ssh config that does not exist; paramiko would fail on it.
        keys = [k for k in map(os.path.expanduser, connection.connect_kwargs.get("key_filename") or [])
                if os.path.isfile(k)]
        if host.identity_file:
            identity = os.path.expanduser(host.identity_file)
            if not os.path.isfile(identity):
                raise TransportError(f"{host.name}: the identity file {identity} named in the inventory does not "
                                     "exist; point identity_file at a private key, or remove it to use ssh-agent.")
            keys.insert(0, identity)
        self.identity_files = keys
        # The first key parsed once per process while its file is unchanged: paramiko would parse it as each
        # key type in turn for every connection. An encrypted key is left to paramiko, which asks the agent.
        first = _private_key(keys[0]) if keys else None
        connection.connect_kwargs.update(
            pkey=first,
            key_filename=(keys[1:] if first is not None else keys) or None,
            # OpenSSH tries the default ~/.ssh/id_* only when no IdentityFile is configured.
            look_for_keys=not keys,
            allow_agent=True,
            banner_timeout=self.connect_timeout,
            auth_timeout=self.connect_timeout,
            transport_factory=_farm_transport,
        )
        connection.connect_kwargs.pop("password", None)
        # Fabric trusts any host key (AutoAddPolicy); every hop, ProxyJump gateways included, must check ours.
        hop: object = connection
        while isinstance(hop, (Connection, DirectLink)):
            self._check_host_keys(hop.client)
            hop = hop.gateway
        if not connection.gateway:
            connection.connect_kwargs["sock"] = self._open_socket(connection.host, connection.port)
        try:
            connection.open()
        except TransportError:
            connection.close()
            raise
        except Exception as exc:  # noqa: BLE001 - paramiko and sockets raise many kinds; all mean "cannot connect"
            connection.close()
            raise self._connect_error(exc, connection) from None
        hop = connection
        while isinstance(hop, (Connection, DirectLink)) and hop.transport is not None:
            hop.transport.set_keepalive(KEEPALIVE_SECONDS)
            with contextlib.suppress(AttributeError, OSError):  # a ProxyCommand or channel may not take one
                hop.transport.sock.settimeout(IDLE_POLL_S)
            if isinstance(hop.transport.sock, socket.socket):  # behind a gateway it is a channel, not TCP
                _tune_socket(hop.transport.sock)
            hop = hop.gateway
        return connection

    def _known_hosts_from_config(self, connection: Connection | DirectLink) -> None:
        """``UserKnownHostsFile`` (the first file is where new keys go, as in OpenSSH) unless the caller or the
        inventory chose a file, and ``GlobalKnownHostsFile`` (read, never written) always."""
        config = getattr(connection, "ssh_config", None) or {}
        user_files = _config_paths(config.get("userknownhostsfile"))
        if user_files and not self.known_hosts_chosen:
            self.known_hosts = user_files[0]
        self.system_known_hosts = [p for p in _config_paths(config.get("globalknownhostsfile") or GLOBAL_KNOWN_HOSTS)
                                   if p != self.known_hosts]

    def _check_host_keys(self, client: paramiko.SSHClient) -> None:
        client.set_missing_host_key_policy(_KnownHostsPolicy(self))
        for system in self.system_known_hosts:
            # Read-only keys paramiko checks besides the user's; a FIFO or directory there is skipped, not waited on.
            if not system.is_file():
                continue
            try:
                client.load_system_host_keys(str(system))
            except (OSError, paramiko.SSHException, paramiko.hostkeys.InvalidHostKey) as exc:
                log.warning("%s: cannot read the system known_hosts file %s: %s", self.host.name, system, exc)
        # paramiko opens the file itself: a FIFO there would block the connect (and a new key's save) forever.
        if self.known_hosts.exists() and not self.known_hosts.is_file():
            raise TransportError(f"{self.host.name}: the known_hosts file {self.known_hosts} is not a regular file; "
                                 "give a regular file with --known-hosts or the inventory's known_hosts")
        try:
            _load_known_hosts(client.get_host_keys(), self.known_hosts)
        except FileNotFoundError:
            pass
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.host.name}: cannot read the known_hosts file {self.known_hosts}: "
                                 f"{exc}") from None
        except paramiko.hostkeys.InvalidHostKey as exc:  # not an SSHException: a line paramiko cannot parse
            line = str(exc.args[0])[:120] if exc.args else "?"
            raise TransportError(f"{self.host.name}: the known_hosts file {self.known_hosts} has a line farm's SSH "
                                 f"client cannot use: '{line}'. @cert-authority and @revoked lines are not "
                                 "supported: remove them, or give another --known-hosts") from None

    def _open_socket(self, address: str, port: int) -> socket.socket:
        """Our own TCP socket, so the connect timeout keeps its fractions of a second."""
        try:
            candidates = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TransportError(f"{self.host.name}: cannot connect to {address}:{port}: unknown host name "
                                 f"({exc.strerror}); check the inventory address or your ~/.ssh/config.") from None
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in candidates:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            _tune_socket(sock)
            return sock
        assert last is not None
        raise self._socket_error(last, f"{address}:{port}")

    def _socket_error(self, exc: OSError, where: str) -> TransportError:
        name = self.host.name
        if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
            return TransportError(f"{name}: cannot connect to {where}: connection refused; is sshd running "
                                  "there and listening on that port?")
        if isinstance(exc, TimeoutError):
            return TransportError(f"{name}: cannot connect to {where}: no answer within {self.connect_timeout:g} s; "
                                  "the host may be off, or a firewall drops the connection.")
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return TransportError(f"{name}: cannot connect to {where}: no route to host; is it on this network?")
        return TransportError(f"{name}: cannot connect to {where}: {exc.strerror or exc}")

    def _connect_error(self, exc: BaseException, connection: Connection | DirectLink) -> TransportError:
        name, where = self.host.name, self.target
        if isinstance(exc, paramiko.BadHostKeyException):
            return TransportError(
                f"{name}: the SSH host key of {where} has CHANGED since it was saved in {self.known_hosts} "
                f"(saved {fingerprint(exc.expected_key)}, now {fingerprint(exc.key)}). Either the device was "
                "reinstalled or someone is intercepting the connection; farm refuses to connect. If the change "
                f"is expected, remove the old entry with: ssh-keygen -R '{_known_hosts_name(connection)}' "
                f"-f {self.known_hosts}, then connect again with --accept-new-host-keys.")
        if isinstance(exc, paramiko.AuthenticationException):
            tried = [f"identity file {k}" for k in self.identity_files]
            tried += ["ssh-agent"] + ([] if tried else ["the default keys in ~/.ssh"])
            return TransportError(
                f"{name}: {connection.user}@{where} refused our SSH keys (tried {', '.join(tried)}). farm never "
                "uses passwords: add the public key to that user's ~/.ssh/authorized_keys, or set identity_file "
                "in the inventory.")
        if isinstance(exc, paramiko.SSHException) and "No authentication methods available" in str(exc):
            return TransportError(
                f"{name}: no SSH key to offer {connection.user}@{where}: the inventory names no identity_file, "
                "ssh-agent is not running (SSH_AUTH_SOCK) or holds no key, and ~/.ssh has no id_* key. farm never "
                "uses passwords.")
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            first = next(iter(exc.errors.values()))
            return self._socket_error(first, where)
        if isinstance(exc, OSError):
            return self._socket_error(exc, where)
        if isinstance(exc, paramiko.SSHException) and "banner" in str(exc):
            return TransportError(f"{name}: {where} accepted the connection but did not answer as an SSH server "
                                  f"within {self.connect_timeout:g} s; is that the right port, and is sshd healthy?")
        return TransportError(f"{name}: SSH connection to {where} failed: {exc or type(exc).__name__}")

    def _lost(self, exc: BaseException, doing: str) -> TransportError:
        """A failure on an open connection: if the link itself is gone, drop it so the next call reconnects."""
        detail = str(exc) or type(exc).__name__
        if self._is_active():
            # The server refused one channel (e.g. MaxSessions); the link and its other channels are fine.
            return TransportError(f"{self.host.name}: {doing} on {self.target} failed: {detail}")
        with self._lock:
            self._drop()
        return TransportError(f"{self.host.name}: SSH connection to {self.target} was lost while {doing}: {detail}")

    def _drop(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken session may fail in any way
                pass
            self._sftp = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- commands ---------------------------------------------------------------------------------------------

    def command_line(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        """The shell line for ``argv``: every word quoted, the environment as an ``env`` prefix.

        An ``env`` prefix rather than SSH ``setenv`` requests because sshd drops
        variables not listed in its ``AcceptEnv``, silently.
        """
        if not argv:
            raise ValueError("empty command")
        variables = {**self.host.env_dict, **(env or {})}
        words = ["env", *(f"{k}={v}" for k, v in variables.items())] if variables else []
        return shlex.join(words + list(argv))

    def _open_channel(self, argv: list[str], env: dict[str, str] | None) -> paramiko.Channel:
        transport = self._transport()
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(self.command_line(argv, env))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc, f"starting {argv[0]}") from None
        return channel

    def run(self, argv: list[str], *, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> CommandResult:
        channel = self._open_channel(argv, env)
        deadline = None if timeout is None else time.monotonic() + timeout
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        try:
            channel.shutdown_write()  # the command's stdin is empty, as with the local transport
            while True:
                while channel.recv_ready():
                    stdout.append(channel.recv(READ_SIZE))
                while channel.recv_stderr_ready():
                    stderr.append(channel.recv_stderr(READ_SIZE))
                if channel.eof_received or channel.closed:
                    if not channel.recv_ready() and not channel.recv_stderr_ready():
                        break
                    continue
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    raise TransportError(f"{self.host.name}: command timed out after {timeout} s: {argv[0]}")
                if not self._is_active():
                    raise EOFError("connection closed")
                select.select([channel], [], [], wait)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not channel.status_event.wait(remaining):
                raise TransportError(f"{self.host.name}: command timed out after {timeout} s: {argv[0]}")
            code = channel.exit_status
            if code == -1 and not self._is_active():
                raise EOFError("connection closed before the exit status came")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc, f"running {argv[0]}") from None
        finally:
            channel.close()
        return CommandResult(code, b"".join(stdout).decode("utf-8", "replace"),
                             b"".join(stderr).decode("utf-8", "replace"))

    def _is_active(self) -> bool:
        connection = self._connection
        return bool(connection and connection.transport and connection.transport.is_active())

    def start(self, argv: list[str], *, env: dict[str, str] | None = None) -> AgentChannel:
        return SshChannel(self._open_channel(argv, env), self.host.name)

    def connect_socket(self, path: str) -> AgentChannel:
        """Through the SSH keeper's kept connection where it has one (keeper_link.py), else over this one."""
        if self._connection is None and keeper_link.enabled():
            seconds = linger_seconds(self.host)
            request = keeper_link.host_request(self.host, self.known_hosts if self.known_hosts_chosen else None,
                                               self.accept_new_host_keys, self.connect_timeout)
            kept = keeper_link.open_kept_stream(request, path, seconds) if seconds else None
            if kept is not None:
                return KeptStreamChannel(*kept, self.host.name)
        return SocketStreamChannel(self.open_stream(path), self.host.name)

    def open_stream(self, path: str, timeout: float | None = None) -> paramiko.Channel:
        """A ``direct-streamlocal`` channel to the Unix socket ``path`` on the host (connecting if need be)."""
        transport = self._transport()
        try:
            return open_streamlocal(transport, path, timeout=timeout or self.connect_timeout)
        except StreamLocalRefused as exc:
            raise StreamRefused(f"{self.host.name}: no stream to {path}: {exc}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc, f"opening a stream to {path}") from None

    def connected(self) -> bool:
        """Whether a live connection is open now (none is made to tell)."""
        with self._lock:
            return self._is_active()

    def set_keepalive(self, seconds: int) -> None:
        """A keepalive every ``seconds`` idle; a connection kept long and idle (the keeper's) polls less."""
        with self._lock:
            if self._is_active():
                assert self._connection is not None and self._connection.transport is not None
                transport = self._connection.transport
                transport.set_keepalive(seconds)
                poll_s = min(KEPT_POLL_S, max(IDLE_POLL_S, seconds / 6))
                with contextlib.suppress(AttributeError, OSError):
                    transport.sock.settimeout(poll_s)

    # -- files ------------------------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        transport = self._transport()
        with self._lock:
            if self._sftp is None or self._sftp.sock.closed:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise self._lost(exc, "opening SFTP") from None
                if self._sftp is None:
                    raise TransportError(f"{self.host.name}: {self.target} offers no SFTP subsystem; "
                                         "enable 'Subsystem sftp' in its sshd_config.")
            return self._sftp

    @staticmethod
    def _remote(path: str) -> str:
        """SFTP starts in the login home: a relative path (or ``~/...``) is relative to it."""
        if path == "~":
            return "."
        return path.removeprefix("~/")

    def _file_error(self, exc: Exception, doing: str, path: str) -> Exception:
        if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
            # Same exception as the local transport, so callers need not care which one they hold.
            return FileNotFoundError(errno.ENOENT, f"{self.host.name}: no such file: {path}", path)
        if isinstance(exc, (EOFError, paramiko.SSHException)) or not self._is_active():
            return self._lost(exc, f"{doing} {path}")
        return TransportError(f"{self.host.name}: cannot {doing} {path} on {self.target}: {exc}")

    def put(self, local: Path, remote: str) -> None:
        sftp = self._sftp_client()
        target = self._remote(remote)
        try:
            try:
                sftp.put(str(local), target)
            except FileNotFoundError:
                if not Path(local).exists():
                    raise
                self._makedirs(sftp, posixpath.dirname(target))
                sftp.put(str(local), target)
        except FileNotFoundError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._file_error(exc, "write", remote) from None

    @staticmethod
    def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
        parts = [p for p in directory.split("/") if p]
        path = "/" if directory.startswith("/") else ""
        for part in parts:
            path = posixpath.join(path, part) if path else part
            try:
                if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                    raise NotADirectoryError(errno.ENOTDIR, f"{path} is not a directory", path)
            except FileNotFoundError:
                try:
                    sftp.mkdir(path)
                except OSError:
                    # SFTP v3 reports EEXIST as a bare "Failure": another session sharing this
                    # home may have made it a moment ago, which is fine if it is a directory now.
                    if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                        raise

    def get(self, remote: str, local: Path) -> None:
        sftp = self._sftp_client()
        try:
            sftp.get(self._remote(remote), str(local))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._file_error(exc, "read", remote) from None

    def exists(self, remote: str) -> bool:
        sftp = self._sftp_client()
        try:
            sftp.stat(self._remote(remote))
        except FileNotFoundError:
            return False
        except (OSError, EOFError, paramiko.SSHException) as exc:
            error = self._file_error(exc, "look up", remote)
            if isinstance(error, FileNotFoundError):
                return False
            raise error from None
        return True

    def rename(self, remote_from: str, remote_to: str) -> None:
        sftp = self._sftp_client()
        try:
            # Plain SFTP rename fails when the target exists; the OpenSSH extension is rename(2): atomic, replaces.
            sftp.posix_rename(self._remote(remote_from), self._remote(remote_to))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._file_error(exc, "rename", remote_from) from None


# known_hosts files parsed once per process while unchanged: path -> ((mtime_ns, size, inode), entries).
# paramiko parses the whole file for every connection, 15 ms of CPU for a lab of 250 hosts, once per host:
# the fan-out's controller CPU grew with the square of the lab (README, "Fan-out cost model").
_KNOWN_HOSTS: dict[str, tuple[tuple[int, int, int], list[Any]]] = {}
_KNOWN_HOSTS_LOCK = threading.Lock()


def _load_known_hosts(keys: paramiko.HostKeys, path: Path) -> None:
    """What ``keys.load(path)`` does, from a parse shared by every connection while the file is unchanged."""
    info = path.stat()  # FileNotFoundError: no file, no keys, as with load()
    identity = (info.st_mtime_ns, info.st_size, info.st_ino)
    with _KNOWN_HOSTS_LOCK:
        cached = _KNOWN_HOSTS.get(str(path))
        if cached is None or cached[0] != identity:
            parsed = paramiko.HostKeys()
            parsed.load(str(path))
            cached = _KNOWN_HOSTS[str(path)] = (identity, list(getattr(parsed, "_entries", ())))
    if not hasattr(keys, "_entries"):  # a paramiko without the list it has always kept: parse as before
        keys.load(str(path))
        return
    # Shared entries stay unchanged: farm's policy adds a key only for a host with no entry (a new entry).
    keys._entries.extend(cached[1])


# Private keys parsed once per process while unchanged: path -> ((mtime_ns, size, inode), key or None).
_KEYS: dict[str, tuple[tuple[int, int, int], paramiko.PKey | None]] = {}
_KEYS_LOCK = threading.Lock()


def _private_key(path: str) -> paramiko.PKey | None:
    """The unencrypted private key at ``path``, else None (paramiko then tries the file itself, as before)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    identity = (info.st_mtime_ns, info.st_size, info.st_ino)
    with _KEYS_LOCK:
        cached = _KEYS.get(path)
        if cached is None or cached[0] != identity:
            try:
                key: paramiko.PKey | None = paramiko.PKey.from_path(path)
            except (paramiko.SSHException, OSError, ValueError, TypeError):
                key = None  # encrypted (PasswordRequiredException is an SSHException) or a type paramiko lacks
            cached = _KEYS[path] = (identity, key)
    return cached[1]


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """A host key not in known_hosts: refuse it, or (when the user opted in) save and trust it."""

    def __init__(self, transport: SshTransport) -> None:
        self.transport = transport

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        owner = self.transport
        if not owner.accept_new_host_keys:
            where = hostname[1:].replace("]:", ":", 1) if hostname.startswith("[") else f"{hostname}:22"
            if not owner.target.startswith(where):
                where += f" (a gateway to {owner.target})"
            raise TransportError(
                f"{owner.host.name}: the SSH host key of {where} is unknown: it is not in "
                f"{owner.known_hosts} ({key.get_name()} {fingerprint(key)}). Check that fingerprint on the host "
                "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run again with --accept-new-host-keys to "
                "trust it and save it.")
        client.get_host_keys().add(hostname, key.get_name(), key)
        path = owner.known_hosts
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with path.open("a", encoding="ascii") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as exc:
            raise TransportError(f"{owner.host.name}: cannot save the new host key of {hostname} in "
                                 f"{path}: {exc.strerror or exc}") from None


def _config_paths(value: object) -> list[Path]:
    """An ssh_config file list ("~/.ssh/a %d/.ssh/b", or a list of them) as paths; 'none' means none."""
    if not value:
        return []
    # Every host of an inventory names the same files: shlex and expanduser once per value and home.
    return list(_parsed_paths(tuple(value) if isinstance(value, list) else (value,), str(Path.home())))


@functools.lru_cache(maxsize=64)
def _parsed_paths(items: tuple[object, ...], _home: str) -> tuple[Path, ...]:
    paths = []
    for item in items:
        for word in shlex.split(str(item)):
            if word.lower() == "none":
                continue
            word = word.replace("%d", str(Path.home())).replace("%%", "%")
            paths.append(Path(os.path.expanduser(word)))
    return tuple(paths)


def fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _known_hosts_name(connection: Connection | DirectLink) -> str:
    return connection.host if connection.port == 22 else f"[{connection.host}]:{connection.port}"


class _FarmTransport(paramiko.Transport):
    """paramiko's transport with OpenSSH's client choice of ciphers and MACs, AES-GCM first.

    paramiko prefers AES-CTR with an HMAC, whose tag it compares in Python byte by byte for every
    packet; GCM authenticates inside the cipher, in C: 0.3 ms less controller CPU per connection
    (bench/ssh_farm.py), and less per agent message. OpenSSH has offered it since 6.2 (2013).
    CBC modes, 3DES, MD5 and truncated MACs are not offered, as OpenSSH's own client stopped
    offering them (6.7, 7.4); AES-CTR and the SHA-2 HMACs (OpenSSH 5.9, 2011) stay as fallbacks for
    a server without GCM. Shorter lists are also less Python per handshake: paramiko filters,
    joins and logs each list for every connection (bench/ctrl_cpu.py). Key exchange and host key
    types are paramiko's own (its post-quantum hybrid first where both ends have it).
    """

    _preferred_ciphers = tuple(name for name in (
        "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
    ) if name in paramiko.Transport._cipher_info)
    _preferred_macs = tuple(name for name in (  # used only with CTR: GCM carries its own tag
        "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512",
        "hmac-sha1",
    ) if name in paramiko.Transport._mac_info)

    def close(self) -> None:
        # Shut down first: the reader thread, blocked in recv until its timeout, wakes at once, and the
        # host sees the connection end now (a socket closed under a pending recv is released only after it).
        if self.active and isinstance(self.sock, socket.socket):
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        super().close()

    def _parse_debug(self, m: paramiko.Message) -> None:
        # sshd sends a debug message per authorized_keys option (`restrict`, `from=`...); paramiko escapes
        # each byte by byte in Python to log it, logged or not.
        if self.logger.isEnabledFor(logging.DEBUG):
            super()._parse_debug(m)


def _farm_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    return _FarmTransport(sock, **kwargs)


def _tune_socket(sock: socket.socket) -> None:
    # Small writes (a channel request, one JSON line) must leave at once: with Nagle
    # they wait for the peer's delayed ACK, about 40 ms per round trip.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_SECONDS), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", TCP_USER_TIMEOUT_MS)):
        option = getattr(socket, name, None)
        if option is not None:  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class SshChannel(AgentChannel):
    """A process on the host over one SSH exec channel, read in the caller's thread.

    No reader threads: two per host cost more controller CPU than the request they serve (their start,
    and a hand-off through a queue per line). A read waits in paramiko's own buffer with a timeout, in
    slices of at most ``STDERR_DRAIN_S``, and stderr is drained at every wake: stdout and stderr share the
    channel's window, so stderr that nobody read would in the end stop the agent's replies.
    """

    def __init__(self, channel: paramiko.Channel, host_name: str) -> None:
        self.channel = channel
        self.host_name = host_name
        self._out = _LineSplitter()
        self._lines: deque[bytes] = deque()
        self._err = _LineSplitter()
        self._stderr: deque[str] = deque(maxlen=50)
        self._eof = False

    def _drain_stderr(self) -> None:
        try:
            while self.channel.recv_stderr_ready():
                data = self.channel.recv_stderr(READ_SIZE)
                if not data:
                    break
                self._keep_stderr(self._err.feed(data))
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def _keep_stderr(self, lines: list[bytes]) -> None:
        self._stderr.extend(line.decode("utf-8", "replace").rstrip() for line in lines)

    def send_line(self, line: str) -> None:
        try:
            self.channel.sendall(line.encode("utf-8") + b"\n")
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.host_name}: agent is gone ({exc}); {self.stderr_tail()}") from None

    def read_line(self, timeout: float | None = None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._lines and not self._eof:
            self._drain_stderr()
            wait = STDERR_DRAIN_S if deadline is None else min(STDERR_DRAIN_S, deadline - time.monotonic())
            if wait <= 0:
                raise AgentTimeout(f"{self.host_name}: no answer from the agent in {timeout} s; "
                                   f"{self.stderr_tail()}")
            try:
                self.channel.settimeout(wait)
                data = self.channel.recv(READ_SIZE)
            except TimeoutError:
                continue
            except (OSError, EOFError, paramiko.SSHException):
                data = b""  # the connection died: what came before is all there is
            if data:
                self._lines.extend(self._out.feed(data))
            else:
                self._eof = True
                self._lines.extend(self._out.finish())
        self._drain_stderr()
        if self._lines:
            return self._lines.popleft().decode("utf-8", "replace").rstrip("\r")
        raise TransportError(f"{self.host_name}: {self._why_it_ended()}; {self.stderr_tail()}")

    def _why_it_ended(self) -> str:
        # The exit status follows EOF closely: wait briefly so the message can say it. Stderr came before
        # the EOF (a process that could not start says why there: "can't open file ...").
        self.channel.status_event.wait(2.0)
        self._drain_stderr()
        self._keep_stderr(self._err.finish())
        code = self.channel.exit_status if self.channel.status_event.is_set() else None
        transport = self.channel.get_transport()
        if code not in (None, -1):
            return f"agent exited with code {code}"
        if transport is not None and transport.is_active():
            return "agent was killed by a signal"  # sshd reports that without an exit status
        return "the SSH connection was lost (the host stopped answering, rebooted or closed it)"

    def stderr_tail(self) -> str:
        self._drain_stderr()
        return " | ".join(list(self._stderr)[-5:]) or "(nothing on stderr)"

    def close(self) -> None:
        if not self.channel.closed:
            try:
                self.channel.shutdown_write()  # EOF on stdin: the agent's serve loop ends by itself
                self.channel.status_event.wait(5.0)
            except (OSError, EOFError, paramiko.SSHException):
                pass
        self.channel.close()


class SocketStreamChannel(SshChannel):
    """A lingering agent's session over a ``direct-streamlocal`` channel: no stderr, no exit status."""

    def _why_it_ended(self) -> str:
        transport = self.channel.get_transport()
        if transport is not None and transport.is_active():
            return "the lingering agent closed its socket (it went stale or was stopped)"
        return "the SSH connection was lost (the host stopped answering, rebooted or closed it)"

    def stderr_tail(self) -> str:
        return "(a lingering agent's stderr goes to its log beside its socket)"

    def close(self) -> None:
        try:
            self.channel.shutdown_write()  # EOF: the session's serve loop ends by itself
        except (OSError, EOFError, paramiko.SSHException):
            pass
        self.channel.close()


class KeptStreamChannel(UnixSocketChannel):
    """A lingering agent's session relayed by the SSH keeper: a Unix socket here, a channel of its connection
    there. ``first`` is what arrived with the keeper's answer (nothing, as an agent speaks only when asked)."""

    def __init__(self, connection: socket.socket, first: bytes, host_name: str) -> None:
        super().__init__(connection, host_name)
        self._first = first

    def read_line(self, timeout: float | None = None) -> str:
        if not self._first:
            return super().read_line(timeout)
        if b"\n" in self._first:
            line, _, self._first = self._first.partition(b"\n")
            return line.decode("utf-8", "replace")
        head, self._first = self._first, b""
        return head.decode("utf-8", "replace") + super().read_line(timeout)


class _LineSplitter:
    """Complete lines out of a stream's chunks; at the end, the rest, which may lack its newline.

    Chunks of a long line are joined once, when its end arrives: a result line of
    megabytes must not be rescanned for every 64 KiB that comes in.
    """

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        *complete, rest = data.split(b"\n")
        if complete:
            complete[0] = b"".join([*self._partial, complete[0]])
            self._partial = []
        if rest:
            self._partial.append(rest)
        return complete

    def finish(self) -> list[bytes]:
        rest, self._partial = self._partial, []
        return [b"".join(rest)] if rest else []
