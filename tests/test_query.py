"""`farm query` is read-only on both databases, and binds its parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from orchestrator.errors import FarmError
from orchestrator.inventory import Host
from orchestrator.query import read_only_query
from orchestrator.store import open_store, records


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    store = open_store(db_url)
    records.upsert_host(store, Host(name="h1", transport="local"))
    records.create_run(store, "all", "inv.yaml", [])
    yield store
    store.close()


def counts(store) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with store.engine.connect() as connection:
        return (connection.execute(text("select count(*) from runs")).scalar(),
                connection.execute(text("select count(*) from hosts")).scalar())


def test_select_with_a_bound_parameter(store) -> None:  # type: ignore[no-untyped-def]
    frame = read_only_query(store, "select name from hosts where name = :n", {"n": "h1"})
    assert frame["name"].tolist() == ["h1"]


@pytest.mark.parametrize("sql", [
    "delete from runs",
    "update hosts set name = 'x'",
    ("insert into runs (matrix, inventory, status, started_at, controller_version, tags) "
     "values ('m', 'i', 's', '2020-01-01', 'v', '[]')"),
    "drop table runs",
])
def test_writes_are_refused_and_change_nothing(store, sql: str) -> None:  # type: ignore[no-untyped-def]
    before = counts(store)
    with pytest.raises(FarmError, match="read-only|returns no rows"):
        read_only_query(store, sql)
    assert counts(store) == before


def test_a_hostile_value_is_data_not_sql(store) -> None:  # type: ignore[no-untyped-def]
    hostile = "h1'; DROP TABLE runs; --"
    frame = read_only_query(store, "select name from hosts where name = :n", {"n": hostile})
    assert frame.empty
    assert counts(store) == (1, 1)


def test_the_store_is_writable_again_after_a_query(store) -> None:  # type: ignore[no-untyped-def]
    read_only_query(store, "select 1 as one")
    records.create_run(store, "again", "inv.yaml", [])
    assert counts(store)[0] == 2
