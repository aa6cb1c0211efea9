"""Ansible inventories as they are: INI, YAML, and the JSON of ``ansible-inventory --list``.

Read here rather than through ansible-core: it is a large dependency (and a
Python of its own choosing) for what is, for farm, a few hundred lines of
parsing. Groups become tags (nested groups flattened), Ansible's connection
variables become farm's fields, and ``farm_*`` variables carry the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...bounded_read import read_yaml_file
from ...errors import InputError
from ...yamlfile import YamlDocument, parse_yaml
from ..hosts import Inventory
from .directory import read_directory
from .fields import to_inventory
from .ini import SECTION, read_ini
from .structured import GROUP_KEYS, LIST_KIND, read_list_json, read_yaml_inventory
from .tree import AnsibleTree
from .vars_dirs import add_vars_directories

__all__ = ["load_if_ansible", "parse_if_ansible", "read_tree"]


def load_if_ansible(path: str | Path, seen: list[YamlDocument] | None = None) -> Inventory | None:
    """The inventory in an Ansible file or directory, or None for any other file (farm's own YAML reads it).

    ``seen``: where a file that is farm's own YAML leaves its parsed document, so it is not parsed twice.
    """
    source = Path(path)
    if source.is_dir():
        tree = read_directory(source, _read_file)
        add_vars_directories(tree, source)
        return to_inventory(tree)
    tree = _read_file(source, seen)
    if tree is None:
        return None
    if tree.kind != LIST_KIND:  # ansible-inventory has already merged them into --list's hostvars
        add_vars_directories(tree, source.parent)
    return to_inventory(tree)


def _read_file(path: Path, seen: list[YamlDocument] | None = None) -> AnsibleTree | None:
    name = str(path)
    data = read_yaml_file(path)  # regular files of bounded size: a FIFO or a huge file must not hang farm
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(name, f"cannot read file: {exc}") from None
    if text.startswith("#!"):
        raise InputError(name, "is a dynamic inventory script, which farm does not run",
                         expected=f"its hosts as JSON: {name} --list > hosts.json")
    return read_tree(text.removeprefix("\ufeff"), name, seen)  # an editor's byte-order mark hides "[group]"


def parse_if_ansible(text: str, name: str) -> Inventory | None:
    """Like ``load_if_ansible`` for text in hand, which has no group_vars/ or host_vars/ beside it."""
    tree = read_tree(text, name)
    return None if tree is None else to_inventory(tree)


def read_tree(text: str, name: str, seen: list[YamlDocument] | None = None) -> AnsibleTree | None:
    if name.endswith(".ini") or _starts_with_section(text):
        return read_ini(text, name)
    doc = _structured(text, name)
    if doc is None:
        return None
    if isinstance(doc.data, str):
        # Bare host names, one a line, are an INI file of ungrouped hosts; YAML folds them into one string.
        return read_ini(text, name)
    if not isinstance(doc.data, dict) or isinstance(doc.data.get("hosts"), list) or "defaults" in doc.data:
        if seen is not None and doc.has_lines:  # YAML with its lines (not JSON read without them)
            seen.append(doc)
        return None
    if isinstance(doc.data.get("plugin"), str):
        raise InputError(name, f"is the configuration of Ansible's '{doc.data['plugin']}' inventory plugin, "
                               "which only Ansible can run", line=doc.line(("plugin",)),
                         expected=f"its hosts as JSON: ansible-inventory -i {name} --list > hosts.json")
    groups = [body for key, body in doc.data.items() if key != "_meta"]
    json_text = text.lstrip().startswith("{")
    if "_meta" in doc.data or any(_listed(body, json_text) for body in groups):
        return read_list_json(doc)
    if "all" in doc.data or any(isinstance(body, dict) and set(body) & set(GROUP_KEYS) for body in groups):
        return read_yaml_inventory(doc)
    return None


def _starts_with_section(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            return bool(SECTION.match(line))
    return False


def _structured(text: str, name: str) -> YamlDocument | None:
    """YAML with lines; JSON that YAML cannot read (it is not quite a subset) without them."""
    try:
        return parse_yaml(text, name)
    except InputError:
        if not text.lstrip().startswith("{"):
            return None
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return YamlDocument(name, data, {})


def _listed(body: Any, json_text: bool) -> bool:
    """A ``--list`` group: its hosts and children are lists of names (YAML's are mappings).

    A bare list of hosts counts only in JSON, as a dynamic inventory script prints it:
    in YAML it is more likely a farm inventory with a misspelt ``hosts:``.
    """
    if isinstance(body, list):
        return json_text
    return isinstance(body, dict) and any(isinstance(body.get(key), list) for key in ("hosts", "children"))
