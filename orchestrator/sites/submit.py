"""``farm submit`` (``farm run --submit``): store a shared run and its jobs, then return.

The jobs depend on each host's facts (threads up to the CPUs online, a runtime present, its Edge
TPUs), so each host's newest stored facts snapshot plans its cells (``farm inventory check`` or an
earlier run stored it); a host never seen is reached once from here for them. Nothing is run: the
``farm serve`` controllers of the sites claim the jobs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from ..errors import FarmError
from ..inventory import Host
from ..matrix import MatrixSpec, expand
from ..replan import plan_document
from ..scheduler import MAX_CONNECT_WORKERS, HostLink, Runner, RunObserver, RunOutcome
from ..store import records
from ..store.db import Store
from ..store.journal import StoreWriter
from ..store.schema import HostFactsRow, ModelRow, RunRow
from .claims import finish_if_done, require_postgres


@dataclass
class Submitted:
    run_id: int
    jobs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    facts_from: dict[str, str] = field(default_factory=dict)  # host -> "stored" | "reached"


def _latest_facts(store: Store, host_id: int) -> tuple[int, dict[str, Any]] | None:
    with store.session() as session:
        row = session.scalar(select(HostFactsRow).where(HostFactsRow.host_id == host_id)
                             .order_by(HostFactsRow.id.desc()).limit(1))
        return (row.id, row.facts) if row is not None else None


def _reach_once(runner: Runner, link: HostLink) -> None:
    runner._connect(link, quiet=True)  # stores the facts snapshot it reads
    if link.session is not None:
        link.session.close()
        link.session.transport.close()
        link.session = None


def submit(store: Store, spec: MatrixSpec, hosts: list[Host], models: list[ModelRow], inventory: str,
           tags: list[str] | None = None, transport_options: dict[str, Any] | None = None,
           observer: RunObserver | None = None, labels: dict[str, str] | None = None) -> Submitted:
    require_postgres(store, "farm submit (sites sharing a run)")
    if not hosts:
        raise FarmError("no hosts to submit for: the inventory (or --host/--tag selection) is empty")
    if not models:
        raise FarmError("no models to run: register some with `farm models build` or `farm models add`")
    runner = Runner(store, observer, transport_options)
    links = [HostLink(host, records.upsert_host(store, host)) for host in hosts]
    facts_from: dict[str, str] = {}
    unseen = []
    for link in links:
        stored = _latest_facts(store, link.host_id)
        if stored is None:
            unseen.append(link)
        else:
            link.facts_id, link.facts = stored
            facts_from[link.host.name] = "stored"
    if unseen:  # never seen: their facts from here, once, all at once
        with ThreadPoolExecutor(max_workers=min(len(unseen), MAX_CONNECT_WORKERS)) as pool:
            list(pool.map(lambda link: _reach_once(runner, link), unseen))
    for link in unseen:
        if link.facts is None:
            raise FarmError(f"{link.host.name}: no stored facts and not reachable from here ({link.error}); "
                            "run `farm inventory check` at its site, then submit again")
        facts_from[link.host.name] = "reached"
    run_id = records.create_run(store, spec.name, inventory, tags or [],
                                plan=plan_document(spec, hosts, models, transport_options or {}, inventory),
                                labels=labels)
    with store.session() as session:  # shared before any job exists: no `farm run` lane ever owns it
        session.execute(update(RunRow).where(RunRow.id == run_id).values(shared=True, status="submitted"))
        session.commit()
    runner.writer = StoreWriter(store, run_id)
    outcome = RunOutcome(run_id)
    cells = expand(spec, hosts, models, {link.host.name: link.facts for link in links})
    planned = runner._plan(run_id, spec, cells, links, outcome)
    queued = sum(len(jobs) for _, jobs in planned)
    counts = {"queued": queued, **dict(outcome.counts)}
    finish_if_done(store, run_id)  # every cell skipped: nothing for a site to do
    return Submitted(run_id, sum(counts.values()), counts, facts_from)
