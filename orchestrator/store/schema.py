"""The results database: SQLAlchemy 2 tables for runs, jobs, results and samples.

Every result keeps its context: the job (model, delegate, threads, timing
settings), the host and a snapshot of its facts as they were when it ran, and
every timed sample, so numbers can be re-summarised and compared later.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class HostRow(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str | None] = mapped_column(String(255))
    board: Mapped[str | None] = mapped_column(String(128))
    transport: Mapped[str] = mapped_column(String(16))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # LAVA's Good/Bad: "unhealthy" after repeated infrastructure failures, no jobs until a health check passes.
    health: Mapped[str] = mapped_column(String(16), default="ok", server_default="ok")
    infra_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in a row
    health_reason: Mapped[str | None] = mapped_column(Text)
    health_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HostFactsRow(Base):
    """A snapshot of what a host reported about itself at one moment."""

    __tablename__ = "host_facts"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    facts: Mapped[dict[str, Any]]


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    family: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(32))  # generated | imported | compiled
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    inputs: Mapped[list[Any]]
    outputs: Mapped[list[Any]]
    ops_per_inference: Mapped[int | None] = mapped_column(BigInteger)
    needs_edgetpu: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    op_counts: Mapped[dict[str, Any] | None] = mapped_column()  # opcount.OpCount.as_dict(): per op type
    # A compiled model points at the model it was compiled from, with the compiler's version and its
    # parsed log, so the same source compiled by two compiler versions gives two comparable rows.
    source_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    compiler_version: Mapped[str | None] = mapped_column(String(64))
    compile_report: Mapped[dict[str, Any] | None] = mapped_column()


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    matrix: Mapped[str] = mapped_column(String(200))
    inventory: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | finished | failed | interrupted
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    controller_version: Mapped[str] = mapped_column(String(32))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    # What the run measured, as `farm run --label key=value` gave it: {"commit": "abc", "firmware": "5.1"}.
    labels: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    # The matrix, hosts and models the run was started with: --resume plans a run killed before its jobs were.
    plan: Mapped[dict[str, Any] | None] = mapped_column()
    # Submitted (`farm submit`) for `farm serve` controllers to share, rather than run by the process that made it.
    shared: Mapped[bool] = mapped_column(default=False, server_default=false())
    jobs: Mapped[list[JobRow]] = relationship(back_populates="run")


class JobRow(Base):
    """One matrix cell of one run: queued, dispatched, running, then succeeded, failed, skipped or cancelled."""

    __tablename__ = "jobs"
    # ix_jobs_status_cell (migration 0022): the cell pivot's aggregate reads this index, not the table.
    __table_args__ = (UniqueConstraint("run_id", "cell_key"),
                      Index("ix_jobs_status_cell", "status", "host_id", "model_id", "delegate", "threads",
                            "power_mode"))
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    cell_key: Mapped[str] = mapped_column(String(400))
    delegate: Mapped[str] = mapped_column(String(16))
    threads: Mapped[int] = mapped_column(Integer)
    power_mode: Mapped[str | None] = mapped_column(String(64))  # the name the inventory gives it
    usb_port: Mapped[str | None] = mapped_column(String(64))  # a port name or sysfs port path
    usb_speed: Mapped[int | None] = mapped_column(Integer)  # Mb/s the host's facts showed when planned
    # The inference backend (NULL in runs from before backends: tflite) and the precision the cell runs at
    # (the matrix's, else the model file's own: int8 for the TFLite families, fp32 for the ONNX ones).
    backend: Mapped[str | None] = mapped_column(String(32))
    precision: Mapped[str | None] = mapped_column(String(8))
    timing: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Crash safety (orchestrator/lifecycle.py): the failure's precise class (unreachable, link-lost, agent-died,
    # host-key, disk-full, load-error, invoke-error), when it was handed to the agent's spool and under
    # which key, and the job document sent, so a resumed controller re-sends exactly the same job.
    failure: Mapped[str | None] = mapped_column(String(32))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    spool_key: Mapped[str | None] = mapped_column(String(200))
    job_doc: Mapped[dict[str, Any] | None] = mapped_column()
    # A shared run's job is held by one `farm serve` controller (orchestrator/sites/claims.py) until its lease,
    # in database time, runs out unrenewed.
    claim_owner: Mapped[str | None] = mapped_column(String(200), index=True)
    claim_site: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run: Mapped[RunRow] = relationship(back_populates="jobs")


class ControllerRow(Base):
    """A `farm serve` controller: its site and its last heartbeat (its leases are renewed with it)."""

    __tablename__ = "controllers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ResultRow(Base):
    __tablename__ = "results"
    # (job, attempt) is the idempotency key of ingest; job_id alone is unique too: one result per job.
    __table_args__ = (Index("uq_results_job_attempt", "job_id", "attempt", unique=True),
                      # Migration 0022: a median without reading the row and its result document.
                      Index("ix_results_job_median", "job_id", "median_ms"))
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    attempt: Mapped[int | None] = mapped_column(Integer)
    spool_key: Mapped[str | None] = mapped_column(String(200))
    facts_id: Mapped[int | None] = mapped_column(ForeignKey("host_facts.id"))
    runtime_name: Mapped[str | None] = mapped_column(String(32))
    runtime_version: Mapped[str | None] = mapped_column(String(32))
    python_version: Mapped[str | None] = mapped_column(String(32))
    init_ms: Mapped[float] = mapped_column(Float)
    first_inference_ms: Mapped[float] = mapped_column(Float)
    warmup_runs: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    mean_ms: Mapped[float] = mapped_column(Float)
    median_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    p99_ms: Mapped[float] = mapped_column(Float)
    min_ms: Mapped[float] = mapped_column(Float)
    max_ms: Mapped[float] = mapped_column(Float)
    std_ms: Mapped[float] = mapped_column(Float)
    power_mode_measured: Mapped[str | None] = mapped_column(String(64))
    usb_speed_measured: Mapped[int | None] = mapped_column(Integer)  # Mb/s: 480 is USB2, 5000 USB3
    throttled: Mapped[bool | None]
    avg_power_w: Mapped[float | None] = mapped_column(Float)
    energy_mj: Mapped[float | None] = mapped_column(Float)  # per inference
    detail: Mapped[dict[str, Any]]  # the agent's whole result document, samples left out
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CellTotalRow(Base):
    """Per cell (host, model, delegate, threads, power mode): how many succeeded results and the sum of their
    medians, added to in the transaction that stores each result (migration 0024), so that the cell pivot over
    every result reads a few thousand rows, not every result (orchestrator/results/pivot.py)."""

    __tablename__ = "cell_totals"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    delegate: Mapped[str] = mapped_column(String(16), primary_key=True)
    threads: Mapped[int] = mapped_column(Integer, primary_key=True)
    # '' for a job without one: a key column cannot be NULL (and NULLs never conflict in an upsert).
    power_mode: Mapped[str] = mapped_column(String(64), primary_key=True)
    results: Mapped[int] = mapped_column(Integer)
    total_median_ms: Mapped[float] = mapped_column(Float)


class SampleRow(Base):
    """Every timed invoke, in order, so any statistic can be recomputed later."""

    __tablename__ = "samples"
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    duration_ns: Mapped[int] = mapped_column(BigInteger)


class NightlyRow(Base):
    """One `farm nightly`: what triggered it, the runs it made (one per trial) and its outcome."""

    __tablename__ = "nightly_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    matrix: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | finished | failed | idle
    forced: Mapped[bool] = mapped_column(default=False)
    triggers: Mapped[list[Any]] = mapped_column(default=list)  # toolchain changes that fired it
    run_ids: Mapped[list[Any]] = mapped_column(default=list)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # verdict state -> cells
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)


class BaselineRow(Base):
    """The accepted reference of one matrix cell: the runs whose results for that cell it compares against."""

    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("lineage_key", name="uq_baselines_lineage_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    # The cell key with the model's sha replaced by its source model's, so a model recompiled by a new
    # compiler is compared with the same model compiled by the previous one.
    lineage_key: Mapped[str] = mapped_column(String(400))
    cell_key: Mapped[str] = mapped_column(String(400))
    run_ids: Mapped[list[Any]] = mapped_column(default=list)
    median_ms: Mapped[float | None] = mapped_column(Float)
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    how: Mapped[str] = mapped_column(String(32))  # first-run | accepted | nightly-improved


class CellVerdictRow(Base):
    __tablename__ = "cell_verdicts"
    id: Mapped[int] = mapped_column(primary_key=True)
    nightly_id: Mapped[int] = mapped_column(ForeignKey("nightly_runs.id"), index=True)
    lineage_key: Mapped[str] = mapped_column(String(400))
    cell_key: Mapped[str] = mapped_column(String(400))
    state: Mapped[str] = mapped_column(String(16))
    ratio: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    baseline_ms: Mapped[float | None] = mapped_column(Float)
    current_ms: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    drift: Mapped[dict[str, Any] | None] = mapped_column()
    detail: Mapped[str] = mapped_column(Text, default="")


class ToolchainVersionRow(Base):
    """The version of one toolchain component on one host (or the controller) as last probed."""

    __tablename__ = "toolchain_versions"
    __table_args__ = (UniqueConstraint("host", "component", name="uq_toolchain_versions_host_component"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(64))  # an inventory host name, or "controller"
    component: Mapped[str] = mapped_column(String(64))  # edgetpu_compiler, libedgetpu, tflite_runtime, ...
    version: Mapped[str | None] = mapped_column(String(200))  # None: probed and absent
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ToolchainEventRow(Base):
    """A toolchain component that changed version (or appeared, or went away) between two probes."""

    __tablename__ = "toolchain_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(64), index=True)
    component: Mapped[str] = mapped_column(String(64))
    old_version: Mapped[str | None] = mapped_column(String(200))
    new_version: Mapped[str | None] = mapped_column(String(200))
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ReferenceRow(Base):
    """A published time for one model on one board under one setting (pycoral's reference CSVs, the seeds'
    tables), shown beside measured results and usable as a baseline."""

    __tablename__ = "reference_times"
    __table_args__ = (UniqueConstraint("board", "model", "delegate", "setting_key", "metric", "dataset",
                                       name="uq_reference_times_cell"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    board: Mapped[str] = mapped_column(String(128), index=True)  # as the inventory names it (`board:`)
    model: Mapped[str] = mapped_column(String(200))  # file stem: no directory, no .tflite
    delegate: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # v_results column -> value, e.g. threads
    setting_key: Mapped[str] = mapped_column(String(400), default="")  # settings as sorted k=v, for uniqueness
    metric: Mapped[str] = mapped_column(String(16), default="inference")  # inference | training
    dataset: Mapped[str] = mapped_column(String(64), default="")
    stat: Mapped[str] = mapped_column(String(16), default="mean")  # what the published figure is
    value_ms: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text)  # file it came from, or "SEEDS §1"
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
