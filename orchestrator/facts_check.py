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

from agent import boards

from .agent_client import AgentSession
from .agent_linger import SOCKETS
from .errors import FarmError
from .gc_pause import old_objects_frozen
from .inventory import Host
from .store import records
from .store.db import Store
from .transport import open_transport


@dataclass
class HostCheck:
    host: Host
    reachable: bool = False
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    contradictions: list[str] = field(default_factory=list)
    uploaded_agent: bool = False
    lingering: bool = False  # answered by an agent still running from an earlier check (agent/linger.py)
    seconds: float = 0.0


def check_host(host: Host, transport_options: dict[str, Any], linger: bool = True) -> HostCheck:
    check = HostCheck(host)
    started = time.perf_counter()
    session = None
    try:
        session = AgentSession(open_transport(host, **transport_options)).open(first={"op": "facts"}, linger=linger)
        check.uploaded_agent = session.uploaded_agent
        check.lingering = session.lingering
        check.facts = session.first_reply["facts"]
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
                workers: int = 64, *, linger: bool = True) -> list[HostCheck]:
    """``linger=False``: every host's agent is started, none reached lingering (agent/linger.py), for facts
    that must be the host's as a new process sees them (a nightly's toolchain)."""
    with old_objects_frozen(), ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts)))) as pool:
        checks = list(pool.map(lambda h: check_host(h, transport_options, linger), hosts))
    SOCKETS.flush()
    if store is not None:
        records.record_checks(store, [(c.host, c.facts if c.reachable else None) for c in checks])
    return checks


def contradictions(host: Host, facts: dict[str, Any]) -> list[str]:
    """What the host's facts say against its inventory entry: a board of another family than declared."""
    found = []
    reported = facts.get("board")
    declared = boards.declared_family(host.board)
    # Only a name the agent's registry recognises is compared: a board it has no family for says nothing.
    if declared is not None and reported and not declared.named(reported):
        found.append(f"board declared {host.board}, host reports {reported}")
    return found


def gpu_text(facts: dict[str, Any]) -> str:
    """A host's GPU as `farm inventory check` shows it: "128 cores, 921.6/921.6 MHz, POM_5V_GPU 40 mW"."""
    gpu = facts.get("gpu")
    if not gpu:
        return ""
    parts = [f"{gpu['cuda_cores']} cores" if gpu.get("cuda_cores") else (gpu.get("devfreq") or "GPU")]
    current, top = gpu.get("clock_hz"), gpu.get("max_clock_hz")
    if top:
        parts.append(f"{current / 1e6:.1f}/{top / 1e6:.1f} MHz" if current else f"max {top / 1e6:.1f} MHz")
    if gpu.get("rail"):
        milliwatts = gpu.get("rail_mw")
        parts.append(f"{gpu['rail']} {milliwatts} mW" if milliwatts is not None else str(gpu["rail"]))
    return ", ".join(parts)
