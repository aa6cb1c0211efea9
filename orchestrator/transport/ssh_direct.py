"""A host reached without a gateway: resolved the way fabric resolves it, connected by paramiko directly.

A fabric ``Connection`` builds its own ``Config`` (reading the SSH and fabric config files) and
writes each of its settings through invoke's config layers, each write a merge of every layer:
1 ms of controller CPU per connection, a fifth of a whole handshake, for a result that is the
same for every host of an inventory. Here the files are read once while unchanged, and each
host costs one ``SSHConfig.lookup``. Hosts behind a ``ProxyJump`` or ``ProxyCommand``, and a
fabric config that names an authentication strategy, still go through ``Connection``
(``transport/ssh.py``), which knows how to open the hops.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config

# What fabric's Config reads (its own files in every format it loads, and the SSH client config files).
_FABRIC_FILES = [f"{prefix}.{suffix}" for prefix in ("/etc/fabric", "~/.fabric")
                 for suffix in ("yaml", "yml", "json", "py")]
_SSH_FILES = ["~/.ssh/config", "/etc/ssh/ssh_config"]

_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], _Settings] | None = None


@dataclass(frozen=True)
class _Settings:
    """What ``resolve`` reads of fabric's Config, read out once: each attribute of an invoke config is a
    walk through its layers (0.1 ms for the handful a connection needs)."""

    ssh_config: paramiko.SSHConfig
    connect_kwargs: dict[str, Any]
    port: int
    user: str
    needs_fabric: bool  # a gateway or an authentication strategy in fabric's own config

    @classmethod
    def read(cls, config: Config) -> _Settings:
        return cls(config.base_ssh_config, dict(config.connect_kwargs), int(config.port), config.user,
                   bool(config.gateway) or getattr(config.authentication, "strategy_class", None) is not None)


@functools.lru_cache(maxsize=8)
def _expanded(home: str | None) -> tuple[str, ...]:
    # Checked for every connection: expanduser per file (a walk through os.environ) cost more than the stat.
    return tuple(os.path.expanduser(name) for name in _FABRIC_FILES + _SSH_FILES)


def _identity() -> tuple[Any, ...]:
    home = os.environ.get("HOME")
    found: list[Any] = [home, os.environ.get("FABRIC_RUNTIME_SSH_PATH")]
    for path in _expanded(home):
        try:
            info = os.stat(path)
        except OSError:
            found.append(None)
            continue
        found.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(found)


def _settings() -> _Settings:
    """fabric's Config with its files loaded, read out once while none of them changes."""
    global _cached
    identity = _identity()
    with _lock:
        if _cached is None or _cached[0] != identity:
            _cached = (identity, _Settings.read(Config()))
        return _cached[1]


@dataclass
class DirectLink:
    """What the transport uses of a fabric Connection: where it goes, its paramiko client and transport."""

    host: str
    port: int
    user: str
    ssh_config: dict[str, Any]
    connect_kwargs: dict[str, Any]
    connect_timeout: int
    client: paramiko.SSHClient = field(default_factory=paramiko.SSHClient)
    transport: paramiko.Transport | None = None
    gateway: None = None

    def open(self) -> None:
        kwargs = {k: v for k, v in self.connect_kwargs.items() if not (k == "key_filename" and not v)}
        self.client.connect(hostname=self.host, port=self.port, username=self.user, timeout=self.connect_timeout,
                            **kwargs)
        self.transport = self.client.get_transport()

    def close(self) -> None:
        self.client.close()
        self.transport = None


def resolve(address: str, user: str | None, port: int | None, connect_timeout: int) -> DirectLink | None:
    """The link fabric's ``Connection(address, user=user, port=port)`` would open, or None where the host needs
    fabric itself (a gateway, an authentication strategy) or the address is fabric's user@host:port shorthand."""
    if "@" in address or address.count(":") == 1:
        return None  # shorthand: fabric parses it (and refuses it beside user or port)
    config = _settings()
    if config.needs_fabric:
        return None
    ssh_config = config.ssh_config.lookup(address)
    if "proxyjump" in ssh_config or "proxycommand" in ssh_config:
        return None
    keys: list[str] = []
    for value in (config.connect_kwargs.get("key_filename") or [], ssh_config.get("identityfile") or []):
        keys.extend([value] if isinstance(value, (str, Path)) else value)
    kwargs = dict(config.connect_kwargs)
    if keys:
        kwargs["key_filename"] = [str(k) for k in keys]
    return DirectLink(host=ssh_config.get("hostname", address),
                      port=port or int(ssh_config.get("port", config.port)),
                      user=user or ssh_config.get("user", config.user),
                      ssh_config=ssh_config, connect_kwargs=kwargs, connect_timeout=connect_timeout)
