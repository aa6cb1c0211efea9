"""What a report says about interference and validity: which results were disturbed (others used the
benchmark's CPUs) or invalid (a validity rule broken), so that no table shows them silently."""

from __future__ import annotations

import pandas as pd


def _flag(frame: pd.DataFrame, column: str, value: int) -> pd.Series:
    if column not in frame:
        return pd.Series(False, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").eq(value).fillna(False).astype(bool)


def disturbed(frame: pd.DataFrame) -> pd.Series:
    return _flag(frame, "disturbed", 1)


def invalid(frame: pd.DataFrame) -> pd.Series:
    return _flag(frame, "valid", 0)


def marks(frame: pd.DataFrame) -> pd.Series:
    """Per row: 'disturbed', 'invalid', 'disturbed, invalid' or ''."""
    d, i = disturbed(frame), invalid(frame)
    return pd.Series([", ".join(name for name, on in (("disturbed", a), ("invalid", b)) if on)
                      for a, b in zip(d, i, strict=True)], index=frame.index, dtype="object")


def valid_only(frame: pd.DataFrame) -> pd.DataFrame:
    """Results that broke no validity rule: what speed-ups are computed from unless asked otherwise."""
    return frame[~invalid(frame)].reset_index(drop=True)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """The disturbed or invalid results among ``rows`` (newest per cell), with their measures and reasons."""
    flagged = rows[disturbed(rows) | invalid(rows)]
    if flagged.empty:
        return pd.DataFrame()
    out = flagged.assign(mark=marks(flagged),
                         reason=[_reason(r) for r in flagged.itertuples()])
    columns = ["host", "model", "delegate", "threads", "median_ms", "cpu_share", "other_load", "mark", "reason"]
    return out[[c for c in columns if c in out]].reset_index(drop=True)


def _reason(row: object) -> str:
    parts = [getattr(row, name, None) for name in ("disturbed_reason", "invalid_reason")]
    return "; ".join(str(p) for p in parts if isinstance(p, str) and p)
