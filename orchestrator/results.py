"""Read results back as pandas DataFrames: one row per job, with its context."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Select, func, select

from .store.db import Store
from .store.schema import HostRow, JobRow, ModelRow, ResultRow, RunRow

STATUSES = ("succeeded", "failed", "skipped", "cancelled", "queued", "dispatched", "running", "all")
# Dimensions `farm results --group-by` accepts: the matrix's own.
GROUPS = ("host", "board", "model", "family", "delegate", "threads", "power_mode", "usb_port", "usb_speed", "status")


@dataclass(frozen=True)
class ResultFilter:
    hosts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    delegates: tuple[str, ...] = ()
    threads: tuple[int, ...] = ()
    runs: tuple[int, ...] = ()
    status: str = "succeeded"
    latest_run: bool = False
    power_modes: tuple[str, ...] = ()  # the requested mode's inventory name (10W, 5W)
    usb_speeds: tuple[int, ...] = ()  # Mb/s: 480 USB2, 5000 USB3; measured where the job ran, else from facts


def _usb_speed():  # type: ignore[no-untyped-def]
    # Measured by the job where it ran; for a cell that never ran, what the host's facts showed at planning.
    return func.coalesce(ResultRow.usb_speed_measured, JobRow.usb_speed)


def _query(filters: ResultFilter) -> Select:
    query = (
        select(
            RunRow.id.label("run"), JobRow.id.label("job"), RunRow.matrix.label("matrix"),
            HostRow.name.label("host"), HostRow.board.label("board"),
            ModelRow.name.label("model"), ModelRow.family.label("family"), ModelRow.sha256.label("model_sha256"),
            ModelRow.ops_per_inference.label("ops_per_inference"),
            JobRow.delegate.label("delegate"), JobRow.threads.label("threads"), JobRow.status.label("status"),
            JobRow.reason.label("reason"), JobRow.error_kind.label("error_kind"),
            JobRow.power_mode.label("power_mode"), ResultRow.power_mode_measured.label("power_mode_measured"),
            JobRow.usb_port.label("usb_port"), _usb_speed().label("usb_speed"),
            ResultRow.throttled.label("throttled"), ResultRow.avg_power_w.label("avg_power_w"),
            ResultRow.energy_mj.label("energy_mj"),
            ResultRow.runtime_name.label("runtime"), ResultRow.runtime_version.label("runtime_version"),
            ResultRow.python_version.label("python"), ResultRow.count.label("samples"),
            ResultRow.median_ms, ResultRow.mean_ms, ResultRow.p90_ms, ResultRow.p99_ms, ResultRow.min_ms,
            ResultRow.max_ms, ResultRow.std_ms, ResultRow.init_ms, ResultRow.first_inference_ms,
            ResultRow.warmup_runs, JobRow.started_at, JobRow.finished_at,
        )
        .join(RunRow, JobRow.run_id == RunRow.id)
        .join(HostRow, JobRow.host_id == HostRow.id)
        .join(ModelRow, JobRow.model_id == ModelRow.id)
        .outerjoin(ResultRow, ResultRow.job_id == JobRow.id)
        .order_by(RunRow.id, HostRow.name, JobRow.power_mode, ModelRow.family, ModelRow.name, JobRow.delegate,
                  JobRow.usb_port, JobRow.threads)
    )
    if filters.status != "all":
        query = query.where(JobRow.status == filters.status)
    if filters.hosts:
        query = query.where(HostRow.name.in_(filters.hosts))
    if filters.models:
        query = query.where(ModelRow.name.in_(filters.models) | ModelRow.family.in_(filters.models))
    if filters.delegates:
        query = query.where(JobRow.delegate.in_(filters.delegates))
    if filters.threads:
        query = query.where(JobRow.threads.in_(filters.threads))
    if filters.runs:
        query = query.where(RunRow.id.in_(filters.runs))
    if filters.power_modes:
        query = query.where(JobRow.power_mode.in_(filters.power_modes))
    if filters.usb_speeds:
        query = query.where(_usb_speed().in_(filters.usb_speeds))
    if filters.latest_run:
        query = query.where(RunRow.id == select(RunRow.id).order_by(RunRow.id.desc()).limit(1).scalar_subquery())
    return query


def results_frame(store: Store, filters: ResultFilter | None = None) -> pd.DataFrame:
    """Results with their context; every value is bound by SQLAlchemy, never pasted into SQL."""
    with store.engine.connect() as connection:
        frame = pd.read_sql(_query(filters or ResultFilter()), connection)
    if not frame.empty and "ops_per_inference" in frame:
        gops = frame["ops_per_inference"] / (frame["median_ms"] * 1e6)
        frame.insert(frame.columns.get_loc("median_ms"), "gops", gops.round(3))
    return frame


def samples_frame(store: Store, job_id: int) -> pd.DataFrame:
    from .store.schema import SampleRow

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
    if frame.empty:
        return pd.DataFrame(columns=[*by, "jobs", "succeeded", "median_ms", "p90_ms"])
    keyed = frame.assign(**{name: frame[name].astype("object").where(frame[name].notna(), "-") for name in by})
    keyed = keyed.assign(_ok=keyed["status"] == "succeeded")
    out = keyed.groupby(by, sort=True, dropna=False).agg(
        jobs=("status", "size"), succeeded=("_ok", "sum"), median_ms=("median_ms", "median"),
        p90_ms=("p90_ms", "median")).reset_index()
    out["succeeded"] = out["succeeded"].astype(int)
    return out
