"""Results as a pandas DataFrame: one row per job, every column of the ``v_results`` view.

``farm results``, ``farm report --export`` and notebooks all read this frame, so a column has one
name everywhere (``run_id``, ``model_family``, ...); the view is documented in the README, "Results".
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from ..store.db import Store
from ..store.schema import ResultRow, SampleRow
from .columns import FLOAT, INTEGER, kind_of, utc_timestamps
from .filters import ResultFilter
from .rows import ModelInfo, model_rows, results_rows, view_columns
from .rows import view as _view

# Dimensions `farm results --group-by` accepts: the matrix's own ("family" is model_family's short name).
GROUPS = ("host", "board", "model", "model_family", "family", "delegate", "threads", "power_mode", "usb_port",
          "usb_speed", "status")
GROUP_COLUMNS = {"family": "model_family"}

__all__ = ["GROUPS", "ModelInfo", "_view", "grouped", "load_results", "model_rows", "results_frame", "samples_frame",
           "view_columns"]


def results_frame(store: Store, selected: ResultFilter | None = None,
                  columns: list[str] | tuple[str, ...] | None = None, *,
                  newest_per: list[str] | None = None, numeric_kinds: bool = False) -> pd.DataFrame:
    """One row per job the filter selects: every column of ``v_results`` plus ``usb_speed`` (measured,
    else planned) and ``layers`` (a stack model's depth). A run id the store lacks is an error.

    ``columns``: only these (``farm report`` reads 65 of the view's 97: each JSON column is parsed out of
    the result document per row, in the database). The rows are
    :func:`orchestrator.results.rows.results_rows`'; here they only get pandas' types.
    ``newest_per``: only the newest row of each cell (see ``results_rows``).
    ``numeric_kinds``: a numeric column (its kind in ``columns.py``) empty in every row read is float, not
    object, so that its type does not depend on which rows were read (``farm report``'s newest rows or all)."""
    rows = results_rows(store, selected, None if columns is None else list(columns), newest_per)
    frame = pd.DataFrame(rows.records, columns=rows.columns)
    if numeric_kinds:
        for name in frame.columns:
            if frame[name].dtype == object and kind_of(name) in (INTEGER, FLOAT) and frame[name].isna().all():
                frame[name] = frame[name].astype("float64")
    if "usb_speed" in frame:
        frame["usb_speed"] = frame["usb_speed"].astype("Int64")
    if "layers" in frame:
        frame["layers"] = pd.array(list(frame["layers"]), dtype="Int64")
    if "gops" in frame:
        frame["gops"] = pd.to_numeric(frame["gops"], errors="coerce")
    return utc_timestamps(frame)


load_results = results_frame  # the name the README's report examples use


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
