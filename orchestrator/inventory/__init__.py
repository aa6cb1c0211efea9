"""Inventory: the hosts of a farm, from farm's own YAML (``hosts``) or an Ansible inventory (``ansible``).

``load_inventory`` is the one entry point: it tells the formats apart and returns the same validated
``Inventory`` either way. The package's modules never import this ``__init__``, so there is no cycle.
"""

from __future__ import annotations

from pathlib import Path

from ..yamlfile import YamlDocument, load_yaml
from .ansible import load_if_ansible
from .hosts import (
    DEFAULT_INVENTORY,
    FIELDS,
    FORBIDDEN,
    NAME_PATTERN,
    POWER_MODE_KEYS,
    TRANSPORTS,
    USB_PORT_KEYS,
    Host,
    Inventory,
    default_power_modes,
    parse_inventory,
)

__all__ = [
    "DEFAULT_INVENTORY",
    "FIELDS",
    "FORBIDDEN",
    "NAME_PATTERN",
    "POWER_MODE_KEYS",
    "TRANSPORTS",
    "USB_PORT_KEYS",
    "Host",
    "Inventory",
    "default_power_modes",
    "load_inventory",
    "parse_inventory",
]


def load_inventory(path: str | Path | None = None) -> Inventory:
    """Read and validate an inventory; ``None`` means the embedded default (this machine).

    An Ansible inventory (INI, YAML, ``ansible-inventory --list`` JSON, or a directory of them) is read as it is.
    """
    if path is None:
        return parse_inventory(load_yaml(DEFAULT_INVENTORY))
    seen: list[YamlDocument] = []
    ansible = load_if_ansible(path, seen)
    if ansible is not None:
        return ansible
    # The file was parsed once to tell it from an Ansible one (a 250-host inventory: 0.2 s): not again.
    return parse_inventory(seen[0] if seen else load_yaml(path))
