"""Run a matrix: one lane per host (one benchmark at a time there), all lanes at once.

Facts are gathered from every host first, concurrently, because the matrix
depends on them (threads up to the CPUs online, a runtime present). Results are
stored as each job finishes, so an interrupted run keeps everything it measured.
Each lane hands its jobs to the agent's spool and collects them (``dispatch``),
so a dropped link or a killed controller loses nothing: ``resume`` goes on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from agent.schema import DEFAULT_BACKEND, TIMING_DEFAULTS, make_job

from . import spool_keys
from .agent_client import AgentSession
from .dispatch import ANSWER_SLACK, Lane, LaneJob, LaneStats
from .errors import FarmError
from .inventory import Host
from .lifecycle import RetryPolicy, classify_transport_error
from .matrix import Cell, MatrixSpec, expand
from .models import registry
from .placement import tpu_request
from .power_usb import current_mode, edgetpu_request, order_by_mode, power_request, restore_notes
from .replan import plan_document
from .store import jobs as job_store
from .store import records
from .store.db import Store
from .store.journal import StoreWriter
from .store.retry import with_db_retry
from .store.schema import ModelRow
from .transport import open_transport

MAX_CONNECT_WORKERS = 64


class RunObserver(Protocol):
    def host_state(self, host: str, text: str) -> None: ...
    def jobs_planned(self, host: str, total: int) -> None: ...
    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None: ...


class QuietObserver:
    def host_state(self, host: str, text: str) -> None:
        pass

    def jobs_planned(self, host: str, total: int) -> None:
        pass

    def job_finished(self, host: str, cell: Cell, status: str, detail: str) -> None:
        pass


@dataclass
class HostLink:
    host: Host
    host_id: int
    session: AgentSession | None = None
    facts: dict[str, Any] | None = None
    facts_id: int | None = None
    error: str | None = None


@dataclass
class RunOutcome:
    run_id: int
    counts: Counter = field(default_factory=Counter)
    unreachable: dict[str, str] = field(default_factory=dict)
    lanes: dict[str, LaneStats] = field(default_factory=dict)
    journal_pending: int = 0  # writes still waiting for the database: the run is incomplete
    store_stats: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(self, store: Store, observer: RunObserver | None = None,
                 transport_options: dict[str, Any] | None = None, policy: RetryPolicy | None = None) -> None:
        self.store = store
        self.observer = observer or QuietObserver()
        self.transport_options = transport_options or {}
        self.policy = policy or RetryPolicy.from_env()
        # Who holds a host's lock on the agent: this controller process, told apart from any other.
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.on_run_created: Any = None  # called with the run id as soon as it exists
        # Cell keys a run is limited to (a re-run of disturbed cells); None runs the whole matrix.
        self.only_cells: set[str] | None = None
        self.writer: StoreWriter | None = None
        # One writer at a time: SQLite allows no more, and it keeps PostgreSQL simple too.
        self._store_lock = threading.Lock()
        self._connect_slots = threading.BoundedSemaphore(MAX_CONNECT_WORKERS)
        self.stop = threading.Event()  # set: every lane stops at its next step (interrupt, `farm serve` stopping)

    def run(self, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow], inventory: str,
            tags: list[str] | None = None, labels: dict[str, str] | None = None) -> RunOutcome:
        if not hosts:
            raise FarmError("no hosts to run on: the inventory (or --host/--tag selection) is empty")
        if not models:
            raise FarmError("no models to run: register some with `farm models build` or `farm models add`")
        # A database restarting now is waited for: nothing is measured yet that a journal could keep.
        retried: dict[str, int] = {}
        run_id = with_db_retry(records.create_run, self.store, spec.name, inventory, tags or [],
                               plan=plan_document(spec, hosts, models, self.transport_options, inventory),
                               labels=labels, stats=retried)
        if self.on_run_created:
            self.on_run_created(run_id)
        return self.run_planned(run_id, spec, hosts, models, retried)

    def run_planned(self, run_id: int, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow],
                    retried: dict[str, int] | None = None) -> RunOutcome:
        """Plan run ``run_id``'s matrix and run it: a run just created, or one --resume finds unplanned."""
        retried = dict(retried or {})
        outcome = RunOutcome(run_id)
        links = [HostLink(host, with_db_retry(records.upsert_host, self.store, host, stats=retried))
                 for host in hosts]
        self.writer = StoreWriter(self.store, run_id)
        self.writer.stats["retried"] += retried.get("retried", 0)
        self._drive(run_id, links, self.planner(run_id, spec, models, outcome), outcome)
        return outcome

    def planner(self, run_id: int, spec: MatrixSpec, models: list[ModelRow],
                outcome: RunOutcome) -> Callable[[HostLink], list[LaneJob]]:
        """Plan one host's cells once its lane has reached it (or given up): its facts decide them."""
        def plan(link: HostLink) -> list[LaneJob]:
            # Model sets and pipelines find their files (compiled twins, groups, segments) among every model.
            catalogue = registry.list_models(self.store) if spec.model_sets or spec.segments else None
            cells = expand(spec, [link.host], models, {link.host.name: link.facts}, catalogue)
            if self.only_cells is not None:  # a re-run of disturbed cells
                cells = [cell for cell in cells if cell.key in self.only_cells]
            return [job for _, jobs in self._plan(run_id, spec, cells, [link], outcome) for job in jobs]

        return plan

    def _drive(self, run_id: int, links: list[HostLink], plan: Callable[[HostLink], list[LaneJob]],
               outcome: RunOutcome, *, close_run: bool = True) -> None:
        """Run one lane per host in parallel, each on its own from its first connect on; close the run.

        A lane reaches its host, plans that host's jobs (``plan``) and runs them, without waiting for
        any other host: a host that is down retries in its own lane while the others measure.
        ``close_run``: False when the run is shared with other controllers (``farm serve``), which
        close it themselves once its last job is terminal.
        """
        assert self.writer is not None
        status = "failed"
        lanes: dict[str, Lane] = {}
        stop = self.stop
        try:
            with ThreadPoolExecutor(max_workers=max(1, len(links))) as pool:
                futures = [pool.submit(self._host_lane, link, plan, outcome, lanes, stop) for link in links]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    stop.set()
                    for lane in list(lanes.values()):
                        lane.stop.set()
                    raise
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            for link in links:  # a per-accelerator host's extra lanes close theirs (_host_lane)
                if link.session is not None:
                    link.session.close()
                    link.session.transport.close()
            outcome.lanes = {name: lane.stats for name, lane in lanes.items()}
            if close_run:
                self.writer.write("finish_run", run_id=run_id, status=status)
            outcome.journal_pending = self.writer.replay()
            outcome.store_stats = dict(self.writer.stats)
            if not outcome.journal_pending and close_run:
                with contextlib.suppress(SQLAlchemyError):  # gone again: the counts the lanes saw stand
                    outcome.counts = Counter(job_store.status_counts(self.store, run_id))

    def _host_lane(self, link: HostLink, plan: Callable[[HostLink], list[LaneJob]], outcome: RunOutcome,
                   lanes: dict[str, Lane], stop: threading.Event) -> None:
        """One host from its first connect to its last job: reach, plan, run."""
        assert self.writer is not None
        retries = self._reach(link, stop)
        if stop.is_set():
            raise KeyboardInterrupt
        if not link.error:  # reaching the agent (ping, facts) is the health check of an unhealthy host
            self.writer.write("host_ok", host_id=link.host_id, reason="health check passed")
        jobs = plan(link)
        if link.error or not jobs:
            return
        self._ack_stored_leftovers([link])
        groups = split_by_device([(link, jobs)])
        extra = [sub for sub, _ in groups[1:]]
        if extra:
            # The extra lanes of a per-accelerator host connect now, all at once, so their first jobs start
            # together with the host's first lane rather than one connect (seconds over SSH) later.
            with ThreadPoolExecutor(max_workers=min(len(extra), MAX_CONNECT_WORKERS)) as pool:
                list(pool.map(lambda sub: self._connect(sub, quiet=True), extra))
        made = []
        for sub, _ in groups:
            lane = self._make_lane(sub)
            lane.stop = stop  # one event for the run: an interrupt reaches every lane, started or not
            made.append(lane)
        made[0].stats.reconnects += retries
        lanes[link.host.name] = made[0]  # the host's lane; a per-accelerator host's others run beside it
        try:
            if len(made) == 1:
                self._lane(made[0], jobs, outcome)
                return
            with ThreadPoolExecutor(max_workers=len(made)) as pool:
                futures = [pool.submit(self._lane, lane, group, outcome)
                           for lane, (_, group) in zip(made, groups, strict=True)]
                for future in futures:
                    future.result()
        finally:
            for sub in extra:
                if sub.session is not None:
                    sub.session.close()
                    sub.session.transport.close()

    def _ack_stored_leftovers(self, links: list[HostLink]) -> None:
        """Ack results this database already holds but a killed controller left in a device's spool.

        A result is acked with the lane's next request after it is stored; a controller killed in
        between leaves it on the device, where nothing would ever collect it again.
        """
        tag = spool_keys.database_tag(self.store.url)
        for link in links:
            if link.session is None:
                continue
            try:
                finished = link.session.request({"op": "collect", "keys": None, "wait": 0},
                                                timeout=ANSWER_SLACK)["finished"]
                ours = {key: parsed for key in finished
                        if (parsed := spool_keys.parse(key)) is not None and parsed.tag == tag}
                stored = job_store.stored_keys(self.store, [parsed.job_id for parsed in ours.values()])
                done = [key for key, parsed in ours.items() if (parsed.job_id, parsed.attempt) in stored]
                if done:
                    link.session.request({"op": "ack", "keys": done}, timeout=ANSWER_SLACK)
            except (FarmError, SQLAlchemyError):
                continue  # tidying only: the lane finds out about a bad link or database itself

    def _make_lane(self, link: HostLink) -> Lane:
        assert self.writer is not None

        def connect(target: HostLink) -> AgentSession:
            self._connect(target, quiet=True)
            if target.session is None:
                raise FarmError(target.error or f"{target.host.name}: cannot connect")
            return target.session

        def python_version() -> str | None:
            return ((link.facts or {}).get("python") or {}).get("version")

        return Lane(link, self.writer, self.holder, self.policy, connect, python_version,
                    lambda text: self.observer.host_state(link.host.name, text))

    def _reach(self, link: HostLink, stop: threading.Event | None = None) -> int:
        """Connect; a host that does not answer is retried with backoff, as a lane retries a lost link.

        Returns the retries it took. Each failure counts toward the host turning unhealthy; the
        last one is the planner's to record, with the jobs it fails (``--resume`` re-queues them).
        """
        assert self.writer is not None
        self._connect_limited(link)
        tries = 0
        while link.error and tries < self.policy.retries \
                and classify_transport_error(link.error, during_job=False) != "host-key":  # a retry cannot fix it
            tries += 1
            self.writer.write("host_failed", host_id=link.host_id, reason=link.error,
                              unhealthy_after=self.policy.unhealthy_after)
            delay = self.policy.delay(tries + 1)
            self.observer.host_state(link.host.name, f"retry {tries} of {self.policy.retries} in {delay:.1f} s")
            if stop is not None and stop.wait(delay):  # the run is interrupted: stop waiting for this host
                return tries
            if stop is None:
                time.sleep(delay)
            link.error = None
            self._connect_limited(link)
        return tries

    def _connect_limited(self, link: HostLink) -> None:
        with self._connect_slots:  # as many SSH handshakes at once as before, however many lanes wait
            self._connect(link)

    def _connect(self, link: HostLink, quiet: bool = False) -> None:
        self.observer.host_state(link.host.name, "connecting")
        transport = None
        try:
            transport = open_transport(link.host, **self.transport_options)
            link.session = AgentSession(transport).open()
            link.facts = link.session.facts()
        except (FarmError, OSError) as exc:
            link.error = str(exc)
            if link.session is not None:
                link.session.close()
                link.session = None
            if transport is not None:
                transport.close()
            if not quiet:
                self.observer.host_state(link.host.name, f"unreachable: {exc}")
            return
        try:
            with self._store_lock:
                stats = self.writer.stats if self.writer else None
                link.facts_id = with_db_retry(records.add_facts, self.store, link.host_id, link.facts, stats=stats)
        except Exception:  # the database may be away: a reconnect does not need a new facts snapshot
            if not quiet:
                raise
        for note in restore_notes(link.facts):  # a killed agent's mode, put back by this contact: say so
            getattr(self.observer, "host_note", self.observer.host_state)(link.host.name, note)
        self.observer.host_state(link.host.name, "ready")

    def _plan(self, run_id: int, spec: MatrixSpec, cells: list[Cell], links: list[HostLink],
              outcome: RunOutcome) -> list[tuple[HostLink, list[LaneJob]]]:
        link_of = {link.host.name: link for link in links}
        timing = {**TIMING_DEFAULTS, **spec.timing}
        rows = []
        for cell in cells:
            link = link_of[cell.host.name]
            status, reason, kind, failure = "queued", None, None, None
            if cell.skip_reason:
                status, reason = "skipped", cell.skip_reason
            elif link.error:
                status, reason, kind, failure = "failed", link.error, "infrastructure", "unreachable"
            rows.append({"host_id": link.host_id, "model_id": cell.model.id, "cell_key": cell.key,
                         "delegate": cell.delegate, "threads": cell.threads, "power_mode": cell.power_mode,
                         "usb_port": cell.usb_port, "usb_speed": cell.usb_speed, "timing": timing,
                         "backend": cell.backend, "precision": cell.runs_at,
                         "status": status, "reason": reason, "error_kind": kind, "failure": failure})
        assert self.writer is not None
        with self._store_lock:
            ids = with_db_retry(records.add_jobs, self.store, run_id, rows, stats=self.writer.stats)
        plan: dict[str, list[tuple[LaneJob, Cell]]] = {}
        for job_id, cell, row in zip(ids, cells, rows):
            if row["status"] == "queued":
                document = self._job_document(run_id, job_id, cell, link_of[cell.host.name], timing,
                                              spec.interference)
                job = LaneJob(job_id, document, Path(cell.model.path), cell.model.sha256, label=cell)
                plan.setdefault(cell.host.name, []).append((job, cell))
            else:
                outcome.counts[row["status"]] += 1
                self.observer.job_finished(cell.host.name, cell, row["status"], row["reason"] or "")
        # Stored before any is sent: a resumed controller sends exactly these documents.
        with_db_retry(job_store.set_documents, self.store,
                      {job.job_id: job.doc for jobs in plan.values() for job, _ in jobs}, stats=self.writer.stats)
        for link in links:
            if link.error:
                outcome.unreachable[link.host.name] = link.error
                self.writer.write("host_failed", host_id=link.host_id, reason=link.error,
                                  unhealthy_after=self.policy.unhealthy_after)
            self.observer.jobs_planned(link.host.name, len(plan.get(link.host.name, [])))
        ordered = []
        for name, jobs in sorted(plan.items()):
            link = link_of[name]
            ordered.append((link, [job for job, _ in order_by_mode(jobs, current_mode(link.host, link.facts))]))
        return ordered

    def _job_document(self, run_id: int, job_id: int, cell: Cell, link: HostLink,
                      timing: dict[str, Any], interference: dict[str, Any] | None = None) -> dict[str, Any]:
        remote = f"{link.host.workdir}/models/{cell.model.sha256}.tflite"  # where upload_model puts it
        parts = None
        if cell.parts:
            parts = []
            for model, tpu in zip(cell.parts, cell.part_tpus or [None] * len(cell.parts), strict=True):
                part: dict[str, Any] = {"path": f"{link.host.workdir}/models/{model.sha256}.tflite",
                                        "sha256": model.sha256, "name": model.name}
                if tpu is not None and cell.delegate == "edgetpu":
                    part["edgetpu"] = tpu_request(tpu)
                parts.append(part)
        concurrency = {"mode": "per-accelerator", "devices": list(cell.locks)} if cell.locks else None
        doc = make_job(spool_keys.job_name(self.store.url, run_id, job_id), remote, cell.model.sha256, cell.delegate,
                       cell.threads, timing=timing, power=power_request(cell), edgetpu=edgetpu_request(cell),
                       models=None if cell.pipeline else parts, segments=parts if cell.pipeline else None,
                       placement=cell.placement, concurrency=concurrency, interference=interference or None,
                       # TFLite jobs stay what agents before the backends read; TFLite has no precision to set.
                       backend=None if cell.backend == DEFAULT_BACKEND else cell.backend,
                       precision=None if cell.backend == DEFAULT_BACKEND else cell.precision)
        if cell.model_set:
            doc["model_set"] = cell.model_set  # for the store's view and reports; the agent ignores it
        return doc

    def _lane(self, lane: Lane, jobs: list[LaneJob], outcome: RunOutcome) -> None:
        try:
            for job, following in zip(jobs, [*jobs[1:], None], strict=True):
                status, detail = lane.run(job, following)
                outcome.counts[status] += 1
                self.observer.job_finished(lane.link.host.name, job.label, status, detail)
        finally:
            lane.flush_acks()


