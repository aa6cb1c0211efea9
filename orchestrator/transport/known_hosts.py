"""Which known_hosts file to check host keys against when the user named none."""

from __future__ import annotations

from pathlib import Path

# What `farm lab up` writes beside its inventory (orchestrator/lab/lab.py): the state file marks
# the directory as a lab's, known_hosts holds the keys of exactly the hosts that inventory lists.
LAB_STATE = "lab.json"
LAB_KNOWN_HOSTS = "known_hosts"


def lab_known_hosts_for(inventory: Path | str | None) -> Path | None:
    """The simulated lab's known_hosts when ``inventory`` is a lab's inventory, else None.

    Only a lab directory qualifies: a known_hosts file that merely lies beside some
    inventory is not trusted, because it could hold keys nobody checked.
    """
    if inventory is None:
        return None
    directory = Path(inventory).expanduser().absolute().parent
    known = directory / LAB_KNOWN_HOSTS
    if (directory / LAB_STATE).is_file() and known.is_file():
        return known
    return None


def choose_known_hosts(given: Path | None, inventory: Path | str | None) -> Path | None:
    """The user's choice wins; else a lab's own file; else None (the transport's ~/.ssh/known_hosts)."""
    if given is not None:
        return given
    return lab_known_hosts_for(inventory)
