"""Which lingering agent (agent/linger.py) this controller may reach on a host, and where its socket is.

The daemon's name is a digest of everything that makes the agent process what it is: the host's
address and login, the interpreter, the inventory's environment, the workdir and the agent's own
hash. Any change gives a new name, so a contact never reaches a daemon started for another setup.
Where each daemon's socket lies (an absolute path on the host, which only the agent knows) is kept
in a small file per controller user: ``$FARM_CACHE_DIR`` or the platform's cache folder,
``lingering-agents.json``. Losing it costs one Python start per host, nothing else.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from .deploy import build_agent
from .inventory import Host

CACHE_ENV = "FARM_CACHE_DIR"
LINGER_ENV = "FARM_AGENT_LINGER"
DEFAULT_LINGER_SECONDS = 900
FILE_NAME = "lingering-agents.json"
KEEP = 4096  # entries: a large lab under a few setups
# In the book instead of a socket: the host's sshd forbids streams to sockets (AllowStreamLocalForwarding no),
# so its agent is not asked to linger. Asked again a day later: the host's configuration may have changed.
PROHIBITED = "!prohibited@"
PROHIBITED_FOR_S = 86400


def linger_seconds(host: Host) -> int:
    """How long the host's agent stays after a check: the inventory's ``agent_linger``, else
    ``$FARM_AGENT_LINGER``, else 15 minutes; 0 turns it off."""
    if host.agent_linger is not None:
        return host.agent_linger
    text = os.environ.get(LINGER_ENV, "").strip()
    if text:
        try:
            return max(0, int(text))
        except ValueError:
            pass  # a malformed variable is the default, as an unset one
    return DEFAULT_LINGER_SECONDS


def daemon_name(host: Host) -> str:
    parts = [host.transport, host.address, host.port, host.user, host.python, sorted(host.env), host.workdir,
             build_agent().sha256]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def prohibited_mark() -> str:
    return f"{PROHIBITED}{int(time.time())}"


def still_prohibited(entry: str | None) -> bool:
    if not entry or not entry.startswith(PROHIBITED):
        return False
    try:
        return time.time() - int(entry[len(PROHIBITED):]) < PROHIBITED_FOR_S
    except ValueError:
        return False


class SocketBook:
    """Daemon name -> its socket path on the host; read once per process, written back once if changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, str] | None = None
        self._changed: dict[str, str | None] = {}
        self._loaded_from: Path | None = None

    def path(self) -> Path:
        return _book_path(os.environ.get(CACHE_ENV), os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))

    def _read(self) -> dict[str, str]:
        try:
            found = json.loads(self.path().read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(found, dict) else {}

    def _loaded(self) -> dict[str, str]:
        # The file follows $FARM_CACHE_DIR and $HOME, which may change in one process (tests): a new path is a
        # new book.
        where = self.path()
        if self._entries is None or where != self._loaded_from:
            self._entries, self._changed, self._loaded_from = self._read(), {}, where
        return self._entries

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._loaded().get(name)

    def put(self, name: str, socket_path: str) -> None:
        self._set(name, socket_path)

    def forget(self, name: str) -> None:
        self._set(name, None)

    def _set(self, name: str, socket_path: str | None) -> None:
        with self._lock:
            entries = self._loaded()
            if entries.get(name) == socket_path:
                return
            if socket_path is None:
                entries.pop(name, None)
            else:
                entries[name] = socket_path
            self._changed[name] = socket_path

    def flush(self) -> None:
        """Write this process's changes over what is on disk now (another controller's included). Never raises."""
        with self._lock:
            if not self._changed or self._loaded_from is None:
                return
            entries = self._read()
            for name, socket_path in self._changed.items():
                entries.pop(name, None)
                if socket_path is not None:
                    entries[name] = socket_path
            while len(entries) > KEEP:
                entries.pop(next(iter(entries)))
            target = self._loaded_from
            temporary = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary.write_text(json.dumps(entries))
                os.replace(temporary, target)
            except OSError:
                temporary.unlink(missing_ok=True)
                return
            self._changed.clear()
            self._entries = entries


@functools.lru_cache(maxsize=16)
def _book_path(farm_cache: str | None, xdg_cache: str | None, home: str | None) -> Path:
    # Asked per host of a check: platformdirs reads the environment it is keyed on here.
    if farm_cache:
        return Path(farm_cache) / FILE_NAME
    import platformdirs  # only here: the CLI's short commands never need it

    return Path(platformdirs.user_cache_dir("farm")) / FILE_NAME


SOCKETS = SocketBook()
atexit.register(SOCKETS.flush)
