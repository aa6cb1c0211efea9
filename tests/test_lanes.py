"""Lanes that do not wait for each other (issue 18 item 2): a run with one good lab host and one dead
host starts the good host's first job while the dead host is still being retried in its own lane.

Before, every host was reached (dead hosts' retries included) before any lane started: the good
host's first job waited for the whole retry schedule of the dead one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from sqlalchemy import select

from orchestrator.inventory import load_inventory
from orchestrator.lifecycle import RetryPolicy
from orchestrator.matrix import load_matrix
from orchestrator.models import registry
from orchestrator.scheduler import Runner
from orchestrator.store import open_store
from orchestrator.store.schema import HostFactsRow, HostRow, JobRow, RunRow

if TYPE_CHECKING:
    from tests.lab_support import RunningLab

pytest_plugins = ["tests.lab_support"]

MATRIX = """
matrices:
  quick:
    models: [conv_stack-l1]
    threads: [1, 2]
    timing: {warmup_min_runs: 1, warmup_min_seconds: 0, min_runs: 3, min_seconds: 0.2, max_seconds: 20}
"""
BACKOFF = 10.0  # the dead host's one retry comes 10 s after its first refusal
ISSUE_BOUND = 2.0  # the issue's goal: the good host's first job within 2 s of the run's start


def test_a_dead_host_does_not_hold_back_the_good_hosts_first_job(running_lab: RunningLab, tmp_path: Path) -> None:
    rpi = running_lab.host("rpi4")
    entry = next(e for e in yaml.safe_load(running_lab.lab.inventory_path.read_text())["hosts"]
                 if e["name"] == rpi.name)
    entry["workdir"] = f"{entry['workdir']}/lanes-{tmp_path.name}"
    dead = {**entry, "name": "dead-host", "port": running_lab.free_port([rpi.address])}  # nothing listens
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": [dead, entry]}, sort_keys=False))
    matrix = tmp_path / "m.yaml"
    matrix.write_text(MATRIX)
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        models = [row for row, _ in registry.build(store, "conv_stack", [1])]
        runner = Runner(store, transport_options={"known_hosts": running_lab.known_hosts},
                        policy=RetryPolicy(retries=1, backoff=BACKOFF, unhealthy_after=2))
        outcome = runner.run(load_matrix("quick", matrix), load_inventory(inventory).hosts, models, str(inventory))
        with store.session() as session:
            run = session.get(RunRow, outcome.run_id)
            assert run is not None
            names = {row.id: row.name for row in session.scalars(select(HostRow))}
            jobs = list(session.scalars(select(JobRow).where(JobRow.run_id == run.id)))
            dead_row = session.scalar(select(HostRow).where(HostRow.name == "dead-host"))
            assert dead_row is not None
            facts_at = session.scalar(select(HostFactsRow.taken_at).where(HostFactsRow.host_id != dead_row.id))
    finally:
        store.close()
    good = [job for job in jobs if names[job.host_id] == rpi.name]
    lost = [job for job in jobs if names[job.host_id] == "dead-host"]
    assert [job.status for job in good] == ["succeeded"] * 2
    assert [(job.status, job.failure) for job in lost] == [("failed", "unreachable")] * 2
    assert dead_row.infra_failures == 2 and dead_row.health == "unhealthy"  # retried in its own lane, as before
    first = min(job.started_at for job in good if job.started_at) - run.started_at
    makespan = run.finished_at - run.started_at
    print(f"\ngood host's facts stored {(facts_at - run.started_at).total_seconds():.2f} s, first dispatch "
          f"{(min(j.dispatched_at for j in good) - run.started_at).total_seconds():.2f} s")
    print(f"good host's first job started {first.total_seconds():.2f} s after the run started "
          f"(goal {ISSUE_BOUND} s); the run took {makespan.total_seconds():.1f} s, the dead host's retries "
          f"{BACKOFF:.0f} s")
    # The goal is 2 s; on a loaded 2-core machine one SSH connect, deploy and facts alone can take 4 s, so
    # the test asserts against the dead host's retry: before, the good host waited for it (10 s and more).
    assert first.total_seconds() < BACKOFF, first
    assert makespan.total_seconds() >= BACKOFF - 1  # the dead host's lane did retry while the good one ran
