"""What a run needs to be planned again: a controller killed before its jobs were stored leaves a run
row and nothing else, so the row carries the matrix, the hosts and the models it was started with.

``farm run --resume`` of such a run expands the same matrix on the hosts as they are now (their facts
decide threads and skips, as in a run started afresh) and runs it. Each host's lane plans that host's
jobs as soon as it is reached (one transaction per host), so a run killed early may have some hosts
planned and others not: a host with jobs in the run is never planned again, one without is.

Every run's row also keeps what it was started with that --resume must reuse: the inventory's absolute
path (the run may be resumed from another directory) and the transport options the command line gave
(``--known-hosts``, ``--accept-new-host-keys``), so a resume without them checks host keys as the run did.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select

from .inventory import Host
from .matrix import MatrixSpec
from .store.db import Store
from .store.schema import HostRow, JobRow, ModelRow, RunRow

PLAN_VERSION = 1


def plan_document(spec: MatrixSpec, hosts: list[Host], models: list[ModelRow],
                  transport_options: dict[str, Any] | None = None, inventory: str | None = None) -> dict[str, Any]:
    doc = {"version": PLAN_VERSION, "spec": dataclasses.asdict(spec),
           "hosts": [host.name for host in hosts], "models": [model.id for model in models],
           "transport": stored_transport_options(transport_options or {})}
    if inventory:
        doc["inventory"] = str(Path(inventory).expanduser().absolute())
    return doc


def stored_transport_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options as JSON keeps them: paths made absolute (a resume may start elsewhere), as strings."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Path):
            out[key] = str(value.expanduser().absolute())
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
    return out


def started_with(store: Store, run_id: int) -> tuple[str | None, dict[str, Any]]:
    """The inventory path and transport options run ``run_id`` was started with (runs from before: none)."""
    with store.session() as session:
        run = session.get(RunRow, run_id)
        doc = (run.plan if run is not None else None) or {}
    options = dict(doc.get("transport") or {})
    if options.get("known_hosts"):
        options["known_hosts"] = Path(options["known_hosts"])
    return doc.get("inventory"), options


def resume_options(started: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """What a resume connects with: the run's own options, overridden by those given to --resume.

    A flag left at its default (False, None) was not given: it must not undo the run's own choice.
    """
    return {**started, **{key: value for key, value in given.items() if value is not None and value is not False}}


def spec_from_document(doc: dict[str, Any]) -> MatrixSpec:
    """The MatrixSpec ``plan_document`` stored (JSON made its tuples lists)."""
    names = {f.name for f in dataclasses.fields(MatrixSpec)}
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in doc.items() if key in names}
    return MatrixSpec(**values)


@dataclasses.dataclass
class Replan:
    spec: MatrixSpec
    host_names: list[str]
    models: list[ModelRow]


def unplanned(store: Store, run_id: int) -> Replan | None:
    """The plan of run ``run_id`` for its hosts that have no jobs yet; None if every host has some
    (or the run carries no plan): nothing to re-plan."""
    with store.session() as session:
        run = session.get(RunRow, run_id)
        if run is None or not run.plan:
            return None
        planned = set(session.scalars(select(HostRow.name).where(
            exists().where(JobRow.run_id == run_id, JobRow.host_id == HostRow.id))))
        doc = run.plan
        missing = [name for name in doc["hosts"] if name not in planned]
        if not missing:
            return None
        by_id = {row.id: row for row in session.scalars(select(ModelRow).where(ModelRow.id.in_(doc["models"])))}
        return Replan(spec_from_document(doc["spec"]), missing, [by_id[i] for i in doc["models"] if i in by_id])
