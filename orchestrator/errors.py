"""Errors a user can act on: the CLI prints them as one paragraph, no traceback."""

from __future__ import annotations


class FarmError(Exception):
    """Something the user can fix; ``str()`` is the whole message.

    ``exit_code`` is what `farm` exits with when the error reaches the top (orchestrator/exit_codes.py):
    2, a usage or input error, unless a subclass says the farm's infrastructure failed (4).
    """

    exit_code = 2


class InputError(FarmError):
    """A file the user gave us is wrong: says which file, line and field."""

    def __init__(self, path: str, problem: str, *, line: int | None = None, field: str | None = None,
                 expected: str | None = None) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        self.expected = expected
        where = f"{path}:{line}" if line else str(path)
        text = f"{where}: {problem}"
        if field:
            text = f"{where}: field '{field}': {problem}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class StoreError(FarmError):
    """The results database cannot be used as asked: unreachable or broken (4), or a URL that is wrong (2)."""

    exit_code = 4

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        if usage:  # the URL itself is wrong: the user's input, not the infrastructure
            self.exit_code = 2


class TransportError(FarmError):
    """A host cannot be reached or stopped answering."""

    exit_code = 4


class AgentTimeout(TransportError):
    """The agent is running (or its process is) but gave no answer in time: asking again would wait again."""


class StreamRefused(TransportError):
    """The host is reachable but would not give a stream to a Unix socket: nobody listens there, or its sshd
    forbids forwarding. A lingering agent's caller starts the agent instead."""


class InfrastructureError(FarmError):
    """The machine farm runs on failed it (a full disk, an unwritable data folder, a database error)."""

    exit_code = 4
