"""Inventory: the hosts of a farm, read from YAML and validated with line numbers.

A file looks like::

    defaults:              # optional: applied to every host that does not say otherwise
      user: farm
      identity_file: ~/.ssh/farm_lab
      known_hosts: known_hosts   # host keys to check against, relative to this file
    hosts:
      - name: nano-1
        address: 192.168.1.10
        board: rpi4
        python: /usr/bin/python3
        tags: [lab-a, usb3]

``transport: local`` runs the agent on this machine without SSH; the embedded
default inventory is exactly one such host.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import boards
from agent.schema import POWER_KEYS

from ..errors import InputError
from ..yamlfile import YamlDocument

DEFAULT_INVENTORY = Path(__file__).resolve().parents[2] / "inventory" / "local.yaml"
# \Z, not $: "$" also matches before a trailing newline, and names end up in file names and commands.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
TRANSPORTS = ("ssh", "local")


@dataclass(frozen=True)
class Host:
    name: str
    address: str = "localhost"
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    python: str = "python3"
    board: str | None = None
    transport: str = "ssh"
    tags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ".cache/farm"
    power_modes: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)
    usb_ports: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)
    source: str = field(default="", compare=False)
    # Absolute path; None: the SSH transport's default, ~/.ssh/known_hosts. A command line's --known-hosts wins.
    known_hosts: str | None = field(default=None, compare=False)
    # Seconds the agent stays running after a check for the next to reach it (agent/linger.py); None: the
    # default (orchestrator/agent_linger.py), 0: never.
    agent_linger: int | None = None

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "board": self.board, "transport": self.transport, "python": self.python,
                "tags": list(self.tags)}


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: tuple[Host, ...]
    kind: str = "farm inventory"  # or the Ansible format it was read from

    def select(self, names: list[str] | None = None, tags: list[str] | None = None) -> list[Host]:
        chosen = list(self.hosts)
        if names:
            unknown = sorted(set(names) - {h.name for h in self.hosts})
            if unknown:
                raise InputError(self.path, f"no host named '{unknown[0]}' in this inventory",
                                 expected="one of " + ", ".join(h.name for h in self.hosts))
            chosen = [h for h in chosen if h.name in names]
        if tags:
            chosen = [h for h in chosen if set(tags) & set(h.tags)]
        return chosen


# field -> (python types accepted, what a user should write)
FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a host name of letters, digits, '.', '_' or '-'"),
    "address": ((str,), "a host name, an IP address or an ~/.ssh/config alias"),
    "port": ((int,), "a TCP port number from 1 to 65535"),
    "user": ((str,), "a login name"),
    "identity_file": ((str,), "the path of a private key file"),
    "known_hosts": ((str,), "the known_hosts file to check host keys against, relative to the inventory file"),
    "python": ((str,), "the interpreter that runs the agent, e.g. /usr/bin/python3"),
    "board": ((str,), "a board name such as " + ", ".join(boards.inventory_examples())),
    "transport": ((str,), "ssh or local"),
    "tags": ((list,), "a list of strings"),
    "env": ((dict,), "a mapping of environment variable names to strings"),
    "workdir": ((str,), "a directory, relative to the login home, for the agent and models"),
    "power_modes": ((dict,), "a mapping of mode names to settings, e.g. {5W: {nvpmodel: 1}}"),
    "usb_ports": ((dict,), "a mapping of port names to sysfs port paths, e.g. {usb3-left: {port: 2-1}}"),
    "agent_linger": ((int,), ("seconds from 0 to 86400 the agent keeps running after a check, so that the next "
                              "check reaches it without starting Python (0: never; default 900)")),
}
# The settings a power mode may hold are the job schema's: an inventory mode becomes a job's power spec.
POWER_MODE_KEYS = POWER_KEYS
USB_PORT_KEYS = {"port": (str,), "speed": (int,)}


def default_power_modes(board: str | None) -> dict[str, dict[str, Any]]:
    """The modes a host has when its inventory names none: its board family's, as the agent defines them."""
    return boards.default_power_modes(board)


FORBIDDEN = {"password": "passwords do not belong in inventory files; use a key file or ssh-agent"}


def parse_inventory(doc: YamlDocument) -> Inventory:
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "an inventory must be a mapping with a 'hosts' list",
                        expected="a top-level 'hosts:' key")
    for key in data:
        if key not in ("hosts", "defaults"):
            raise doc.error((key,), "unknown top-level key", field=str(key), expected="'hosts' or 'defaults'")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise doc.error(("defaults",), "must be a mapping of host fields", field="defaults")
    _check_fields(doc, ("defaults",), defaults, allow_name=False)
    hosts_data = data.get("hosts")
    if not isinstance(hosts_data, list) or not hosts_data:
        raise doc.error(("hosts",), "must be a non-empty list of hosts", field="hosts")
    hosts: list[Host] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(hosts_data):
        location = ("hosts", index)
        if not isinstance(entry, dict):
            raise doc.error(location, "each host must be a mapping of fields", expected="'- name: ...'")
        _check_fields(doc, location, entry, allow_name=True)
        merged = {**defaults, **entry}
        host = _make_host(doc, location, merged)
        if host.name in seen:
            raise doc.error(location + ("name",), f"duplicate host name '{host.name}' "
                            f"(first defined at line {seen[host.name]})", field="name")
        seen[host.name] = doc.line(location + ("name",)) or 0
        hosts.append(host)
    return Inventory(path=doc.path, hosts=tuple(hosts))


