"""An inventory directory (``-i inventory/``): every file in it, merged, as Ansible reads one.

Files are read in name order, subdirectories too; ``group_vars/`` and ``host_vars/``
hold variables, not inventories, and backups and notes are skipped by the
extensions Ansible itself skips.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...errors import InputError
from .tree import AnsibleTree

KIND = "Ansible inventory directory"
# Ansible's INVENTORY_IGNORE_EXTS and its default rejected extensions.
IGNORED_ENDINGS = ("~", ".orig", ".bak", ".cfg", ".retry", ".pyc", ".pyo", ".swp", ".rpm", ".md", ".txt", ".rst")
VARS_DIRS = ("group_vars", "host_vars")
MAX_FILES = 1000


def read_directory(directory: Path, read_file: Callable[[Path], AnsibleTree | None]) -> AnsibleTree:
    combined = AnsibleTree(str(directory), KIND)
    sources = _sources(directory)
    if not sources:
        raise combined.error("holds no inventory files", expected="an INI, YAML or --list JSON inventory in it")
    for path in sources:
        tree = read_file(path)
        if tree is None:
            raise InputError(str(path), f"is in the inventory directory {directory} but is not an Ansible inventory",
                             expected="INI, YAML or --list JSON; or move it out, or name it *.txt or *.md")
        combined.absorb(tree)
    return combined


def _sources(directory: Path) -> list[Path]:
    found: list[Path] = []
    pending = [directory]
    while pending:
        folder = pending.pop()
        for entry in sorted(folder.iterdir(), reverse=True):
            if entry.name.startswith(".") or entry.name.endswith(IGNORED_ENDINGS):
                continue
            if entry.is_dir():
                if entry.name not in VARS_DIRS:
                    pending.append(entry)
            elif entry.is_file():
                found.append(entry)
            if len(found) > MAX_FILES:
                raise InputError(str(directory), f"holds more than {MAX_FILES} inventory files")
    return sorted(found)
