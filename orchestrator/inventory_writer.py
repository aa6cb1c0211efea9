"""Any inventory farm reads (an Ansible one, say) written out as farm's own YAML.

Only what differs from farm's defaults is written, and what every host shares
goes under ``defaults:``, so the file reads like one written by hand. The text
is loaded back before it is handed out: a conversion that lost a field is an
error, not a surprise on the next run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import FarmError, InputError
from .inventory import Host, Inventory, default_power_modes, parse_inventory
from .yamlfile import parse_yaml

SHARED_FIELDS = ("user", "identity_file", "known_hosts", "python", "port", "workdir")


def farm_yaml(inventory: Inventory) -> str:
    entries = [_entry(host) for host in inventory.hosts]
    defaults = {}
    for key in SHARED_FIELDS:
        values = [entry.get(key) for entry in entries]
        if len(entries) > 1 and values[0] is not None and values.count(values[0]) == len(values):
            defaults[key] = values[0]
            for entry in entries:
                del entry[key]
    document: dict[str, Any] = {"defaults": defaults} if defaults else {}
    document["hosts"] = entries
    header = (f"# farm inventory converted from {inventory.path} ({inventory.kind}) by 'farm inventory convert'.\n"
              "# Ansible groups became tags; farm_* variables became these fields.\n")
    text = header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                              allow_unicode=True)
    _check_round_trip(inventory, text)
    return text


def save(text: str, output: Path, *, force: bool) -> None:
    if output.exists() and not force:
        raise InputError(str(output), "already exists; pass --force to replace it")
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(str(output), f"cannot write: {exc}") from None


def _entry(host: Host) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": host.name}
    if host.transport != "ssh":
        entry["transport"] = host.transport
    if host.transport == "ssh" or host.address != "localhost":
        entry["address"] = host.address
    if host.port != 22:
        entry["port"] = host.port
    for key in ("user", "identity_file", "known_hosts", "board"):  # known_hosts: absolute, holds anywhere
        if getattr(host, key) is not None:
            entry[key] = getattr(host, key)
    if host.transport == "local" and host.python == sys.executable:
        entry["python"] = "self"  # this machine's path would not hold on the next one
    elif host.python != "python3":
        entry["python"] = host.python
    if host.tags:
        entry["tags"] = list(host.tags)
    if host.env:
        entry["env"] = host.env_dict
    if host.workdir != ".cache/farm":
        entry["workdir"] = host.workdir
    if host.power_modes != default_power_modes(host.board):
        entry["power_modes"] = host.power_modes
    if host.usb_ports:
        entry["usb_ports"] = host.usb_ports
    if host.agent_linger is not None:
        entry["agent_linger"] = host.agent_linger
    return entry


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of plain values (tags) on one line, as people write them."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(isinstance(item, (str, int, float)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def _check_round_trip(inventory: Inventory, text: str) -> None:
    again = parse_inventory(parse_yaml(text, inventory.path))
    if _comparable(again) != _comparable(inventory):
        raise FarmError(f"converting {inventory.path} would change its hosts; please report this as a bug")


def _comparable(inventory: Inventory) -> list[tuple]:
    # Host's own equality leaves out its settings mappings and known_hosts; a conversion must keep them too.
    return [(h, h.power_modes, h.usb_ports, h.known_hosts) for h in inventory.hosts]
