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
        try:
            if backend == "sqlite":
                connection.exec_driver_sql("PRAGMA query_only = ON")
            elif backend == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = connection.execute(text(sql), params or {})
            if not result.returns_rows:
                raise FarmError("the statement returns no rows; farm query runs SELECT statements only")
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        except DBAPIError as exc:
            reason = " ".join(str(exc.orig).split())
            if "readonly" in reason.replace(" ", "").lower() or "read-only" in reason.lower() \
                    or "query_only" in reason.lower():
                raise FarmError(f"farm query is read-only; the database refused a write: {reason}") from None
            raise FarmError(f"query failed: {reason}") from None
        except SQLAlchemyError as exc:
            raise FarmError(f"query failed: {' '.join(str(exc).split())[:300]}") from None
        finally:
            connection.rollback()
            if backend == "sqlite":
                connection.exec_driver_sql("PRAGMA query_only = OFF")
    return frame
