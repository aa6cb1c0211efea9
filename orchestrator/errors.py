"""Errors a user can act on: the CLI prints them as one paragraph, no traceback."""

from __future__ import annotations


class FarmError(Exception):
    """Something the user can fix; ``str()`` is the whole message."""


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
    """The results database cannot be used as asked."""


class TransportError(FarmError):
    """A host cannot be reached or stopped answering."""
