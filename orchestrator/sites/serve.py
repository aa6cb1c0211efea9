"""``farm serve --site NAME``: a long-lived controller that claims shared jobs for the hosts it reaches.

One worker per host at a time. The main loop claims, for each host with no worker, a batch of that
host's open jobs (``claims.claim``), and a worker runs them through the same lane as ``farm run``:
a job claimed from a dead controller, dispatched or running under its spool key, is looked for in
the agent's spool first (collected if it finished, waited for if it runs, re-run only if the agent
lost it), exactly as ``farm run --resume`` does. A heartbeat renews the leases every third of a lease.
A host this controller cannot reach is released (another site may reach it) and left alone for a
while. Stopped (SIGTERM, Ctrl-C), the controller releases what it has not finished.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..dispatch import LaneJob
from ..inventory import Host
from ..lifecycle import RetryPolicy
from ..resume import lane_job
from ..scheduler import HostLink, QuietObserver, Runner, RunObserver, RunOutcome
from ..store import records
from ..store.db import Store, data_dir
from ..store.journal import Journal, StoreWriter
from ..store.schema import JobRow, ModelRow
from . import claims

UNREACHABLE_COOLDOWN = 30.0  # seconds a host this controller could not reach is left to other controllers


@dataclass
class ServeStats:
    claimed: int = 0
    taken_over: int = 0  # claimed jobs another controller had dispatched (its lease expired)
    released: int = 0
    counts: Counter = field(default_factory=Counter)
    runs_finished: list[int] = field(default_factory=list)


class SiteController:
    def __init__(self, store: Store, site: str, hosts: list[Host], *, lease: float = 60.0, batch: int = 4,
                 poll: float = 1.0, transport_options: dict[str, Any] | None = None,
                 observer: RunObserver | None = None, policy: RetryPolicy | None = None) -> None:
        claims.require_postgres(store, "farm serve (sites sharing a run)")
        if lease < 1:
            raise ValueError("a lease shorter than a second would expire between two renewals")
        self.store, self.site, self.lease, self.batch, self.poll = store, site, lease, batch, poll
        self.transport_options = transport_options or {}
        self.observer = observer or QuietObserver()
        self.policy = policy or RetryPolicy.from_env()
        self.id = f"{site}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.hosts = {records.upsert_host(store, host): host for host in hosts}
        self.stop = threading.Event()
        self.stats = ServeStats()
        self._workers: dict[int, threading.Thread] = {}
        self._runners: dict[int, Runner] = {}
        self._batches: dict[int, list[int]] = {}  # host -> the job ids its worker was given
        self._cooldown: dict[int, float] = {}
        self._lock = threading.Lock()

    # --- the loop --------------------------------------------------------------------------

    def serve(self, *, until_idle: bool = False) -> ServeStats:
        """Claim and run until stopped (or, ``until_idle``, until no open job of its hosts is left)."""
        claims.register(self.store, self.id, self.site)
        beat = threading.Thread(target=self._heartbeat, name="farm-serve-heartbeat", daemon=True)
        beat.start()
        try:
            while not self.stop.is_set():
                self._reap()
                self._claim_idle_hosts()
                if until_idle and not self._workers and not claims.open_jobs_on(self.store, list(self.hosts)):
                    break
                self.stop.wait(self.poll)
        finally:
            self.stop.set()
            for runner in list(self._runners.values()):
                runner.stop.set()
            for worker in list(self._workers.values()):
                worker.join()
            with contextlib.suppress(SQLAlchemyError):
                claims.stopped(self.store, self.id)
        return self.stats

    def _heartbeat(self) -> None:
        while not self.stop.wait(self.lease / 3):
            with contextlib.suppress(SQLAlchemyError):  # the database away: leases may lapse, others take over
                claims.renew(self.store, self.id, self.lease)
                for host_id, job_ids in list(self._batches.items()):
                    if claims.lost(self.store, self.id, job_ids):  # taken over while we stalled: stop there
                        self.observer.host_state(self.hosts[host_id].name, "claims taken over: stopping")
                        runner = self._runners.get(host_id)
                        if runner is not None:
                            runner.stop.set()

    def _reap(self) -> None:
        for host_id, worker in list(self._workers.items()):
            if not worker.is_alive():
                worker.join()
                del self._workers[host_id]

    def _claim_idle_hosts(self) -> None:
        now = time.monotonic()
        idle = [host_id for host_id in self.hosts
                if host_id not in self._workers and self._cooldown.get(host_id, 0.0) <= now]
        if not idle:
            return
        try:
            rows = claims.claim(self.store, self.id, self.site, idle, lease=self.lease, per_host=self.batch)
        except SQLAlchemyError:
            return  # the database is away: claim again at the next poll
        by_host: dict[int, list[JobRow]] = {}
        for row in rows:
            by_host.setdefault(row.host_id, []).append(row)
            self.stats.claimed += 1
            if row.spool_key and row.status in ("dispatched", "running"):
                self.stats.taken_over += 1
        for host_id, jobs in by_host.items():
            worker = threading.Thread(target=self._work, args=(host_id, jobs), name=f"farm-serve-{host_id}")
            self._workers[host_id] = worker
            worker.start()

    # --- one host's batch ------------------------------------------------------------------

    def _work(self, host_id: int, jobs: list[JobRow]) -> None:
        by_run: dict[int, list[JobRow]] = {}
        for job in jobs:
            by_run.setdefault(job.run_id, []).append(job)
        for run_id, run_jobs in sorted(by_run.items()):
            if self.stop.is_set():
                self._release([job.id for job in run_jobs])
                continue
            try:
                self._run_batch(run_id, host_id, run_jobs)
            except KeyboardInterrupt:
                pass  # stopped: what is not finished is released below
            except Exception as exc:  # noqa: BLE001 - one batch failing must not take the controller down
                self.observer.host_state(self.hosts[host_id].name, f"batch failed: {exc}"[:80])
            finally:
                self._release([job.id for job in run_jobs])  # only those still open and still ours
                with contextlib.suppress(SQLAlchemyError):
                    if claims.finish_if_done(self.store, run_id):
                        self.stats.runs_finished.append(run_id)

    def _run_batch(self, run_id: int, host_id: int, jobs: list[JobRow]) -> None:
        host = self.hosts[host_id]
        runner = Runner(self.store, self.observer, self.transport_options, self.policy)
        runner.holder = self.id  # the agent's per-device lock names this controller
        # A journal per run and site: a controller restarted at this site replays what it could not store.
        runner.writer = StoreWriter(self.store, run_id,
                                    Journal(data_dir() / "journal" / f"run-{run_id}-{_safe(self.site)}.jsonl"))
        models = self._models({job.model_id for job in jobs})
        outcome = RunOutcome(run_id)
        link = HostLink(host, host_id)

        def plan(reached: HostLink) -> list[LaneJob]:
            if reached.error:  # not reachable from this site now: let another controller try
                self._cooldown[host_id] = time.monotonic() + UNREACHABLE_COOLDOWN
                return []
            lane_jobs = [lane_job(runner, run_id, job, reached, models[job.model_id]) for job in jobs]
            self.observer.jobs_planned(host.name, len(lane_jobs))
            return sorted(lane_jobs, key=lambda j: not j.keys)  # in-flight first, as --resume does

        self._runners[host_id] = runner
        self._batches[host_id] = [job.id for job in jobs]
        try:
            runner._drive(run_id, [link], plan, outcome, close_run=False)
        finally:
            self._runners.pop(host_id, None)
            self._batches.pop(host_id, None)
            self.stats.counts.update(outcome.counts)

    def _models(self, ids: set[int]) -> dict[int, ModelRow]:
        with self.store.session() as session:
            return {row.id: row for row in session.scalars(select(ModelRow).where(ModelRow.id.in_(ids)))}

    def _release(self, job_ids: list[int]) -> None:
        with contextlib.suppress(SQLAlchemyError):
            self.stats.released += claims.release(self.store, self.id, job_ids)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
