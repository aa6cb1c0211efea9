"""One filter for every reader of results: which runs, then which jobs of them.

``farm results``, ``farm report``, ``farm compare``, the nightly job and notebooks all select with
:class:`ResultFilter`; :func:`where` turns it into SQL clauses over whichever columns a reader
queries (the ``v_results`` view, or the tables behind it), every value bound, never pasted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, ColumnElement, DateTime, Integer, select
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table

from ..errors import FarmError
from ..labels import matches as label_matches
from ..store.db import Store

# The columns of `runs` a filter reads, as a Core table: the ORM's (store/schema.py RunRow, whose types these
# are; tests/test_cli_imports.py compares them) would cost `farm results` SQLAlchemy's ORM import.
RUNS = sql_table("runs", sql_column("id", Integer), sql_column("started_at", DateTime(timezone=True)),
                 sql_column("tags", JSON), sql_column("labels", JSON))

STATUSES = ("succeeded", "failed", "skipped", "cancelled", "queued", "dispatched", "running", "all")


@dataclass(frozen=True)
class ResultFilter:
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
    power_modes: tuple[str, ...] = ()  # the requested mode's inventory name (10W, 5W)
    usb_speeds: tuple[int, ...] = ()  # Mb/s: 480 USB2, 5000 USB3; measured where the job ran, else as planned
    status: str = "succeeded"
    # runs carrying every one of these labels: (key, value), or (key, None) for any value (farm run --label)
    labels: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise FarmError(f"status must be one of {', '.join(STATUSES)}, not '{self.status}'")
        for name in ("hosts", "models", "delegates", "power_modes", "tags"):
            for value in getattr(self, name):
                # PostgreSQL cannot even compare text with a NUL in it; no stored name holds one.
                if "\x00" in value:
                    raise FarmError(f"{name.rstrip('s').replace('_', ' ')} filter {value!r} contains a NUL "
                                    "character; names never do")

    @property
    def chooses_runs(self) -> bool:
        return bool(self.runs or self.latest or self.since or self.until or self.tags or self.labels)


@dataclass(frozen=True)
class Columns:
    """The SQL expressions a reader's query holds for each dimension the filter names."""

    run_id: Any
    status: Any
    host: Any
    model: Any
    family: Any
    delegate: Any
    threads: Any
    power_mode: Any
    usb_speed: Any


def where(selected: ResultFilter, columns: Columns, run_ids: list[int] | None) -> list[ColumnElement[bool]]:
    """The clauses that keep the filter's rows; ``run_ids`` comes from :func:`select_runs` (None: any run)."""
    clauses = []
    if run_ids is not None:
        clauses.append(columns.run_id.in_(run_ids))
    if selected.status != "all":
        clauses.append(columns.status == selected.status)
    for values, column in ((selected.hosts, columns.host), (selected.delegates, columns.delegate),
                           (selected.threads, columns.threads), (selected.power_modes, columns.power_mode),
                           (selected.usb_speeds, columns.usb_speed)):
        if values:
            clauses.append(column.in_(values))
    if selected.models:
        clauses.append(columns.model.in_(selected.models) | columns.family.in_(selected.models))
    return clauses


def parse_when(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time; a bare date means its start (or, for an upper bound, the next day's start)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=timezone.utc)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FarmError(f"'{text}' is not a date: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+00:00]") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; farm writes UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def select_runs(store: Store, selected: ResultFilter) -> list[int]:
    """The ids of the runs the filter names, oldest first; run ids not in the store are left out.

    The database narrows the runs (ids, a window around since/until, the newest one) so that a year of
    nightlies is not read to keep a few; the exact checks stay here, where a stored time's format cannot
    matter (SQLite holds text) and where tags and labels, JSON in the database, are compared alike on both."""
    c = RUNS.c
    in_python = bool(selected.tags or selected.labels)
    query = select(c.id, c.started_at, *((c.tags, c.labels) if in_python else ()))
    if selected.runs:
        query = query.where(c.id.in_(sorted(set(selected.runs))))
    # A day's margin each way: on SQLite the bound is compared as text, whatever offset or separator a stored
    # time was written with; the margin only lets extra runs through to the exact comparison below.
    if selected.since:
        query = query.where(c.started_at >= _utc(selected.since).astimezone(timezone.utc) - timedelta(days=1))
    if selected.until:
        query = query.where(c.started_at < _utc(selected.until).astimezone(timezone.utc) + timedelta(days=1))
    exact_in_sql = not (in_python or selected.since or selected.until)
    query = query.order_by(c.id.desc()).limit(1) if selected.latest and exact_in_sql else query.order_by(c.id)
    with store.engine.connect() as connection:
        runs = list(connection.execute(query))
    chosen = []
    for run in runs:
        run_id, started_at = run[0], run[1]
        if selected.since and _utc(started_at) < selected.since:
            continue
        if selected.until and _utc(started_at) >= selected.until:
            continue
        if selected.tags and not set(selected.tags) <= set(run[2] or ()):
            continue
        if selected.labels and not label_matches(run[3], selected.labels):
            continue
        chosen.append(run_id)
    return chosen[-1:] if selected.latest else chosen


def missing_runs(store: Store, run_ids: tuple[int, ...] | list[int]) -> list[int]:
    """The run ids of these that the store does not hold."""
    if not run_ids:
        return []
    with store.engine.connect() as connection:
        known = set(connection.scalars(select(RUNS.c.id).where(RUNS.c.id.in_(list(run_ids)))))
    return sorted(set(run_ids) - known)
