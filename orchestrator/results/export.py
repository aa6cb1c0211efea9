"""Results frames written to files: CSV or Parquet, chosen by the file's suffix.

Both carry the frame's own column names (v_results'), every column in its one type whatever the
selection (columns.py), and timestamps in UTC with the offset.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import FarmError
from .columns import iso_timestamps, typed


def export(frame: pd.DataFrame, path: Path) -> str:
    """Write CSV or Parquet by the file's suffix; returns the format written."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        iso_timestamps(typed(frame)).to_csv(path, index=False)
        return "csv"
    if suffix in (".parquet", ".pq"):
        typed(frame).to_parquet(path, index=False)
        return "parquet"
    raise FarmError(f"{path}: cannot tell the format from '{suffix or 'no suffix'}'; name it .csv or .parquet")
