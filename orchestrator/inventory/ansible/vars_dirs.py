"""``group_vars/`` and ``host_vars/`` beside an inventory, where Ansible users keep most variables.

For a group (or host) ``web``: the file ``web``, ``web.yml``, ``web.yaml`` or
``web.json``, or every such file under the directory ``web/``, in name order.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import InputError
from ...yamlfile import parse_yaml
from .tree import AnsibleTree, Var

EXTENSIONS = ("", ".yml", ".yaml", ".json")
VAULT_HEADER = "$ANSIBLE_VAULT;"
# An inline "!vault |" value: its ciphertext is kept as text, which farm never decrypts.
VAULT_TAG = re.compile(r"(?<=[:\-\s])!vault(?=\s)")
MAX_FILE_BYTES = 1 << 20


def add_vars_directories(tree: AnsibleTree, base: Path) -> None:
    """The vars in ``base``'s group_vars/ and host_vars/: the inventory file's directory, or the inventory directory."""
    base = base.expanduser().absolute()
    for name in tree.groups:
        tree.group_files[name] = _load_all(tree, base / "group_vars", name)
    for name in tree.host_vars:
        tree.host_files[name] = _load_all(tree, base / "host_vars", name)


def _load_all(tree: AnsibleTree, directory: Path, name: str) -> dict[str, Var]:
    merged: dict[str, Var] = {}
    if not directory.is_dir() or "/" in name or name.startswith("."):
        return merged
    for path in _files(directory, name):
        for var in _load(tree, path):
            merged[var.name] = var
    return merged


def _files(directory: Path, name: str) -> list[Path]:
    found = [directory / (name + extension) for extension in EXTENSIONS if (directory / (name + extension)).is_file()]
    folder = directory / name
    if folder.is_dir():
        found += sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix in EXTENSIONS
                        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
                        and not path.name.endswith("~"))
    return found


def _load(tree: AnsibleTree, path: Path) -> list[Var]:
    name = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise tree.error(f"is larger than {MAX_FILE_BYTES} bytes; a vars file is not that big", path=name)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise tree.error(f"cannot read file: {exc}", path=name) from None
    if text.lstrip().startswith(VAULT_HEADER):
        # A whole file under ansible-vault holds secrets; farm reads none, and its own fields are never secret.
        return []
    try:
        doc = parse_yaml(VAULT_TAG.sub("", text), name)
    except InputError as exc:
        raise tree.error(exc.problem, exc.line, path=name) from None
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        raise tree.error(f"a vars file must be a mapping of variables, got {doc.data!r}", doc.line(()), path=name)
    variables = []
    for key, value in doc.data.items():
        if not isinstance(key, str) or not key:
            raise tree.error(f"variable name {key!r} is not text", doc.line((key,)), path=name)
        variables.append(Var(key, value, doc.line((key,)), path=name))
    return variables