def _check_fields(doc: YamlDocument, location: tuple, entry: dict, *, allow_name: bool) -> None:
    for key, value in entry.items():
        where = location + (key,)
        if key in FORBIDDEN:
            raise doc.error(where, FORBIDDEN[key], field=str(key))
        if key not in FIELDS or (key == "name" and not allow_name):
            raise doc.error(where, "unknown field", field=str(key),
                            expected="one of " + ", ".join(k for k in FIELDS if allow_name or k != "name"))
        kinds, expected = FIELDS[key]
        if value is None and key not in ("name",):
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise doc.error(where, f"got {value!r}", field=str(key), expected=expected)
        bad = _control_character(value)
        if bad:
            raise doc.error(where, f"contains the control character {bad!r}", field=str(key),
                            expected="printable text (no NUL, newline or escape)")
    if allow_name and "name" not in entry:
        raise doc.error(location, "a host needs a name", field="name", expected=FIELDS["name"][1])


def _control_character(value: Any) -> str | None:
    """The first control character in a value's strings: they would reach argv, env or file names."""
    if isinstance(value, str):
        return next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if isinstance(value, list):
        return next(filter(None, map(_control_character, value)), None)
    if isinstance(value, dict):
        return next(filter(None, map(_control_character, [*value, *value.values()])), None)
    return None


def _make_host(doc: YamlDocument, location: tuple, entry: dict) -> Host:
    def fail(key: str, problem: str) -> InputError:
        return doc.error(location + (key,), problem, field=key, expected=FIELDS[key][1])

    name = entry["name"]
    if not NAME_PATTERN.match(name):
        raise fail("name", f"'{name}' is not a valid host name")
    transport = entry.get("transport") or "ssh"
    if transport not in TRANSPORTS:
        raise fail("transport", f"unknown transport '{transport}'")
    port = 22 if entry.get("port") is None else entry["port"]  # not "or 22": port 0 is an error, not 22
    if not 1 <= port <= 65535:
        raise fail("port", f"port {port} is out of range")
    tags = entry.get("tags") or []
    if not all(isinstance(t, str) and t for t in tags):
        raise fail("tags", "every tag must be a non-empty string")
    env = entry.get("env") or {}
    for key, value in env.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", key):
            raise fail("env", f"'{key}' is not a valid environment variable name")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise fail("env", f"value of '{key}' must be a string")
    address = entry.get("address")
    if transport == "ssh" and not address:
        raise doc.error(location, "an ssh host needs an address", field="address",
                        expected=FIELDS["address"][1])
    power_modes = _settings(doc, location, entry, "power_modes", POWER_MODE_KEYS)
    usb_ports = _settings(doc, location, entry, "usb_ports", USB_PORT_KEYS)
    for port_name, spec in usb_ports.items():  # not "name": that is the host's, used below
        if "port" not in spec:
            raise doc.error(location + ("usb_ports", port_name), "a USB port needs its sysfs port path",
                            field=f"usb_ports.{port_name}.port", expected="e.g. port: 2-1")
    linger = entry.get("agent_linger")
    if linger is not None and not 0 <= linger <= 86400:
        raise fail("agent_linger", f"{linger} seconds is out of range")
    python = entry.get("python")
    if transport == "local" and python in (None, "", "self"):
        # The controller's own interpreter already has a runtime installed with farm.
        python = sys.executable
    return Host(
        name=name,
        address=address or "localhost",
        port=port,
        user=entry.get("user"),
        identity_file=entry.get("identity_file"),
        python=python or "python3",
        board=entry.get("board"),
        transport=transport,
        tags=tuple(tags),
        env=tuple(sorted((k, str(v)) for k, v in env.items())),
        workdir=entry.get("workdir") or ".cache/farm",
        power_modes=power_modes or default_power_modes(entry.get("board")),
        usb_ports=usb_ports,
        source=f"{doc.path}:{doc.line(location)}",
        known_hosts=_beside(doc.path, entry.get("known_hosts")),
        agent_linger=linger,
    )


def _beside(inventory: str, path: str | None) -> str | None:
    """``path`` as the inventory means it: relative to the inventory's own directory (an Ansible inventory
    directory: that directory), not to the cwd."""
    if not path:
        return None
    where = os.path.abspath(os.path.expanduser(inventory))
    directory = where if os.path.isdir(where) else os.path.dirname(where)
    return os.path.abspath(os.path.join(directory, os.path.expanduser(path)))


def _settings(doc: YamlDocument, location: tuple, entry: dict, key: str,
              allowed: dict[str, tuple[type, ...]]) -> dict[str, dict[str, Any]]:
    """A mapping of named settings (power modes, USB ports), each checked key by key."""
    value = entry.get(key) or {}
    out = {}
    for name, spec in value.items():
        where = location + (key, name)
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise doc.error(where, f"'{name}' is not a valid name", field=key,
                            expected="letters, digits, '.', '_' or '-'")
        if not isinstance(spec, dict):
            raise doc.error(where, f"got {spec!r}", field=f"{key}.{name}", expected=FIELDS[key][1])
        for setting, setting_value in spec.items():
            kinds = allowed.get(setting)
            if kinds is None:
                raise doc.error(where + (setting,), "unknown setting", field=f"{key}.{name}.{setting}",
                                expected="one of " + ", ".join(allowed))
            if not isinstance(setting_value, kinds) or (isinstance(setting_value, bool) and bool not in kinds):
                raise doc.error(where + (setting,), f"got {setting_value!r}", field=f"{key}.{name}.{setting}",
                                expected=" or ".join(k.__name__ for k in kinds))
        out[name] = dict(spec)
    return out
