"""Run one checked statement with the least privilege and bounded time, rows and memory.

Layers, each of which alone would stop some of what the others stop:
- ``shape.check_statement``: one SELECT-shaped statement, no writes or outside-reaching functions;
- the engine's read-only mode: SQLite's ``query_only`` plus an authorizer (no ATTACH, no pragma
  writes), PostgreSQL's READ ONLY transaction switched to the unprivileged ``farm_query`` role;
- limits: PostgreSQL's ``statement_timeout``, SQLite's progress handler and heap limit, and a cap
  on the rows and bytes farm takes in.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import FarmError
from ..store.db import Store
from . import pg_role
from .limits import MAX_MB_ENV, MAX_ROWS_ENV, TIMEOUT_ENV, QueryLimits
from .shape import READ_PRAGMAS, check_statement
from .sqlite_heap import heap_limit

_BATCH = 1000
_PROGRESS_STEPS = 10_000  # SQLite virtual-machine steps between two looks at the clock


def read_only_query(store: Store, sql: str, params: dict[str, str] | None = None,
                    limits: QueryLimits | None = None) -> pd.DataFrame:
    limits = limits or QueryLimits.from_env()
    backend = store.engine.dialect.name
    check_statement(sql, backend)
    deadline = time.monotonic() + limits.timeout_s
    with store.engine.connect() as connection:
        guard = _sqlite_guard if backend == "sqlite" else _postgres_guard if backend == "postgresql" else _no_guard
        try:
            with guard(connection, limits, deadline):
                result = connection.execution_options(stream_results=True).execute(text(sql), params or {})
                if not result.returns_rows:
                    raise FarmError("the statement returns no rows; farm query runs SELECT statements only")
                columns = list(result.keys())
                rows = _bounded_rows(result, limits, deadline)
                return pd.DataFrame(rows, columns=columns)
        except DBAPIError as exc:
            raise _explain(exc, store, limits) from None
        except MemoryError:  # what sqlite3 raises when the heap limit refuses an allocation
            raise _out_of_memory(limits) from None
        except SQLAlchemyError as exc:
            raise FarmError(f"query failed: {' '.join(str(exc).split())[:300]}") from None


def _bounded_rows(result: Any, limits: QueryLimits, deadline: float) -> list[Any]:
    rows: list[Any] = []
    taken = 0
    while True:
        batch = result.fetchmany(_BATCH)
        if not batch:
            return rows
        rows.extend(batch)
        taken += sum(_row_bytes(row) for row in batch)
        if len(rows) > limits.max_rows:
            raise FarmError(f"the query returns more than {limits.max_rows} rows, farm query's limit "
                            f"({MAX_ROWS_ENV}); narrow it with WHERE or LIMIT")
        if taken > limits.max_bytes:
            raise FarmError(f"the query's rows take more than {limits.max_mb} MB, farm query's limit "
                            f"({MAX_MB_ENV}); select fewer columns or rows")
        if time.monotonic() > deadline:
            raise _timeout(limits)


def _row_bytes(row: Any) -> int:
    return sum(len(value) if isinstance(value, (str, bytes)) else 8 for value in row)


@contextmanager
def _no_guard(_connection: Connection, _limits: QueryLimits, _deadline: float) -> Iterator[None]:
    try:
        yield
    finally:
        _connection.rollback()


@contextmanager
def _sqlite_guard(connection: Connection, limits: QueryLimits, deadline: float) -> Iterator[None]:
    driver = connection.connection.driver_connection
    connection.exec_driver_sql("PRAGMA query_only = ON")
    try:
        with heap_limit(driver, limits.max_bytes):
            # query_only leaves ATTACH (which creates files) and PRAGMA writes allowed: the authorizer refuses them.
            driver.set_authorizer(_sqlite_authorizer)
            driver.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _PROGRESS_STEPS)
            try:
                yield
            finally:
                driver.set_progress_handler(None, _PROGRESS_STEPS)
                driver.set_authorizer(None)
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA query_only = OFF")


@contextmanager
def _postgres_guard(connection: Connection, limits: QueryLimits, _deadline: float) -> Iterator[None]:
    driver = connection.connection.driver_connection
    threshold = getattr(driver, "prepare_threshold", None)
    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(limits.timeout_s * 1000)}")
    pg_role.switch_to_query_role(connection)
    # A prepared statement holds one command, so "COMMIT; DELETE ..." cannot end the read-only
    # transaction and write after it (the simple protocol would run all of them).
    driver.prepare_threshold = 0
    try:
        yield
    finally:
        connection.rollback()
        driver.prepare_threshold = threshold


def _explain(exc: DBAPIError, store: Store, limits: QueryLimits) -> FarmError:
    reason = " ".join(str(exc.orig).split())
    message = reason.split(" LINE 1:")[0].lower()  # PostgreSQL echoes the statement after this
    if "statement timeout" in message or message.startswith("interrupted"):
        return _timeout(limits)
    if "out of memory" in message:
        return _out_of_memory(limits)
    if "readonly" in message.replace(" ", "") or "read-only" in message or "query_only" in message:
        return FarmError(f"farm query is read-only; the database refused a write: {reason}")
    if "permission denied" in message and store.engine.dialect.name == "postgresql":
        return FarmError(f"query failed: {reason}. farm query runs as the role {pg_role.ROLE}, which may read "
                         f"farm's tables and views only; if this is one of them, an administrator can run: "
                         f"{pg_role.grant_sql(store.engine)}")
    return FarmError(f"query failed: {reason}")


def _out_of_memory(limits: QueryLimits) -> FarmError:
    return FarmError(f"the query needed more than {limits.max_mb} MB, farm query's limit ({MAX_MB_ENV}); "
                     "narrow it with WHERE or LIMIT")


def _timeout(limits: QueryLimits) -> FarmError:
    return FarmError(f"the query ran longer than {limits.timeout_s:g} s, farm query's limit ({TIMEOUT_ENV}), "
                     "and was stopped")


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _source: str | None) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() not in READ_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK
