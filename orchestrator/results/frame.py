"""Results as a pandas DataFrame: one row per job, every column of the ``v_results`` view.

``farm results``, ``farm report --export`` and notebooks all read this frame, so a column has one
name everywhere (``run_id``, ``model_family``, ...); the view is documented in the README, "Results".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import MetaData, Table, func, select

from ..errors import FarmError
from ..store.db import Store
from ..store.schema import ModelRow, ResultRow, SampleRow
from .columns import utc_timestamps
from .filters import Columns, ResultFilter, missing_runs, select_runs, where

# Dimensions `farm results --group-by` accepts: the matrix's own ("family" is model_family's short name).
GROUPS = ("host", "board", "model", "model_family", "family", "delegate", "threads", "power_mode", "usb_port",
          "usb_speed", "status")
GROUP_COLUMNS = {"family": "model_family"}


def _view(store: Store) -> Table:
    return Table("v_results", MetaData(), autoload_with=store.engine)


def view_columns(view: Table) -> Columns:
    c = view.c
    # Measured by the job where it ran; for a cell that never ran, what the host's facts showed at planning.
    usb_speed = func.coalesce(c.usb_speed_measured, c.usb_speed_planned)
    return Columns(run_id=c.run_id, status=c.status, host=c.host, model=c.model, family=c.model_family,
                   delegate=c.delegate, threads=c.threads, power_mode=c.power_mode, usb_speed=usb_speed)


def results_frame(store: Store, selected: ResultFilter | None = None) -> pd.DataFrame:
    """One row per job the filter selects: every column of ``v_results`` plus ``usb_speed`` (measured,
    else planned) and ``layers`` (a stack model's depth). A run id the store lacks is an error."""
    selected = selected or ResultFilter()
    missing = missing_runs(store, selected.runs)
    if missing:
        raise FarmError(f"no run {', '.join(map(str, missing))} in this database; see `farm results --status all`")
    run_ids = select_runs(store, selected) if selected.chooses_runs else None
    view = _view(store)
    c = view.c
    query = (select(view).where(*where(selected, view_columns(view), run_ids))
             .order_by(c.run_id, c.host, c.power_mode, c.model_family, c.model, c.delegate, c.usb_port, c.threads))
    with store.engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all(), columns=[col.name for col in view.c])
    return _derive(store, frame)


load_results = results_frame  # the name the README's report examples use


def _derive(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    measured = frame["usb_speed_measured"] if "usb_speed_measured" in frame else pd.Series(None, index=frame.index)
    planned = frame["usb_speed_planned"] if "usb_speed_planned" in frame else pd.Series(None, index=frame.index)
    frame["usb_speed"] = measured.where(measured.notna(), planned).astype("Int64")
    models = model_rows(store, frame["model_sha256"].dropna().unique().tolist())
    sources = model_rows(store, [m.source_sha256 for m in models.values() if m.source_sha256])
    if "source_model" not in frame:
        frame["source_model"] = [
            sources[models[sha].source_sha256].name if sha in models and models[sha].source_sha256 in sources
            else name for sha, name in zip(frame["model_sha256"], frame["model"], strict=True)]
    frame["layers"] = pd.array([models[sha].layers if sha in models else None for sha in frame["model_sha256"]],
                               dtype="Int64")
    if "l4t" in frame and "jetpack" in frame:
        from ..toolchain import jetpack_of  # JetPack is a name for an L4T release: mapped here, not in SQL

        frame["jetpack"] = frame["jetpack"].where(frame["jetpack"].notna(),
                                                  frame["l4t"].map(lambda v: jetpack_of(v) if isinstance(v, str)
                                                                   else None))
    if "gops" in frame:
        frame["gops"] = pd.to_numeric(frame["gops"], errors="coerce")
    return utc_timestamps(frame)


@dataclass(frozen=True)
class ModelInfo:
    sha256: str
    name: str
    family: str
    layers: int | None
    size_bytes: int
    source_sha256: str | None
    compiler_version: str | None
    compile_report: dict[str, Any] | None


def model_rows(store: Store, shas: list[str]) -> dict[str, ModelInfo]:
    if not shas:
        return {}
    with store.session() as session:
        rows = list(session.scalars(select(ModelRow).where(ModelRow.sha256.in_(shas))))
        parents = {r.id: r.sha256 for r in session.scalars(
            select(ModelRow).where(ModelRow.id.in_([r.source_model_id for r in rows if r.source_model_id])))}
    out = {}
    for row in rows:
        layers = (row.params or {}).get("layers")
        out[row.sha256] = ModelInfo(row.sha256, row.name, row.family, layers if isinstance(layers, int) else None,
                                    row.size_bytes, parents.get(row.source_model_id), row.compiler_version,
                                    row.compile_report)
    return out


def samples_frame(store: Store, job_id: int) -> pd.DataFrame:
    query = (select(SampleRow.idx, SampleRow.duration_ns)
             .join(ResultRow, SampleRow.result_id == ResultRow.id)
             .where(ResultRow.job_id == job_id).order_by(SampleRow.idx))
    with store.engine.connect() as connection:
        return pd.read_sql(query, connection)


def grouped(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per group: how many jobs, how many succeeded, and the median of their medians.

    Groups with no value (a cell without a power mode or USB port) are kept, shown as "-".
    """
    unknown = [name for name in by if name not in GROUPS]
    if unknown:
        raise ValueError(f"cannot group by '{unknown[0]}': choose from {', '.join(GROUPS)}")
    by = [GROUP_COLUMNS.get(name, name) for name in by]
    if frame.empty:
        return pd.DataFrame(columns=[*by, "jobs", "succeeded", "median_ms", "p90_ms"])
    keyed = frame.assign(**{name: frame[name].astype("object").where(frame[name].notna(), "-") for name in by})
    keyed = keyed.assign(_ok=keyed["status"] == "succeeded")
    out = keyed.groupby(by, sort=True, dropna=False).agg(
        jobs=("status", "size"), succeeded=("_ok", "sum"), median_ms=("median_ms", "median"),
        p90_ms=("p90_ms", "median")).reset_index()
    out["succeeded"] = out["succeeded"].astype(int)
    return out
