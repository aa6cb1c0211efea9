"""record_checks (one transaction of bulk statements) writes what upsert_host + add_facts write per host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from orchestrator.inventory import Host
from orchestrator.store import open_store, records
from orchestrator.store.db import Store
from orchestrator.store.schema import HostFactsRow, HostRow


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def _hosts(store: Store) -> dict[str, tuple[Any, ...]]:
    with store.session() as session:
        return {row.name: (row.address, row.board, row.transport, row.health, row.infra_failures,
                           row.first_seen is not None, row.last_seen)
                for row in session.scalars(select(HostRow))}


def _facts(store: Store) -> list[tuple[str, dict[str, Any]]]:
    with store.session() as session:
        rows = session.execute(select(HostRow.name, HostFactsRow.facts, HostFactsRow.taken_at)
                               .join(HostRow, HostRow.id == HostFactsRow.host_id).order_by(HostFactsRow.id))
        return [(name, facts) for name, facts, taken in rows if taken is not None]


def test_new_and_known_hosts_boards_and_facts(store: Store) -> None:
    known = records.upsert_host(store, Host(name="known", address="10.0.0.1", transport="ssh", board="rpi4"))
    bare = records.upsert_host(store, Host(name="bare", address="10.0.0.2", transport="ssh"))
    before = _hosts(store)
    checks = [
        (Host(name="known", address="10.0.0.9", transport="ssh"), {"board": "jetson-nano"}),  # keeps its board
        (Host(name="bare", address="10.0.0.2", transport="local"), {"board": "rpi3b+"}),  # board from facts
        (Host(name="new", address="10.0.0.3", transport="ssh", board="devboard"), {"board": "x86"}),
        (Host(name="new-unreachable", address="10.0.0.4", transport="ssh"), None),
        (Host(name="new-facts", address="10.0.0.5", transport="ssh"), {"board": "rpi4", "cpus": 4}),
    ]
    ids = records.record_checks(store, checks)
    after = _hosts(store)
    assert ids[:2] == [known, bare] and len(set(ids)) == 5
    with store.session() as session:
        assert [session.get(HostRow, i).name for i in ids] == [h.name for h, _ in checks]
    assert after["known"][:3] == ("10.0.0.9", "rpi4", "ssh") and after["known"][6] >= before["known"][6]
    assert after["bare"][:3] == ("10.0.0.2", "rpi3b+", "local")
    assert after["new"][:5] == ("10.0.0.3", "devboard", "ssh", "ok", 0) and after["new"][5]
    assert after["new-unreachable"][:3] == ("10.0.0.4", None, "ssh")
    assert after["new-facts"][1] == "rpi4"
    assert _facts(store) == [("known", {"board": "jetson-nano"}), ("bare", {"board": "rpi3b+"}),
                             ("new", {"board": "x86"}), ("new-facts", {"board": "rpi4", "cpus": 4})]
    # Again: every host is known now, nothing is inserted twice.
    assert records.record_checks(store, checks) == ids
    assert len(_hosts(store)) == 5 and len(_facts(store)) == 8


def test_a_host_named_twice_is_one_row(store: Store) -> None:
    host = Host(name="twice", address="10.0.0.1", transport="ssh")
    ids = records.record_checks(store, [(host, None), (host, {"board": "rpi4"})])
    assert ids[0] == ids[1]
    assert _hosts(store)["twice"][1] == "rpi4"
    assert _facts(store) == [("twice", {"board": "rpi4"})]


def test_the_same_rows_as_one_host_at_a_time(tmp_path: Any) -> None:
    checks = [(Host(name=f"h{i}", address=f"10.0.0.{i}", transport="ssh", board="rpi4" if i % 2 else None),
               {"board": "jetson-nano", "i": i} if i % 3 else None) for i in range(7)]
    one, bulk = (open_store(f"sqlite:///{tmp_path / name}.db") for name in ("one", "bulk"))
    try:
        for _ in range(2):
            for host, facts in checks:
                host_id = records.upsert_host(one, host)
                if facts is not None:
                    records.add_facts(one, host_id, facts)
            records.record_checks(bulk, checks)
        strip = {name: row[:6] for name, row in _hosts(one).items()}
        assert strip == {name: row[:6] for name, row in _hosts(bulk).items()}
        assert _facts(one) == _facts(bulk)
    finally:
        one.close()
        bulk.close()
