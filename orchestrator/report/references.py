"""The reference column: each result beside the published time for the same model, board, delegate and
setting, and whether it falls outside the band (pycoral's own check allows ±30 %)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..references.model import model_key
from .tables import newest_per_cell, usb_label

DEFAULT_BAND = 0.30
STAT_COLUMN = {"mean": "mean_ms", "median": "median_ms", "p90": "p90_ms"}


def _model_keys(row: pd.Series) -> set[str]:
    keys = {model_key(str(row["model"]))}
    source = row.get("source_model")
    if row["delegate"] == "edgetpu" and isinstance(source, str):
        # A twin farm compiled is named '<source>+edgetpu-<version>'; pycoral names it '<source>_edgetpu'.
        keys.add(model_key(source) + "_edgetpu")
    return keys


def _same(setting: Any, value: Any) -> bool:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return False
    try:
        return int(setting) == int(value) if isinstance(setting, int) else str(setting) == str(value)
    except (TypeError, ValueError):
        return False


def best_match(row: pd.Series, refs: pd.DataFrame) -> pd.Series | None:
    """The most specific reference (most settings, all equal to the row's) for this result row."""
    keys = _model_keys(row)
    candidates = refs[(refs["board"] == row["board"]) & (refs["delegate"] == row["delegate"])
                      & refs["ref_model"].isin(keys)]
    best, specificity = None, -1
    for _, ref in candidates.iterrows():
        settings = ref["settings"] or {}
        if all(_same(v, row.get(k)) for k, v in settings.items()) and len(settings) > specificity:
            best, specificity = ref, len(settings)
    return best


def reference_table(frame: pd.DataFrame, refs: pd.DataFrame, band: float = DEFAULT_BAND) -> pd.DataFrame:
    """One row per newest result that has a reference: measured (the reference's statistic), reference,
    measured/reference, and 'outside ±N%' where the ratio leaves the band."""
    rows = newest_per_cell(frame)
    if rows.empty or refs.empty or "board" not in rows:
        return pd.DataFrame()
    out = []
    for _, row in rows.iterrows():
        ref = best_match(row, refs)
        if ref is None:
            continue
        measured = row[STAT_COLUMN.get(ref["reference_stat"], "median_ms")]
        ratio = measured / ref["reference_ms"]
        out.append({"model": row["model"], "host": row["host"], "board": row["board"], "delegate": row["delegate"],
                    "threads": row["threads"], "power_mode": row.get("power_mode"),
                    "usb": usb_label(row.get("usb_speed")), "stat": ref["reference_stat"],
                    "measured_ms": measured, "reference_ms": ref["reference_ms"], "ratio": ratio,
                    "check": "ok" if abs(ratio - 1) <= band else f"outside ±{band:.0%}",
                    "reference": ref["reference_source"]})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    if table["power_mode"].isna().all():
        table = table.drop(columns=["power_mode"])
    if (table["usb"] == "-").all():
        table = table.drop(columns=["usb"])
    return table.sort_values(["host", "model", "delegate", "threads"], kind="stable").reset_index(drop=True)
