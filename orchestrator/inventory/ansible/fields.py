"""Ansible variables onto farm's host fields, checked by farm's own inventory validation.

Each host becomes the entry a farm YAML file would hold, and ``parse_inventory``
validates it; its complaints come back naming the Ansible variable and the line
that set it, not farm's field.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ...errors import InputError
from ...yamlfile import YamlDocument, parse_yaml
from ..hosts import FIELDS, Inventory, parse_inventory
from .tree import AnsibleTree, FlatHost, Var
from .vars_dirs import VAULT_HEADER

# Ansible's connection variables farm uses, the modern name first where there are two.
ANSIBLE_FIELDS = {
    "ansible_host": "address", "ansible_ssh_host": "address",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_user": "user", "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file", "ansible_private_key_file": "identity_file",
    "ansible_python_interpreter": "python",
}
FARM_FIELDS = {
    "farm_board": "board", "farm_transport": "transport", "farm_tags": "tags", "farm_env": "env",
    "farm_workdir": "workdir", "farm_power_modes": "power_modes", "farm_usb_ports": "usb_ports",
    "farm_known_hosts": "known_hosts",
}
PASSWORDS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
CONNECTIONS = {"ssh": "ssh", "smart": "ssh", "paramiko": "ssh", "paramiko_ssh": "ssh", "local": "local"}
# Ansible's interpreter discovery: farm's own default (python3 on the PATH) is the equivalent.
DISCOVERY = ("auto", "auto_silent", "auto_legacy", "auto_legacy_silent")
# Every field a host's variables can set, and the variable to name when one is missing.
VARIABLE_FOR = {"address": "ansible_host", "port": "ansible_port", "user": "ansible_user",
                "identity_file": "ansible_ssh_private_key_file", "python": "ansible_python_interpreter",
                **{field: variable for variable, field in FARM_FIELDS.items()}}


def to_inventory(tree: AnsibleTree) -> Inventory:
    hosts = tree.flatten()
    if not hosts:
        raise tree.error("defines no hosts", 1, expected="at least one host in a group")
    entries, origins = [], []
    for host in hosts:
        entry, origin = _entry(tree, host)
        entries.append(entry)
        origins.append(origin)
    doc = _AnsibleDocument(tree, hosts, origins, {"hosts": entries})
    inventory = parse_inventory(doc)
    # Each host's own file and line: in an inventory directory that is not the directory.
    located = tuple(dataclasses.replace(host, source=f"{flat.path}:{flat.line}")
                    for host, flat in zip(inventory.hosts, hosts, strict=True))
    return dataclasses.replace(inventory, hosts=located, kind=tree.kind)


def _entry(tree: AnsibleTree, host: FlatHost) -> tuple[dict[str, Any], dict[str, Var]]:
    """The farm entry for one host, and the variable behind each of its fields."""
    _refuse_secrets(tree, host)
    entry: dict[str, Any] = {"name": host.name}
    origin: dict[str, Var] = {}
    for variable in reversed(list(ANSIBLE_FIELDS)):  # reversed: the modern name, read last, wins
        if variable in host.vars:
            _set(entry, origin, ANSIBLE_FIELDS[variable], host.vars[variable])
    if entry.get("python") in DISCOVERY:
        del entry["python"], origin["python"]
    connection = host.vars.get("ansible_connection")
    if connection is not None:
        transport = CONNECTIONS.get(str(connection.value))
        if transport is None:
            raise tree.error(f"farm cannot reach a host over '{connection.value}'", connection.line,
                             variable=connection.name, host=host.name, path=connection.path,
                             expected="ssh or local")
        _set(entry, origin, "transport", dataclasses.replace(connection, value=transport))
    for variable, var in host.vars.items():
        if variable.startswith("farm_"):
            if variable not in FARM_FIELDS:
                raise tree.error("unknown farm variable", var.line, variable=variable, host=host.name,
                                 path=var.path, expected="one of " + ", ".join(FARM_FIELDS))
            _set(entry, origin, FARM_FIELDS[variable], var)  # after ansible_connection: farm_transport wins
    if entry.get("transport") != "local":
        entry.setdefault("address", host.name)  # Ansible connects to the inventory name itself
    extra_tags = entry.pop("tags", [])
    # farm_tags that is not a list stays as it is, for farm's validation to refuse by name.
    entry["tags"] = [*host.groups, *extra_tags] if isinstance(extra_tags, list) else extra_tags
    return entry, origin


def _refuse_secrets(tree: AnsibleTree, host: FlatHost) -> None:
    for variable in PASSWORDS:
        if variable in host.vars:
            var = host.vars[variable]
            raise tree.error("farm logs in with keys only and refuses passwords in inventories", var.line,
                             variable=variable, host=host.name, path=var.path,
                             expected="ansible_ssh_private_key_file, or a key in ssh-agent")
    for variable, var in host.vars.items():
        mapped = variable in ANSIBLE_FIELDS or variable in FARM_FIELDS or variable == "ansible_connection"
        if mapped and isinstance(var.value, str) and var.value.startswith(VAULT_HEADER):
            raise tree.error("is encrypted with ansible-vault, and farm decrypts nothing", var.line,
                             variable=variable, host=host.name, path=var.path,
                             expected="the value in plain text: farm's settings are not secrets")


def _set(entry: dict[str, Any], origin: dict[str, Var], field: str, var: Var) -> None:
    entry[field] = _typed(field, var.value)
    origin[field] = var


def _typed(field: str, value: Any) -> Any:
    """INI ``:vars`` give strings: a port and farm's mappings and lists are read out of them.

    Ansible itself templates ``"5555"`` into a port at connection time; a mapping
    is written the way Ansible users write one inline, as YAML/JSON flow text.
    """
    if not isinstance(value, str):
        return value
    kinds = FIELDS[field][0]
    if int in kinds and re.fullmatch(r"[0-9]{1,6}", value.strip()):
        return int(value)
    if (dict in kinds or list in kinds) and value.strip()[:1] in "{[":
        try:
            parsed = parse_yaml(value, "value").data  # farm's loader: bounded against alias bombs
        except InputError:
            return value  # farm's validation refuses the text, naming the variable
        return parsed if isinstance(parsed, kinds) else value
    return value


class _AnsibleDocument(YamlDocument):
    """The hosts as farm entries, whose errors point back at the Ansible variables that made them."""

    def __init__(self, tree: AnsibleTree, hosts: list[FlatHost], origins: list[dict[str, Var]],
                 data: dict[str, Any]) -> None:
        super().__init__(tree.path, data, {})
        self._tree = tree
        self._hosts = hosts
        self._origins = origins

    def _origin(self, location: tuple, field: str | None = None) -> tuple[FlatHost | None, Var | None, str | None]:
        """The host at ``location``, and the variable behind its field (named by the location or the error)."""
        if len(location) < 2 or location[0] != "hosts" or not isinstance(location[1], int):
            return None, None, None
        host = self._hosts[location[1]]
        key = location[2] if len(location) > 2 else (field or "").partition(".")[0] or None
        return host, self._origins[location[1]].get(key) if isinstance(key, str) else None, key

    def line(self, location: tuple, field: str | None = None) -> int | None:
        host, var, _ = self._origin(location, field)
        if var is not None:
            return var.line
        return host.line if host else 1

    def error(self, location: tuple, problem: str, *, field: str | None = None,
              expected: str | None = None) -> InputError:
        host, var, key = self._origin(location, field)
        head, _, rest = (field or key or "").partition(".")
        if head == "tags" and var is None:
            variable = None
            problem = f"its groups as tags: {problem}"
        elif head in ("name", ""):
            variable = None
        else:
            variable = (var.name if var else VARIABLE_FOR.get(head, head)) + (f".{rest}" if rest else "")
        return self._tree.error(problem, self.line(location, field), variable=variable,
                                host=host.name if host else None, expected=expected,
                                path=var.path if var else host.path if host else None)
