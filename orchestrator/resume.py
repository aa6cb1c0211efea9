"""``farm run --resume``: finish a run whose controller died.

Jobs already terminal are kept as they are, except infrastructure failures,
which get a fresh retry budget (the host may be back). A job the dead controller had
handed to an agent (dispatched or running, with its spool key) is looked up
in that agent's spool: collected if it finished while nobody watched, waited
for if it still runs, run again as a new attempt if the agent lost it. Queued
jobs run as they would have. Writes the dead controller left in its journal
are replayed first, so nothing it measured is lost.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import exists, select

from .dispatch import LaneJob
from .errors import FarmError
from .inventory import Host
from .lifecycle import IN_FLIGHT, TERMINAL
from .matrix import Cell
from .replan import unplanned
from .scheduler import HostLink, Runner, RunOutcome
from .store import jobs as job_store
from .store import records
from .store.db import Store
from .store.journal import StoreWriter
from .store.retry import with_db_retry
from .store.schema import HostRow, JobRow, ModelRow, RunRow


def run_to_resume(store: Store, run_id: int | None) -> RunRow:
    """The run named, or the newest one with jobs not yet terminal (else the newest not finished)."""
    with store.session() as session:
        if run_id is not None:
            run = session.get(RunRow, run_id)
            if run is None:
                raise FarmError(f"--resume: there is no run {run_id} in {store.url}")
            if run.shared:  # its controllers take a dead one's jobs over themselves
                raise FarmError(f"--resume: run {run_id} was submitted for `farm serve` controllers, which "
                                "take over a dead controller's jobs themselves; start `farm serve` at a site "
                                "that reaches its hosts (`farm status` shows who holds what)")
            return run
        open_job = exists().where(JobRow.run_id == RunRow.id, JobRow.status.not_in(TERMINAL))
        own = RunRow.shared.is_not(True)  # a submitted run is its sites' controllers' to finish
        run = session.scalar(select(RunRow).where(open_job, own).order_by(RunRow.id.desc()).limit(1)) \
            or session.scalar(select(RunRow).where(RunRow.status != "finished", own)
                              .order_by(RunRow.id.desc()).limit(1))
        if run is None:
            raise FarmError(f"--resume: every run in {store.url} is finished; nothing to resume")
        return run


def _mark_running(store: Store, run_id: int) -> None:
    with store.session() as session:
        run = session.get(RunRow, run_id)
        assert run is not None
        run.status, run.finished_at = "running", None
        session.commit()


def _hosts_and_models(store: Store) -> tuple[dict[int, str], dict[int, ModelRow]]:
    with store.session() as session:
        return ({row.id: row.name for row in session.scalars(select(HostRow))},
                {row.id: row for row in session.scalars(select(ModelRow))})


def resume(runner: Runner, run_id: int, hosts: list[Host]) -> RunOutcome:
    store = runner.store
    runner.writer = StoreWriter(store, run_id)
    runner.writer.replay()  # what the dead controller could not store goes in first
    # The database may be restarting (the controller may have died of it): wait for it, as a run's writes do.
    stats = runner.writer.stats
    with_db_retry(_mark_running, store, run_id, stats=stats)
    replan = with_db_retry(unplanned, store, run_id, stats=stats)
    by_name = {host.name: host for host in hosts}
    outcome = RunOutcome(run_id)
    if replan is not None and not with_db_retry(job_store.status_counts, store, run_id, stats=stats):
        # The controller died before storing any job: plan the run as it was started.
        chosen = [by_name[name] for name in replan.host_names if name in by_name]
        if not chosen or not replan.models:
            missing = "hosts (" + ", ".join(replan.host_names) + ")" if not chosen else "models"
            raise FarmError(f"--resume: run {run_id} was never planned and none of its {missing} are "
                            "there any more; give its inventory with --inventory")
        return runner.run_planned(run_id, replan.spec, chosen, replan.models, dict(stats))
    reopened = set(with_db_retry(job_store.reopen_infrastructure_failures, store, run_id, stats=stats))
    pending = with_db_retry(job_store.open_jobs, store, run_id, stats=stats)
    host_names, models = with_db_retry(_hosts_and_models, store, stats=stats)
    links: dict[int, HostLink] = {}
    for job in pending:
        name = host_names[job.host_id]
        if name not in by_name:
            runner.writer.write("finish", job_id=job.id, status="failed", failure="unreachable",
                                reason=f"host '{name}' is not in the inventory given to --resume")
            outcome.unreachable[name] = "not in the inventory"
            continue
        if job.host_id not in links:
            links[job.host_id] = HostLink(by_name[name],
                                          with_db_retry(records.upsert_host, store, by_name[name], stats=stats))
    to_plan: set[int] = set()
    if replan is not None:  # hosts whose lanes died before planning them: planned now, as the others were
        for name in replan.host_names:
            if name in by_name:
                link = HostLink(by_name[name], with_db_retry(records.upsert_host, store, by_name[name], stats=stats))
                links.setdefault(link.host_id, link)
                to_plan.add(link.host_id)
    plan_new = runner.planner(run_id, replan.spec, replan.models, outcome) if replan is not None else None

    def plan(link: HostLink) -> list[LaneJob]:
        if link.host_id in to_plan and plan_new is not None:
            return plan_new(link)
        jobs = []
        for job in pending:
            if job.host_id != link.host_id:
                continue
            if link.error:
                runner.writer.write("finish", job_id=job.id, status="failed", failure="unreachable",
                                    reason=link.error)
                outcome.unreachable[link.host.name] = link.error
                continue
            jobs.append(lane_job(runner, run_id, job, link, models[job.model_id], reopened=job.id in reopened))
        runner.observer.jobs_planned(link.host.name, len(jobs))
        # In-flight jobs first: they may hold the host's lock, and their results are the oldest.
        return sorted(jobs, key=lambda j: not j.keys)

    runner._drive(run_id, [links[host_id] for host_id in sorted(links)], plan, outcome)
    return outcome


def lane_job(runner: Runner, run_id: int, job: JobRow, link: HostLink, model: ModelRow, *,
             reopened: bool = False) -> LaneJob:
    """A stored job as a lane picks it up again: a dead controller's in-flight attempt is looked for in the
    agent's spool under its key first (collected if it finished, waited for if it runs)."""
    label = Cell(link.host, model, job.delegate, job.threads, job.power_mode, job.usb_port, job.usb_speed)
    # No document: the controller died between storing the jobs and their documents, so none was
    # ever sent; the planner makes it again from the job's cell, power mode and USB port included.
    document = job.job_doc or runner._job_document(run_id, job.id, label, link, job.timing)
    in_flight = job.status in IN_FLIGHT or reopened
    keys = [job.spool_key] if in_flight and job.spool_key else []
    return LaneJob(job.id, document, Path(model.path), model.sha256, attempt=job.attempt, keys=keys,
                   budget_from=job.attempt, label=label, unconfirmed=bool(keys) and job.status == "dispatched")
