"""Run a matrix: one lane per host (one benchmark at a time there), all lanes at once.

Facts are gathered from every host first, concurrently, because the matrix
depends on them (threads up to the CPUs online, a runtime present). Results are
stored as each job finishes, so an interrupted run keeps everything it measured.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.schema import TIMING_DEFAULTS, make_job

from .agent_client import AgentSession
from .errors import FarmError, TransportError
from .inventory import Host
from .matrix import Cell, MatrixSpec, expand
from .store import records
from .store.db import Store
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


class Runner:
    def __init__(self, store: Store, observer: RunObserver | None = None,
                 transport_options: dict[str, Any] | None = None) -> None:
        self.store = store
        self.observer = observer or QuietObserver()
        self.transport_options = transport_options or {}
        # One writer at a time: SQLite allows no more, and it keeps PostgreSQL simple too.
        self._store_lock = threading.Lock()

    def run(self, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow], inventory: str,
            tags: list[str] | None = None) -> RunOutcome:
        if not hosts:
            raise FarmError("no hosts to run on: the inventory (or --host/--tag selection) is empty")
        if not models:
            raise FarmError("no models to run: register some with `farm models build` or `farm models add`")
        run_id = records.create_run(self.store, spec.name, inventory, tags or [])
        outcome = RunOutcome(run_id)
        links = [HostLink(host, records.upsert_host(self.store, host)) for host in hosts]
        status = "failed"
        try:
            with ThreadPoolExecutor(max_workers=min(len(links), MAX_CONNECT_WORKERS)) as pool:
                list(pool.map(self._connect, links))
            cells = expand(spec, hosts, models, {link.host.name: link.facts for link in links})
            by_host = self._plan(run_id, spec, cells, links, outcome)
            with ThreadPoolExecutor(max_workers=max(1, len(by_host))) as pool:
                timing = {**TIMING_DEFAULTS, **spec.timing}
                lanes = [pool.submit(self._lane, run_id, link, jobs, timing, outcome) for link, jobs in by_host]
                for lane in lanes:
                    lane.result()
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            for link in links:
                if link.session is not None:
                    link.session.close()
                    link.session.transport.close()
            records.finish_run(self.store, run_id, status)
        return outcome

    def _connect(self, link: HostLink) -> None:
        self.observer.host_state(link.host.name, "connecting")
        try:
            transport = open_transport(link.host, **self.transport_options)
            link.session = AgentSession(transport).open()
            link.facts = link.session.facts()
        except FarmError as exc:
            link.error = str(exc)
            if link.session is not None:
                link.session.close()
                link.session = None
            self.observer.host_state(link.host.name, f"unreachable: {exc}")
            return
        with self._store_lock:
            link.facts_id = records.add_facts(self.store, link.host_id, link.facts)
        self.observer.host_state(link.host.name, "ready")

    def _plan(self, run_id: int, spec: MatrixSpec, cells: list[Cell], links: list[HostLink],
              outcome: RunOutcome) -> list[tuple[HostLink, list[tuple[int, Cell]]]]:
        link_of = {link.host.name: link for link in links}
        timing = {**TIMING_DEFAULTS, **spec.timing}
        rows = []
        for cell in cells:
            link = link_of[cell.host.name]
            status, reason, kind = "queued", None, None
            if cell.skip_reason:
                status, reason = "skipped", cell.skip_reason
            elif link.error:
                status, reason, kind = "failed", link.error, "infrastructure"
            rows.append({"host_id": link.host_id, "model_id": cell.model.id, "cell_key": cell.key,
                         "delegate": cell.delegate, "threads": cell.threads, "power_mode": cell.power_mode,
                         "usb_port": cell.usb_port, "usb_speed": cell.usb_speed, "timing": timing,
                         "status": status, "reason": reason, "error_kind": kind})
        with self._store_lock:
            ids = records.add_jobs(self.store, run_id, rows)
        plan: dict[str, list[tuple[int, Cell]]] = {}
        for job_id, cell, row in zip(ids, cells, rows):
            if row["status"] == "queued":
                plan.setdefault(cell.host.name, []).append((job_id, cell))
            else:
                outcome.counts[row["status"]] += 1
                self.observer.job_finished(cell.host.name, cell, row["status"], row["reason"] or "")
        for link in links:
            if link.error:
                outcome.unreachable[link.host.name] = link.error
            self.observer.jobs_planned(link.host.name, len(plan.get(link.host.name, [])))
        return [(link_of[name], jobs) for name, jobs in sorted(plan.items())]

    def _lane(self, run_id: int, link: HostLink, jobs: list[tuple[int, Cell]], timing: dict[str, Any],
              outcome: RunOutcome) -> None:
        for job_id, cell in jobs:
            status, detail = self._run_one(run_id, link, job_id, cell, timing)
            outcome.counts[status] += 1
            self.observer.job_finished(link.host.name, cell, status, detail)

    def _run_one(self, run_id: int, link: HostLink, job_id: int, cell: Cell,
                 timing: dict[str, Any]) -> tuple[str, str]:
        with self._store_lock:
            records.mark_job(self.store, job_id, "running")
        if link.session is None:
            reason = link.error or "host connection lost earlier in this run"
            with self._store_lock:
                records.mark_job(self.store, job_id, "failed", reason=reason, error_kind="infrastructure")
            return "failed", reason
        try:
            remote = link.session.upload_model(Path(cell.model.path), cell.model.sha256)
            job = make_job(f"run{run_id}-job{job_id}", remote, cell.model.sha256, cell.delegate, cell.threads,
                           timing=timing)
            result = link.session.run_job(job)
        except (TransportError, OSError) as exc:
            link.error = str(exc)
            link.session.close()
            link.session = None
            with self._store_lock:
                records.mark_job(self.store, job_id, "failed", reason=str(exc), error_kind="infrastructure")
            return "failed", str(exc)
        if result["status"] != "succeeded":
            error = result["error"]
            with self._store_lock:
                records.mark_job(self.store, job_id, result["status"], reason=error["message"],
                                 error_kind=error["kind"])
            return result["status"], error["message"]
        python = ((link.facts or {}).get("python") or {}).get("version")
        with self._store_lock:
            records.store_result(self.store, job_id, link.facts_id, python, result)
        return "succeeded", f"median {result['timing']['summary']['median_ms']:.2f} ms"
