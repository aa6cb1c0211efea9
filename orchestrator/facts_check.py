"""`farm inventory check`: reach every host at once, deploy, read facts, compare.

The comparison is between what the inventory declares and what the host says
about itself, so a mislabelled board or a wrong interpreter shows up before a
night of benchmarks is spent on it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .agent_client import AgentSession
from .errors import FarmError
from .inventory import Host
from .store import records
from .store.db import Store
from .transport import open_transport

# Words that identify a board family in /proc/device-tree/model or L4T strings.
BOARD_WORDS = {
    "jetson": ("jetson", "tegra"),
    "rpi": ("raspberry pi",),
    "devboard": ("phanbein", "coral", "i.mx8"),
}


@dataclass
class HostCheck:
    host: Host
    reachable: bool = False
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    contradictions: list[str] = field(default_factory=list)
    uploaded_agent: bool = False
    seconds: float = 0.0


def check_host(host: Host, transport_options: dict[str, Any]) -> HostCheck:
    check = HostCheck(host)
    started = time.perf_counter()
    session = None
    try:
        session = AgentSession(open_transport(host, **transport_options)).open()
        check.uploaded_agent = session.uploaded_agent
        check.facts = session.facts()
        check.reachable = True
        check.contradictions = contradictions(host, check.facts)
    except FarmError as exc:
        check.error = str(exc)
    finally:
        if session is not None:
            session.close()
            session.transport.close()
        check.seconds = time.perf_counter() - started
    return check


def check_hosts(hosts: list[Host], transport_options: dict[str, Any], store: Store | None = None,
                workers: int = 64) -> list[HostCheck]:
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts)))) as pool:
        checks = list(pool.map(lambda h: check_host(h, transport_options), hosts))
    if store is not None:
        for check in checks:
            host_id = records.upsert_host(store, check.host)
            if check.reachable:
                records.add_facts(store, host_id, check.facts)
    return checks


def contradictions(host: Host, facts: dict[str, Any]) -> list[str]:
    found = []
    board = (facts.get("board") or "").lower()
    if host.board and board:
        declared = host.board.lower()
        for family, words in BOARD_WORDS.items():
            if declared.startswith(family) and not any(w in board for w in words):
                found.append(f"board declared {host.board}, host reports {facts.get('board')}")
    return found
