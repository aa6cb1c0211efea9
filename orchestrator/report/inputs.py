"""What a report's tables are computed from, read in as few rows as the selection allows.

Most tables show only the newest succeeded result of each cell: on the latest 1,000 nightlies that is
1,720 of 55,000 rows, so those are chosen in the database (``results_frame(newest_per=...)``, a window
over each cell). Status counts, run labels, the models named and the hosts-and-toolchains table need
every row, but only a few columns: each is a narrow query (README, "A store that scales").

Tables that compare several results of one cell (Edge TPUs side by side, placements, pipelines, the GPU
tables), the speed-ups when some results are invalid (they use each cell's newest *valid* result) and
the plots read every row: when the selection has any of those, the report reads every row as before
(:func:`from_frame`), and both ways give the tables the same rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from sqlalchemy import case, func, select

from ..results import ResultFilter, results_frame
from ..results.filters import RUNS, select_runs, where
from ..results.rows import _order, view, view_columns
from ..store.db import Store
from . import interference, multitpu, tables
from .columns import REPORT_COLUMNS

# Newest per cell: the cell of tables.newest_per_cell, with the view's backend and precision (migration 0017).
NEWEST_CELL = [*tables.CELL, "backend", "precision"]


@dataclass
class Inputs:
    runs: list[int]  # every selected run that has a job, oldest first
    not_succeeded: dict[str, int]  # status -> jobs
    run_labels: list[tuple[int, Any]]  # (run id, its labels) for each of runs
    every_shas: list[str]  # models of every selected job, whatever its status
    succeeded_rows: int
    one_model_rows: int  # succeeded results of one model each: the seeds' older tables' rows
    simulated: int  # succeeded results measured on the simulated lab's stand-in libedgetpu
    newest: pd.DataFrame  # the newest succeeded one-model result of each cell, every report column
    speed_newest: pd.DataFrame  # the same among the results speed-ups may use (valid ones, unless told)
    invalid: int  # one-model results left out of speed-ups
    frame_shas: list[str]  # models of the one-model results, in the order the rows are read
    context: pd.DataFrame  # host, status and tables.CONTEXT columns: distinct rows of the one-model results
    # Every succeeded row (all report columns): read only when a table needs more than the newest
    succeeded: pd.DataFrame | None = None
    frame: pd.DataFrame | None = None  # its one-model rows
    several: pd.DataFrame | None = None  # its multi-model and pipeline rows


def read(store: Store, selection: ResultFilter, *, every_row: bool, include_invalid: bool) -> Inputs:
    """The report's inputs; ``every_row``: read every row (the plots draw them), not only the newest."""
    table = view(store)
    c = table.c
    run_ids = select_runs(store, selection) if selection.chooses_runs else None
    ok = where(replace(selection, status="succeeded"), view_columns(table), run_ids)
    flags = select(func.count(c.simulated), func.count(c.placement), func.count(c.num_segments),
                   func.count(c.models_in_cell), func.count(c.gpu_cuda_cores),
                   func.sum(case((c.jobs_beside > 0, 1), else_=0)), func.sum(case((c.valid == 0, 1), else_=0)))
    with store.engine.connect() as connection:
        simulated, placed, piped, multi, gpus, beside, invalid = (
            int(v or 0) for v in connection.execute(flags.where(*ok)).one())
    if every_row or placed or piped or multi or gpus or beside or (invalid and not include_invalid):
        return from_frame(results_frame(store, replace(selection, status="all"), REPORT_COLUMNS,
                                        numeric_kinds=True), include_invalid=include_invalid)
    everyone = where(replace(selection, status="all"), view_columns(table), run_ids)
    with store.engine.connect() as connection:
        jobs = connection.execute(select(c.run_id, c.status, c.model_sha256).where(*everyone)
                                  .order_by(*_order(table))).all()
        context_columns = [name for name in tables.CONTEXT if name in c]
        context = connection.execute(select(c.host, *[c[name] for name in context_columns])
                                     .where(*ok).distinct()).all()
    runs = sorted({run_id for run_id, _, _ in jobs})
    statuses = Counter(status for _, status, _ in jobs)
    newest = results_frame(store, replace(selection, status="succeeded"), REPORT_COLUMNS,
                           newest_per=[name for name in NEWEST_CELL if name in c], numeric_kinds=True)
    return Inputs(
        runs=runs, not_succeeded={s: n for s, n in statuses.items() if s != "succeeded"},
        run_labels=_run_labels(store, runs), every_shas=list(dict.fromkeys(s for _, _, s in jobs if s)),
        succeeded_rows=statuses.get("succeeded", 0), one_model_rows=statuses.get("succeeded", 0),
        simulated=simulated, newest=newest, speed_newest=newest,
        invalid=invalid if not include_invalid else 0,
        frame_shas=list(dict.fromkeys(s for _, status, s in jobs if s and status == "succeeded")),
        context=_context(context, ["host", *context_columns]))


def from_frame(every: pd.DataFrame, *, include_invalid: bool) -> Inputs:
    """The report's inputs from every selected row (``results_frame`` with status all)."""
    succeeded = every[every["status"] == "succeeded"].reset_index(drop=True)
    frame, several = multitpu.split(succeeded)
    runs = sorted(every["run_id"].unique().tolist()) if not every.empty else []
    others = every["status"][every["status"] != "succeeded"].value_counts()
    labels = every.drop_duplicates("run_id")[["run_id", "run_labels"]] if "run_labels" in every else every[[]]
    speed_from = frame if include_invalid else interference.valid_only(frame)
    newest = tables.newest_per_cell(frame)
    simulated = int(succeeded["simulated"].notna().sum()) if "simulated" in succeeded else 0
    return Inputs(
        runs=runs, not_succeeded={str(s): int(n) for s, n in others.items()},
        run_labels=list(labels.itertuples(index=False)) if "run_labels" in every else [],
        every_shas=every["model_sha256"].dropna().unique().tolist(), succeeded_rows=len(succeeded),
        one_model_rows=len(frame), simulated=simulated, newest=newest,
        speed_newest=newest if len(speed_from) == len(frame) else tables.newest_per_cell(speed_from),
        invalid=len(frame) - len(speed_from), frame_shas=list(dict.fromkeys(frame["model_sha256"].dropna())),
        context=frame[["host", "status", *[n for n in tables.CONTEXT if n in frame]]],
        succeeded=succeeded, frame=frame, several=several)


def _run_labels(store: Store, runs: list[int]) -> list[tuple[int, Any]]:
    if not runs:
        return []
    with store.engine.connect() as connection:
        return [(run_id, labels) for run_id, labels in connection.execute(
            select(RUNS.c.id, RUNS.c.labels).where(RUNS.c.id.in_(runs)).order_by(RUNS.c.id))]


def _context(rows: list[Any], columns: list[str]) -> pd.DataFrame:
    """The distinct host × toolchain rows as the frame would hold them: JetPack named from L4T where the
    results lack it (``results.rows.derive``), status succeeded."""
    frame = pd.DataFrame([tuple(row) for row in rows], columns=columns)
    if "l4t" in frame and "jetpack" in frame:
        from ..toolchain import jetpack_of

        frame["jetpack"] = [j if j is not None or not isinstance(v, str) else jetpack_of(v)
                            for j, v in zip(frame["jetpack"], frame["l4t"], strict=True)]
    return frame.assign(status="succeeded")
