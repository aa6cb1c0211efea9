"""What a run needs to be planned again: a controller killed before its jobs were stored leaves a run
row and nothing else, so the row carries the matrix, the hosts and the models it was started with.

``farm run --resume`` of such a run expands the same matrix on the hosts as they are now (their facts
decide threads and skips, as in a run started afresh) and runs it; a run whose jobs were stored is
never planned again (its jobs are stored in one transaction: all of them or none).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import exists, select

from .inventory import Host
from .matrix import MatrixSpec
from .store.db import Store
from .store.schema import JobRow, ModelRow, RunRow

PLAN_VERSION = 1


def plan_document(spec: MatrixSpec, hosts: list[Host], models: list[ModelRow]) -> dict[str, Any]:
    return {"version": PLAN_VERSION, "spec": dataclasses.asdict(spec),
            "hosts": [host.name for host in hosts], "models": [model.id for model in models]}


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
    """The plan of run ``run_id`` if it has no jobs yet and carries one; else None (nothing to re-plan)."""
    with store.session() as session:
        run = session.get(RunRow, run_id)
        if run is None or not run.plan or session.scalar(select(exists().where(JobRow.run_id == run_id))):
            return None
        doc = run.plan
        by_id = {row.id: row for row in session.scalars(select(ModelRow).where(ModelRow.id.in_(doc["models"])))}
        return Replan(spec_from_document(doc["spec"]), list(doc["hosts"]),
                      [by_id[i] for i in doc["models"] if i in by_id])
