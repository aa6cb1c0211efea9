"""Toolchain versions per host and on the controller, and the changes between probes.

SEEDS §1 and §4: a new compiler or JetPack makes old numbers obsolete, so every version a result
depends on is tracked. Hosts report theirs in the agent's facts (runtime, kernel, L4T in the board
string or ``l4t``, libedgetpu and pycoral under ``edgetpu`` when the agent lists them); the
controller probes its own, including ``edgetpu_compiler``, which only runs there. A version that
differs from the last probe is stored as an event (old, new); the nightly job acts on
:func:`changes_since`. The first sighting of a component is not a change.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from agent import boards

from .errors import FarmError
from .inventory import Host
from .store.db import Store
from .store.schema import ToolchainEventRow, ToolchainVersionRow, utcnow

CONTROLLER = "@controller"  # '@' cannot start an inventory host name, so it never clashes
COMPONENTS = ("edgetpu_compiler", "libedgetpu", "tflite_runtime", "pycoral", "l4t", "jetpack", "kernel")
COMPILER_ENV = "FARM_EDGETPU_COMPILER"

@dataclass
class HostVersions:
    host: str
    versions: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None  # the host could not be reached


@dataclass
class Probe:
    hosts: list[HostVersions]
    changes: list[dict[str, Any]]


def l4t_of(facts: dict[str, Any]) -> str | None:
    """The host's L4T release: its ``l4t`` fact, else the release in its board string (older agents)."""
    if facts.get("l4t"):
        return str(facts["l4t"])
    return boards.parse_l4t(facts.get("board"))


def jetpack_of(l4t: str | None) -> str | None:
    return boards.jetpack_of(l4t)


def libedgetpu_of(library: dict[str, Any] | None) -> str | None:
    """'16.0 (max)' from the agent's library facts: the package says std (default clock) or max."""
    if not library or not (library.get("version") or library.get("path")):
        return None
    package = library.get("package") or ""
    clock = "max" if package.endswith("-max") else "std" if package.endswith("-std") else None
    version = library.get("version") or "unknown version"
    return f"{version} ({clock})" if clock else version


def versions_from_facts(facts: dict[str, Any]) -> dict[str, str | None]:
    runtime = facts.get("runtime") or {}
    edgetpu = facts.get("edgetpu") or {}
    pycoral = edgetpu.get("pycoral") or facts.get("pycoral") or {}
    l4t = l4t_of(facts)
    return {
        "edgetpu_compiler": facts.get("edgetpu_compiler"),
        "libedgetpu": libedgetpu_of(edgetpu.get("library") or facts.get("libedgetpu")),
        "tflite_runtime": f"{runtime['name']} {runtime['version']}" if runtime.get("name") else None,
        "pycoral": pycoral.get("version") if isinstance(pycoral, dict) else pycoral,
        "l4t": l4t,
        "jetpack": facts.get("jetpack") or jetpack_of(l4t),
        "kernel": facts.get("kernel"),
    }


def controller_versions(compiler: str | None = None) -> dict[str, str | None]:
    """This machine's toolchain, read with the agent's own probes plus the compiler's --version."""
    from agent import edgetpu, facts, runtime

    found = dict(facts.gather())
    found["edgetpu"] = {"library": edgetpu.library(), "pycoral": edgetpu.pycoral()}
    versions = versions_from_facts(found)
    versions["edgetpu_compiler"] = compiler_version_or_none(compiler or os.environ.get(COMPILER_ENV))
    versions["tflite_runtime"] = versions["tflite_runtime"] or _runtime_text(runtime.describe_runtime())
    return versions


def _runtime_text(described: dict[str, Any]) -> str | None:
    return f"{described['name']} {described['version']}" if described.get("name") else None


def compiler_version_or_none(path: str | None) -> str | None:
    from .models.compiler import compiler_version

    executable = shutil.which(path or "edgetpu_compiler")
    if executable is None:
        return None
    try:
        return compiler_version(executable)
    except FarmError:
        return None


def record(store: Store, host: str, versions: dict[str, str | None]) -> list[dict[str, Any]]:
    """Store one host's versions; returns the changes (as events) against the previous probe."""
    changes = []
    now = utcnow()
    with store.session() as session:
        known = {row.component: row for row in
                 session.scalars(select(ToolchainVersionRow).where(ToolchainVersionRow.host == host))}
        for component, version in versions.items():
            row = known.get(component)
            if row is None:
                session.add(ToolchainVersionRow(host=host, component=component, version=version,
                                                first_seen=now, last_seen=now))
                continue
            if row.version != version:
                event = ToolchainEventRow(host=host, component=component, old_version=row.version,
                                          new_version=version, detected_at=now)
                session.add(event)
                changes.append(_change(event))
                row.version = version
                row.first_seen = now
            row.last_seen = now
        session.commit()
    return changes


def probe_and_record(store: Store, hosts: list[Host], transport_options: dict[str, Any] | None = None,
                     compiler: str | None = None) -> Probe:
    """Probe the controller and every host (their agents' facts, stored too), and record changes."""
    from .facts_check import check_hosts

    results = [HostVersions(CONTROLLER, controller_versions(compiler))]
    # Started, not reached lingering: the versions decide what a regression is blamed on, and a lingering agent
    # keeps the environment it was started with (a wrapper's PYTHONPATH, say) until it notices a change.
    checks = check_hosts(list(hosts), transport_options or {}, store, linger=False) if hosts else []
    for check in checks:
        if check.reachable:
            results.append(HostVersions(check.host.name, versions_from_facts(check.facts)))
        else:
            results.append(HostVersions(check.host.name, error=check.error))
    changes = []
    for result in results:
        if result.error is None:
            changes.extend(record(store, result.host, result.versions))
    return Probe(results, changes)


def changes_since(store: Store, when: datetime | None) -> list[dict[str, Any]]:
    """Toolchain changes detected after ``when`` (all when None), oldest first:
    ``{"host", "component", "old", "new", "at"}``; host is ``@controller`` for the controller."""
    query = select(ToolchainEventRow).order_by(ToolchainEventRow.detected_at, ToolchainEventRow.id)
    if when is not None:
        query = query.where(ToolchainEventRow.detected_at > when)
    with store.session() as session:
        return [_change(event) for event in session.scalars(query)]


def current_versions(store: Store) -> list[ToolchainVersionRow]:
    with store.session() as session:
        return list(session.scalars(select(ToolchainVersionRow).order_by(ToolchainVersionRow.host,
                                                                          ToolchainVersionRow.component)))


def _change(event: ToolchainEventRow) -> dict[str, Any]:
    return {"host": event.host, "component": event.component, "old": event.old_version,
            "new": event.new_version, "at": event.detected_at}
