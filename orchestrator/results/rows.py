"""Results as plain rows, one per job, with every column of ``v_results`` and the few derived from it.

``farm results`` prints tables of thousands of rows, and pandas (with numpy) alone takes longer to
import than the goal for the whole command (README, "Short commands"), so the rows are read and
derived here with SQLAlchemy only; :func:`orchestrator.results.frame.results_frame` builds its
DataFrame from these same rows, so a column means the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData, String, Table, cast, func, select

from ..errors import FarmError
from ..gc_pause import collector_paused
from ..store.db import Store
from .filters import Columns, ResultFilter, missing_runs, select_runs, where


@dataclass
class Rows:
    """Column names, and one dict per row holding each of them."""

    columns: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.records

    def __len__(self) -> int:
        return len(self.records)


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


def view(store: Store) -> Table:
    return Table("v_results", MetaData(), autoload_with=store.engine)


def view_columns(table: Table) -> Columns:
    c = table.c
    # Measured by the job where it ran; for a cell that never ran, what the host's facts showed at planning.
    usb_speed = func.coalesce(c.usb_speed_measured, c.usb_speed_planned)
    return Columns(run_id=c.run_id, status=c.status, host=c.host, model=c.model, family=c.model_family,
                   delegate=c.delegate, threads=c.threads, power_mode=c.power_mode, usb_speed=usb_speed)


DERIVED_FROM = {"usb_speed": ("usb_speed_measured", "usb_speed_planned"), "layers": ("model_sha256",),
                "source_model": ("model_sha256", "model"), "jetpack": ("jetpack", "l4t")}


def results_rows(store: Store, selected: ResultFilter | None = None, columns: list[str] | None = None,
                 newest_per: list[str] | None = None) -> Rows:
    """One row per job the filter selects: every column of ``v_results`` plus ``usb_speed`` (measured,
    else planned) and ``layers`` (a stack model's depth). A run id the store lacks is an error.

    ``columns``: only these (and what they are derived from) are read, e.g. a table's 16 of the view's 60:
    on 10,000 rows, reading and converting the others was most of `farm results`' own time.
    ``newest_per``: only the newest row of each cell these view columns make (:func:`newest_query`)."""
    names, fetched = _fetch(store, selected, columns, newest_per)
    rows = Rows(names, [dict(zip(names, row, strict=True)) for row in fetched])
    derive(store, rows, None if columns is None else set(columns))
    return rows


# Derived columns results_columns makes itself; the others need the models (derive).
COLUMNWISE = frozenset({"usb_speed"})


def results_columns(store: Store, selected: ResultFilter | None = None,
                    columns: list[str] | None = None) -> dict[str, list[Any]]:
    """What :func:`results_rows` reads, column by column (name -> one value per row), for a table.

    A table reads its cells a column at a time: 10,000 rows of dicts, made and then taken apart again, were a
    third of `farm results`' own time. Columns derived from the models go through results_rows."""
    derived = {name for name in DERIVED_FROM if columns is None or name in columns}
    if not derived <= COLUMNWISE:
        rows = results_rows(store, selected, columns)
        return {name: [record.get(name) for record in rows.records] for name in rows.columns}
    names, fetched = _fetch(store, selected, columns)
    with collector_paused():  # the columns are new lists of the same rows: no cycles either
        values = dict(zip(names, map(list, zip(*fetched, strict=True)), strict=True)) if fetched else \
            {name: [] for name in names}
    if "usb_speed" in derived:
        measured, planned = values["usb_speed_measured"], values["usb_speed_planned"]
        values["usb_speed"] = [m if m is not None else p for m, p in zip(measured, planned, strict=True)]
    return values


def _fetch(store: Store, selected: ResultFilter | None, columns: list[str] | None,
           newest_per: list[str] | None = None) -> tuple[list[str], list[Any]]:
    """The view's columns read (``columns`` and what they derive from, else all) and the selected rows, sorted."""
    selected = selected or ResultFilter()
    missing = missing_runs(store, selected.runs)
    if missing:
        raise FarmError(f"no run {', '.join(map(str, missing))} in this database; see `farm results --status all`")
    run_ids = select_runs(store, selected) if selected.chooses_runs else None
    table = view(store)
    c = table.c
    names = [col.name for col in table.c]
    if columns is not None:
        wanted = {name for column in columns for name in (column, *DERIVED_FROM.get(column, ()))}
        names = [name for name in names if name in wanted]
    clauses = where(selected, view_columns(table), run_ids)
    if newest_per is not None:
        # The rank over the cell's columns only, then every wanted column of the winners: ranking rows of all
        # the columns made the database lift every JSON column of every row, winners or not.
        ranked = newest_query(table, clauses, newest_per)
        clauses = [c.job_id.in_(select(ranked.c.job_id).where(ranked.c[RANK] == 1))]
    query = select(*[c[name] for name in names]).where(*clauses).order_by(*_order(table))
    with store.engine.connect() as connection, collector_paused():
        return names, connection.execute(query).all()


RANK = "newest_rank"


def _order(table: Any) -> list[Any]:
    # The job id last: rows that tie on everything else (one cell twice in a run) still have one order.
    c = table.c
    return [c.run_id, c.host, c.power_mode, c.model_family, c.model, c.delegate, c.usb_port, c.threads, c.job_id]


def newest_query(table: Table, clauses: list[Any], cell: list[str]) -> Any:
    """The selected jobs with their rank within their cell, newest first: the highest run id, and in one run
    the highest job id (the job planned last). A cell is ``cell``'s columns as text, NULL as '-', the key
    ``orchestrator.report.tables.newest_per_cell`` groups by, so both choose the same row."""
    c = table.c
    keys = [func.coalesce(cast(c[name], String), "-") for name in cell]
    rank = func.row_number().over(partition_by=keys, order_by=[c.run_id.desc(), c.job_id.desc()]).label(RANK)
    return select(c.job_id, rank).where(*clauses).subquery("newest")



def derive(store: Store, rows: Rows, wanted: set[str] | None = None) -> None:
    """Add ``usb_speed``, ``layers`` (and ``source_model`` where the view lacks it); fill ``jetpack`` from L4T.

    ``wanted``: only the derived columns named there (None: all)."""
    columns, records = rows.columns, rows.records
    needs_models = wanted is None or bool({"layers", "source_model"} & wanted)
    models = model_rows(store, sorted({r["model_sha256"] for r in records if r.get("model_sha256")})) \
        if needs_models else {}
    sources = model_rows(store, sorted({m.source_sha256 for m in models.values() if m.source_sha256}))
    add_source = "source_model" not in columns and (wanted is None or "source_model" in wanted)
    jetpack = "l4t" in columns and "jetpack" in columns
    if jetpack:
        from ..toolchain import jetpack_of  # JetPack is a name for an L4T release: mapped here, not in SQL
    for record in records:
        measured, planned = record.get("usb_speed_measured"), record.get("usb_speed_planned")
        record["usb_speed"] = measured if measured is not None else planned
        model = models.get(record.get("model_sha256"))
        if add_source:
            source = sources.get(model.source_sha256) if model is not None and model.source_sha256 else None
            record["source_model"] = source.name if source is not None else record.get("model")
        record["layers"] = model.layers if model is not None else None
        if jetpack and record["jetpack"] is None and isinstance(record["l4t"], str):
            record["jetpack"] = jetpack_of(record["l4t"])
    columns += [name for name in ("usb_speed", *(("source_model",) if add_source else ()), "layers")
                if name not in columns and (wanted is None or name in wanted)]


def model_rows(store: Store, shas: list[str]) -> dict[str, ModelInfo]:
    if not shas:
        return {}
    from ..store.schema import ModelRow  # the ORM only where models are read (not for `farm results`' table)

    with store.session() as session:
        found = list(session.scalars(select(ModelRow).where(ModelRow.sha256.in_(shas))))
        parents = {r.id: r.sha256 for r in session.scalars(
            select(ModelRow).where(ModelRow.id.in_([r.source_model_id for r in found if r.source_model_id])))}
    out = {}
    for row in found:
        layers = (row.params or {}).get("layers")
        out[row.sha256] = ModelInfo(row.sha256, row.name, row.family, layers if isinstance(layers, int) else None,
                                    row.size_bytes, parents.get(row.source_model_id), row.compiler_version,
                                    row.compile_report)
    return out
