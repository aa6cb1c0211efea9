"""What every transport offers: run a command, move files, keep a process open.

Paths on the host are relative to the login home (SSH and SFTP start there);
the local transport resolves them against the user's home too, so both behave
the same. Commands are argument lists, never shell strings: a transport that
needs a shell quotes every argument itself.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from typing_extensions import Self

from ..inventory import Host


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class AgentChannel(abc.ABC):
    """A long-lived process on the host that speaks JSON lines."""

    @abc.abstractmethod
    def send_line(self, line: str) -> None: ...

    @abc.abstractmethod
    def read_line(self, timeout: float | None = None) -> str:
        """The next line without its newline; TransportError on EOF or timeout."""

    @abc.abstractmethod
    def stderr_tail(self) -> str:
        """What the process wrote on stderr lately, for error messages."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Transport(abc.ABC):
    def __init__(self, host: Host) -> None:
        self.host = host

    @abc.abstractmethod
    def run(self, argv: list[str], *, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> CommandResult: ...

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (relative to the home), creating parents."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None: ...

    @abc.abstractmethod
    def exists(self, remote: str) -> bool: ...

    @abc.abstractmethod
    def rename(self, remote_from: str, remote_to: str) -> None:
        """Atomic rename on the host, for uploads that must never be seen half-written."""

    @abc.abstractmethod
    def start(self, argv: list[str], *, env: dict[str, str] | None = None) -> AgentChannel: ...

    def connect_socket(self, path: str) -> AgentChannel | None:
        """A stream to the Unix socket ``path`` on the host (a lingering agent's), or None if this transport
        has no such stream. TransportError where nobody listens there or the host refuses the stream."""
        return None

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
