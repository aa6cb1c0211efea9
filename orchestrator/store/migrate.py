"""Create or migrate farm's schema in one transaction, one process at a time.

Two first runs on a new database used to race (both saw no schema, both created it), and a
SIGKILL or a full disk during the first creation left tables without a version row that farm
then refused forever. Here every migration runs in a single transaction that first takes a lock:
SQLite's write lock (BEGIN IMMEDIATE; SQLite's DDL is transactional once pysqlite stops managing
transactions itself) or a PostgreSQL transaction-scoped advisory lock. Inside the lock the
version is read again, so the second of two racing processes finds the schema made and does
nothing. A database left half-made by an older farm (farm's own tables, all empty, no version)
is emptied and created afresh in the same transaction.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, inspect, text

from ..errors import StoreError
from .schema import Base

# Any constant both processes agree on; "farm" in ASCII.
SCHEMA_LOCK_KEY = 0x6661726D
# Waiting for another process's migration: generous, since creating the schema takes seconds.
SQLITE_LOCK_WAIT_MS = 120_000


def migrate_to_head(engine: Engine, config: Config, url_for_messages: str) -> str | None:
    """Migrate under the schema lock; returns the revision found before (None: it was created)."""
    if engine.dialect.name == "sqlite":
        _take_over_sqlite_transactions(engine)
    with engine.connect() as connection, connection.begin():
        _lock(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        if before is None:
            _clear_interrupted_creation(connection, url_for_messages)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before


def _take_over_sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling commits around DDL; SQLAlchemy's recipe hands BEGIN to us.
    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_LOCK_WAIT_MS}")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def _clear_interrupted_creation(connection: Connection, url_for_messages: str) -> None:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if not tables:
        return
    ours = set(Base.metadata.tables) | {"alembic_version"}
    strangers = sorted(tables - ours)
    filled = sorted(t for t in tables & ours if connection.execute(text(f'SELECT 1 FROM "{t}" LIMIT 1')).first())
    if strangers or filled:
        found = ", ".join(strangers or filled)
        raise StoreError(f"the database at {url_for_messages} has tables but no farm schema version "
                         f"({'tables farm does not know' if strangers else 'farm tables holding rows'}: {found}); "
                         "it is not a farm database (or predates migrations). Use another --db.")
    # What an interrupted first creation leaves: farm's tables, empty. Created again from nothing.
    for view in inspector.get_view_names():
        connection.exec_driver_sql(f'DROP VIEW "{view}"')
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in tables:
            connection.exec_driver_sql(f'DROP TABLE "{table.name}"')
    if "alembic_version" in tables:
        connection.exec_driver_sql('DROP TABLE "alembic_version"')
