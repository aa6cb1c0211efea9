"""An error in an Ansible inventory: the file, the line, the variable, and that it was read as Ansible's."""

from __future__ import annotations

from ...errors import InputError


class AnsibleInventoryError(InputError):
    """``hosts.ini:7: Ansible INI inventory: host 'web1': variable 'ansible_port': ...``.

    ``field`` holds the variable's name, so code that handles any InputError still finds it.
    """

    def __init__(self, path: str, kind: str, problem: str, *, line: int | None = None,
                 variable: str | None = None, host: str | None = None, expected: str | None = None) -> None:
        super().__init__(path, problem, line=line, field=variable, expected=expected)
        self.kind = kind
        self.host = host
        parts = [f"{path}:{line}" if line else str(path), kind]
        if host:
            parts.append(f"host '{host}'")
        if variable:
            parts.append(f"variable '{variable}'")
        text = ": ".join([*parts, problem])
        if expected:
            text += f" (expected {expected})"
        self.args = (text,)

    def __str__(self) -> str:
        return str(self.args[0])
