"""The type of every results column, whatever rows a selection holds: what makes two exports share a schema.

Pandas infers a column's type from its values, so a column that is empty in one selection (no power mode,
no Edge TPU) would be written to Parquet as type ``null`` there and as ``string`` or ``double`` elsewhere:
two labs' files would not concatenate. Here each column has one type: the view's own columns are listed
below, and the columns later migrations lift out of JSON (``JSON_COLUMNS``: text, int or float) are read
from the migration chain itself, so a column another migration adds is typed without editing this file.
"""

from __future__ import annotations

import functools
import importlib
import json

import pandas as pd

INTEGER, FLOAT, BOOLEAN, STRING, TIMESTAMP = "int", "float", "bool", "text", "timestamp"

VIEW_KINDS = {
    **dict.fromkeys(("run_id", "job_id", "attempt", "ops_per_inference", "model_size_bytes", "threads",
                     "usb_speed_planned", "usb_speed_measured", "samples", "warmup_runs", "facts_id", "usb_speed",
                     "layers", "cpu_count"), INTEGER),
    **dict.fromkeys(("avg_power_w", "energy_mj", "temp_before_c", "temp_after_c", "mean_ms", "median_ms", "p90_ms",
                     "p99_ms", "min_ms", "max_ms", "std_ms", "init_ms", "first_inference_ms", "gops"), FLOAT),
    **dict.fromkeys(("model_needs_edgetpu", "throttled"), BOOLEAN),
    **dict.fromkeys(("run_started_at", "started_at", "finished_at"), TIMESTAMP),
}
TIMESTAMPS = tuple(name for name, kind in VIEW_KINDS.items() if kind == TIMESTAMP)
PANDAS_TYPES = {INTEGER: "Int64", FLOAT: "float64", BOOLEAN: "boolean", STRING: "string"}


@functools.cache
def lifted_kinds() -> dict[str, str]:
    """Column -> kind of every column the migrations lift out of JSON, the newest migration's definition."""
    from alembic.script import ScriptDirectory

    from ..store.db import _alembic_config

    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    for revision in script.walk_revisions():  # newest first
        module = getattr(revision, "module", None)
        columns = getattr(module, "JSON_COLUMNS", None) if module is not None else None
        if columns:
            return {name: spec[2] for name, spec in columns.items()}
    from ..own_packages import bind_own_package

    bind_own_package("migrations")
    return dict(importlib.import_module("migrations.versions.0009_v_results_context").JSON_COLUMNS)


def kind_of(column: str, default: str | None = STRING) -> str | None:
    return VIEW_KINDS.get(column) or lifted_kinds().get(column) or default


def utc_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """The run's and job's times as timezone-aware UTC (SQLite hands back naive text; farm writes UTC)."""
    for column in TIMESTAMPS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="mixed")
    return frame


def typed(frame: pd.DataFrame, *, known_only: bool = False) -> pd.DataFrame:
    """A copy of ``frame`` with every column in its one type (JSON values as JSON text). A column that is not
    a results column is text, or, with ``known_only`` (a `farm query` of any SQL), left as pandas read it."""
    out = utc_timestamps(frame.copy())
    for column in out.columns:
        kind = kind_of(column, None if known_only else STRING)
        if kind is None or kind == TIMESTAMP:
            continue
        values = out[column]
        if kind == STRING:
            # JSON columns come back as lists/dicts on PostgreSQL and as text on SQLite: text on both.
            values = values.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
            out[column] = values.astype("object").where(values.notna(), None).map(
                lambda v: v if v is None or isinstance(v, str) else str(v)).astype("string")
        elif kind == BOOLEAN:
            out[column] = values.astype("object").where(values.notna(), None).map(
                lambda v: None if v is None else bool(v)).astype("boolean")
        else:
            out[column] = pd.to_numeric(values, errors="coerce").astype(PANDAS_TYPES[kind])
    return out


def iso_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """For CSV and JSON: timestamps as ISO 8601 text with the offset (2026-12-02T01:00:00.123456+00:00)."""
    out = frame.copy()
    for column in TIMESTAMPS:
        if column in out and isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].map(lambda v: None if pd.isna(v) else v.isoformat())
    return out
