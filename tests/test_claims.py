"""Job claims on a real PostgreSQL (orchestrator/sites/claims.py): SKIP LOCKED batches, a host left to
the controller holding it, leases in database time, takeover after expiry, release, closing a shared run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from orchestrator.inventory import Host
from orchestrator.models import registry
from orchestrator.sites import claims
from orchestrator.store import open_store, records
from orchestrator.store.db import Store
from orchestrator.store.schema import JobRow, RunRow

JOBS_PER_HOST = 6


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    opened = open_store(pg_url)
    try:
        yield opened
    finally:
        opened.close()


def make_run(store: Store, hosts: list[int], model_id: int, *, shared: bool = True) -> int:
    run_id = records.create_run(store, "m", "inv.yaml", [])
    with store.session() as session:
        session.execute(update(RunRow).where(RunRow.id == run_id).values(shared=shared, status="submitted"))
        session.commit()
    records.add_jobs(store, run_id, [
        {"host_id": host, "model_id": model_id, "cell_key": f"h{host}-{n}", "delegate": "cpu", "threads": 1,
         "power_mode": None, "usb_port": None, "usb_speed": None, "timing": {}, "status": "queued"}
        for host in hosts for n in range(JOBS_PER_HOST)])
    return run_id


@pytest.fixture
def farm(store: Store) -> tuple[list[int], int]:
    hosts = [records.upsert_host(store, Host(name=f"claim-h{n}", address=f"10.0.0.{n}")) for n in range(4)]
    [(model, _)] = registry.build(store, "dense_stack", [1])
    return hosts, model.id


def owners(store: Store, run_id: int) -> dict[int, str | None]:
    with store.session() as session:
        return dict(session.execute(select(JobRow.id, JobRow.claim_owner).where(JobRow.run_id == run_id)).all())


def test_controllers_claiming_at_once_never_take_the_same_job(store: Store, farm) -> None:  # type: ignore[no-untyped-def]
    hosts, model = farm
    run_id = make_run(store, hosts, model)
    plain = make_run(store, hosts, model, shared=False)  # a `farm run` of its own: never claimed
    got: dict[str, list[JobRow]] = {}
    start = threading.Barrier(3)

    def controller(name: str) -> None:
        start.wait()
        got[name] = claims.claim(store, name, "s", hosts, lease=30, per_host=JOBS_PER_HOST)

    threads = [threading.Thread(target=controller, args=(f"c{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [row.id for rows in got.values() for row in rows]
    assert len(ids) == len(set(ids))  # no job claimed twice
    assert set(owners(store, plain).values()) == {None}
    # A second round claims whatever the first left (rows skipped while another held their locks).
    for name in got:
        claims.claim(store, name, "s", hosts, lease=30, per_host=JOBS_PER_HOST)
    held = owners(store, run_id)
    assert None not in held.values() and len(held) == len(hosts) * JOBS_PER_HOST
    with store.session() as session:
        assert session.get(RunRow, run_id).status == "running"  # type: ignore[union-attr]


def test_batches_leases_takeover_and_release(store: Store, farm) -> None:  # type: ignore[no-untyped-def]
    hosts, model = farm
    run_id = make_run(store, hosts[:1], model)
    first = claims.claim(store, "a", "site-a", hosts[:1], lease=2, per_host=2)
    assert [row.claim_owner for row in first] == ["a", "a"] and all(row.claim_site == "site-a" for row in first)
    # The host is a's while its lease lives: b gets none of its jobs, not even the unclaimed ones.
    assert claims.claim(store, "b", "site-a", hosts[:1], lease=2, per_host=2) == []
    assert claims.renew(store, "a", 2) == {row.id for row in first}
    time.sleep(2.5)  # a stops renewing (it died): its leases run out, in database time
    taken = claims.claim(store, "b", "site-a", hosts[:1], lease=30, per_host=JOBS_PER_HOST)
    assert {row.id for row in first} <= {row.id for row in taken} and len(taken) == JOBS_PER_HOST
    assert claims.lost(store, "a", [row.id for row in first]) == {row.id for row in first}
    assert claims.release(store, "a", [row.id for row in first]) == 0  # a cannot give back what b holds now
    assert claims.renew(store, "a", 2) == set()
    # b finishes some, releases the rest: another may claim them at once.
    with store.session() as session:
        session.execute(update(JobRow).where(JobRow.id.in_([row.id for row in taken[:2]])).values(status="succeeded"))
        session.commit()
    assert claims.release(store, "b", [row.id for row in taken]) == JOBS_PER_HOST - 2
    assert not claims.finish_if_done(store, run_id)
    again = claims.claim(store, "c", "site-b", hosts[:1], lease=30, per_host=JOBS_PER_HOST)
    assert len(again) == JOBS_PER_HOST - 2 and claims.open_jobs_on(store, hosts[:1]) == JOBS_PER_HOST - 2
    with store.session() as session:
        session.execute(update(JobRow).where(JobRow.run_id == run_id).values(status="succeeded"))
        session.commit()
    assert claims.finish_if_done(store, run_id) and not claims.finish_if_done(store, run_id)
    assert claims.open_jobs_on(store, hosts[:1]) == 0