def split_by_device(planned: list[tuple[HostLink, list[LaneJob]]]) -> list[tuple[HostLink, list[LaneJob]]]:
    """One lane per device lock set on hosts whose jobs are per-accelerator; other hosts keep one lane.

    A lane runs one job at a time; a host's per-accelerator jobs split into lanes by the devices they
    lock (each TPU, the CPU), each with its own session to the agent, so a host with N TPUs runs N jobs
    at once. Jobs whose lock sets overlap (a pipeline over both TPUs and a job on one) meet at the
    agent's device locks, and the later waits: correct, only not concurrent.
    """
    out: list[tuple[HostLink, list[LaneJob]]] = []
    for link, jobs in planned:
        groups: dict[tuple[str, ...] | None, list[LaneJob]] = {}
        for job in jobs:
            devices = (job.doc.get("concurrency") or {}).get("devices")
            groups.setdefault(tuple(devices) if devices else None, []).append(job)
        if len(groups) <= 1:
            out.append((link, jobs))
            continue
        for index, (_, members) in enumerate(sorted(groups.items(), key=lambda kv: kv[0] or ())):
            # The first group keeps the link the host connected with; the others connect on their first job.
            lane_link = link if index == 0 else HostLink(link.host, link.host_id, facts=link.facts,
                                                         facts_id=link.facts_id)
            out.append((lane_link, members))
    return out
