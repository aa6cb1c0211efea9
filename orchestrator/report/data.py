"""Results for reports and notebooks: the ``v_results`` view as a DataFrame, selected like the CLI does.

Runs are chosen first (latest, by id, by date range, by tag), then rows by their dimensions.
Every value is bound by SQLAlchemy, never pasted into SQL, so a hostile filter value is only data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import MetaData, Table, select

from ..errors import FarmError
from ..store.db import Store
from ..store.schema import ModelRow, RunRow

STATUSES = ("succeeded", "failed", "skipped", "queued", "running", "all")


@dataclass(frozen=True)
class Selection:
    """Which runs, then which rows of them. Empty tuples mean "any"."""

    runs: tuple[int, ...] = ()
    latest: bool = False  # only the newest of the runs the other run criteria leave
    since: datetime | None = None  # runs started at or after
    until: datetime | None = None  # runs started before
    tags: tuple[str, ...] = ()  # runs carrying every one of these tags
    hosts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # model names or families
    delegates: tuple[str, ...] = ()
    threads: tuple[int, ...] = ()
    power_modes: tuple[str, ...] = ()
    usb_speeds: tuple[int, ...] = ()  # Mb/s, measured where known, else as planned
    status: str = "succeeded"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise FarmError(f"status must be one of {', '.join(STATUSES)}, not '{self.status}'")
        for name in ("hosts", "models", "delegates", "power_modes", "tags"):
            for value in getattr(self, name):
                # PostgreSQL cannot even compare text with a NUL in it; no stored name holds one.
                if "\x00" in value:
                    raise FarmError(f"{name.rstrip('s').replace('_', ' ')} filter {value!r} contains a NUL "
                                    "character; names never do")


def parse_when(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time; a bare date means its start (or, for an upper bound, the next day's start)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=timezone.utc)
            return moment + pd.Timedelta(days=1).to_pytimedelta() if end_of_day else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FarmError(f"'{text}' is not a date: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+00:00]") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; farm writes UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def select_runs(store: Store, selection: Selection) -> list[int]:
    """The ids of the runs the selection names, oldest first."""
    with store.session() as session:
        runs = list(session.execute(select(RunRow.id, RunRow.started_at, RunRow.tags).order_by(RunRow.id)))
    chosen = []
    for run_id, started_at, tags in runs:
        if selection.runs and run_id not in selection.runs:
            continue
        if selection.since and _utc(started_at) < selection.since:
            continue
        if selection.until and _utc(started_at) >= selection.until:
            continue
        if selection.tags and not set(selection.tags) <= set(tags or ()):
            continue
        chosen.append(run_id)
    missing = sorted(set(selection.runs) - {r for r, _, _ in runs})
    if missing:
        raise FarmError(f"no run {', '.join(map(str, missing))} in this database; see `farm results --status all`")
    return chosen[-1:] if selection.latest else chosen


def _view(store: Store) -> Table:
    return Table("v_results", MetaData(), autoload_with=store.engine)


def load_results(store: Store, selection: Selection | None = None) -> pd.DataFrame:
    """One row per job of the selected runs, every column of ``v_results`` plus ``usb_speed``,
    ``source_model`` and ``layers`` (derived here for the reports)."""
    selection = selection or Selection()
    run_ids = select_runs(store, selection)
    view = _view(store)
    c = view.c
    query = select(view).where(c.run_id.in_(run_ids)).order_by(c.run_id, c.host, c.model, c.delegate, c.threads)
    if selection.status != "all":
        query = query.where(c.status == selection.status)
    if selection.hosts:
        query = query.where(c.host.in_(selection.hosts))
    if selection.models:
        query = query.where(c.model.in_(selection.models) | c.model_family.in_(selection.models))
    if selection.delegates:
        query = query.where(c.delegate.in_(selection.delegates))
    if selection.threads:
        query = query.where(c.threads.in_(selection.threads))
    if selection.power_modes:
        query = query.where(c.power_mode.in_(selection.power_modes))
    with store.engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all(), columns=[col.name for col in view.c])
    frame = _derive(store, frame)
    if selection.usb_speeds:
        frame = frame[frame["usb_speed"].isin(selection.usb_speeds)].reset_index(drop=True)
    return frame


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
    return frame


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
