"""Results frames written to files: CSV or Parquet, chosen by the file's suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import FarmError


def export(frame: pd.DataFrame, path: Path) -> str:
    """Write CSV or Parquet by the file's suffix; returns the format written."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
        return "csv"
    if suffix in (".parquet", ".pq"):
        _parquet_ready(frame).to_parquet(path, index=False)
        return "parquet"
    raise FarmError(f"{path}: cannot tell the format from '{suffix or 'no suffix'}'; name it .csv or .parquet")


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    # JSON columns come back as lists/dicts on PostgreSQL and as text on SQLite: store them as text.
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, dict | list)).any():
            out[column] = out[column].map(lambda v: None if v is None else json.dumps(v))
    return out
