"""`farm query` runs with least privilege, a time limit and a row/memory cap, on both databases.

Issue 19 item 1: a READ ONLY transaction alone let a superuser URL run COPY … TO PROGRAM,
pg_read_file, pg_terminate_backend and endless statements. These reproduce each of those.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from orchestrator.errors import FarmError
from orchestrator.query import QueryLimits, read_only_query
from orchestrator.store import open_store

QUICK = QueryLimits(timeout_s=1.0, max_rows=1000, max_mb=64)
ENDLESS_SQLITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def pg_store(pg_url: str):  # type: ignore[no-untyped-def]
    store = open_store(pg_url)
    yield store
    store.close()


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "COPY (SELECT 1) TO '{marker}'",
    "WITH gone AS (DELETE FROM runs RETURNING id) SELECT count(*) FROM gone",
    "SELECT * INTO stolen FROM runs",
    "SELECT 1; COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_ls_dir('.')",
    "SELECT pg_reload_conf()",
    "SELECT pg_advisory_lock(19)",
    "SELECT * FROM runs FOR UPDATE",
])
def test_side_effects_are_refused_before_anything_runs(store, tmp_path: Path, sql: str) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "farm-pwned"
    with pytest.raises(FarmError, match="nothing was run|exactly one statement"):
        read_only_query(store, sql.format(marker=marker), limits=QUICK)
    assert not marker.exists()


def test_postgres_queries_run_as_the_unprivileged_query_role(pg_store) -> None:  # type: ignore[no-untyped-def]
    frame = read_only_query(pg_store, "SELECT current_user AS who, (SELECT rolsuper FROM pg_roles "
                                      "WHERE rolname = current_user) AS super", limits=QUICK)
    assert frame.to_dict("records") == [{"who": "farm_query", "super": False}]


def test_postgres_query_role_cannot_signal_another_clients_backend(pg_store, pg_server: str) -> None:  # type: ignore[no-untyped-def]
    # pg_terminate_backend is refused by the parser; the role is the layer behind it, tried directly.
    victim = create_engine(pg_server)
    with victim.connect() as held, pg_store.engine.connect() as connection:
        pid = held.execute(text("SELECT pg_backend_pid()")).scalar()
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql("SET LOCAL ROLE farm_query")
        with pytest.raises(Exception, match="InsufficientPrivilege"):
            connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        connection.rollback()
        assert held.execute(text("SELECT 1")).scalar() == 1
    victim.dispose()


def test_postgres_sleep_stops_at_the_timeout(pg_store) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with pytest.raises(FarmError, match="longer than 1 s.*FARM_QUERY_TIMEOUT"):
        read_only_query(pg_store, "SELECT pg_sleep(30)", limits=QUICK)
    assert time.monotonic() - started < 5


def test_sqlite_endless_recursion_stops_at_the_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        started = time.monotonic()
        with pytest.raises(FarmError, match="longer than 1 s"):
            read_only_query(store, ENDLESS_SQLITE, limits=QUICK)
        assert time.monotonic() - started < 5
        assert read_only_query(store, "SELECT 2 AS two", limits=QUICK)["two"].tolist() == [2]
    finally:
        store.close()


def test_sqlite_engine_memory_is_capped(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'farm.db'}")
    try:
        with pytest.raises(FarmError, match="more than 64 MB"):
            read_only_query(store, "SELECT length(randomblob(200000000)) AS n", limits=QUICK)
        # The limit is the whole process's: lifted again afterwards, for whatever else the process does.
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA hard_heap_limit").scalar() == 0
    finally:
        store.close()


@pytest.mark.parametrize("rows, fits", [(1000, True), (1001, False)])
def test_rows_are_capped(store, rows: int, fits: bool) -> None:  # type: ignore[no-untyped-def]
    sql = f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c"
    if fits:
        assert len(read_only_query(store, sql, limits=QUICK)) == rows
    else:
        with pytest.raises(FarmError, match="more than 1000 rows.*FARM_QUERY_MAX_ROWS"):
            read_only_query(store, sql, limits=QUICK)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_QUERY_TIMEOUT", "2.5")
    monkeypatch.setenv("FARM_QUERY_MAX_ROWS", "7")
    assert QueryLimits.from_env() == QueryLimits(timeout_s=2.5, max_rows=7, max_mb=QueryLimits().max_mb)
    monkeypatch.setenv("FARM_QUERY_MAX_MB", "-1")
    with pytest.raises(FarmError, match="FARM_QUERY_MAX_MB"):
        QueryLimits.from_env()


@pytest.fixture
def unprivileged_url(pg_server: str):  # type: ignore[no-untyped-def]
    """A login role that owns its own schema but may not create roles or become farm_query."""
    name = f"farm_plain_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        connection.execute(text(f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"'))
    url = make_url(pg_server).set(username=name).render_as_string(hide_password=False)
    try:
        yield f"{url}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            connection.execute(text(f'DROP OWNED BY "{name}"'))
            connection.execute(text(f'DROP ROLE "{name}"'))
        admin.dispose()


def test_a_role_that_cannot_become_farm_query_is_told_what_to_grant(unprivileged_url: str) -> None:
    store = open_store(unprivileged_url)  # the migration itself must not fail for want of privilege
    try:
        with pytest.raises(FarmError) as refused:
            read_only_query(store, "SELECT count(*) FROM runs", limits=QUICK)
    finally:
        store.close()
    message = str(refused.value)
    user = make_url(unprivileged_url).username
    assert "nothing was run" in message
    assert f'GRANT farm_query TO "{user}";' in message
    assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "{user}" TO farm_query;' in message


def test_farm_query_copy_to_program_with_a_superuser_url_leaves_no_file(pg_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "farm-pwned"
    done = subprocess.run([sys.executable, "-m", "orchestrator", "query",
                           f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'", "--db", pg_url],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 2, done  # a refused statement is a usage error
    assert not marker.exists()
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: farm query runs SELECT statements only"), done.stderr
    assert "\n\n" not in done.stderr.strip()
