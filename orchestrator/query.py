"""Ad-hoc SQL against the store, read-only whatever the statement tries.

The guard is the database's own, not a parser of ours: SQLite opens the file
read-only (``PRAGMA query_only``), PostgreSQL runs the statement in a READ ONLY
transaction, so a write is refused by the engine and nothing changes.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .errors import FarmError
from .store.db import Store


def read_only_query(store: Store, sql: str, params: dict[str, str] | None = None) -> pd.DataFrame:
    backend = store.engine.dialect.name
    with store.engine.connect() as connection:
        driver = connection.connection.driver_connection
        threshold = getattr(driver, "prepare_threshold", None)
        try:
            if backend == "sqlite":
                connection.exec_driver_sql("PRAGMA query_only = ON")
                # query_only leaves ATTACH (which creates files) and PRAGMA writes allowed: the authorizer refuses them.
                driver.set_authorizer(_sqlite_authorizer)
            elif backend == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                # A prepared statement holds one command, so "COMMIT; DELETE ..." cannot end the read-only
                # transaction and write after it (the simple protocol would run all of them).
                driver.prepare_threshold = 0
            result = connection.execute(text(sql), params or {})
            if not result.returns_rows:
                raise FarmError("the statement returns no rows; farm query runs SELECT statements only")
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        except DBAPIError as exc:
            reason = " ".join(str(exc.orig).split())
            message = reason.split(" LINE 1:")[0].lower()  # PostgreSQL echoes the statement after this
            if "readonly" in message.replace(" ", "") or "read-only" in message or "query_only" in message:
                raise FarmError(f"farm query is read-only; the database refused a write: {reason}") from None
            raise FarmError(f"query failed: {reason}") from None
        except SQLAlchemyError as exc:
            raise FarmError(f"query failed: {' '.join(str(exc).split())[:300]}") from None
        finally:
            connection.rollback()
            if backend == "sqlite":
                driver.set_authorizer(None)
                connection.exec_driver_sql("PRAGMA query_only = OFF")
            elif backend == "postgresql":
                driver.prepare_threshold = threshold
    return frame


# Pragmas that only describe the schema; any other pragma with an argument may change settings.
READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                "foreign_key_list", "database_list", "collation_list", "function_list", "pragma_list",
                "compile_options"}


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _source: str | None) -> int:
    import sqlite3

    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() not in READ_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK
