"""Open the results database, check its schema is current, and migrate it.

SQLite under the user's data directory is the default; PostgreSQL (or any URL
SQLAlchemy knows) comes through ``--db URL`` or ``FARM_DB_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from ..errors import StoreError
from ..own_packages import MIGRATIONS_DIR  # by location: a user's migrations/ on sys.path never runs
from .revisions import head_from_files, stored_revision

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.orm import Session, sessionmaker

# alembic is imported only where a database is created, migrated or at an unexpected revision: a command
# that opens a current database (farm results, farm report) reads both revisions without it (revisions.py).

DB_URL_ENV = "FARM_DB_URL"


def data_dir() -> Path:
    if os.environ.get("FARM_DATA_DIR"):
        return Path(os.environ["FARM_DATA_DIR"])
    import platformdirs  # only where no directory is given: --db and FARM_DATA_DIR need none

    return Path(platformdirs.user_data_dir("farm"))


def default_db_url() -> str:
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{data_dir() / 'farm.db'}"


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _alembic_config(url: str) -> Config:
    from alembic.config import Config

    from ..own_packages import bind_own_package

    # Later migrations import 0009's view builder by name (migrations.versions.0009_v_results_context): the
    # name must mean farm's own migrations, never a `migrations/` in the user's working directory.
    bind_own_package("migrations")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def create_db_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"'{url}' is not a database URL (expected e.g. sqlite:///path/farm.db or "
                         "postgresql+psycopg://user@host:5432/dbname)", usage=True) from None
    if "\x00" in url or "\x00" in str(parsed.database or ""):  # the drivers raise a bare ValueError on it
        raise StoreError(f"the database URL {safe_url(url)!r} holds a NUL character (or %00); "
                         "give e.g. sqlite:///path/farm.db", usage=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() == "postgres":
        # Heroku's and libpq's spelling, which SQLAlchemy 2 no longer knows ("Can't load plugin").
        parsed = parsed.set(drivername="postgresql" + parsed.drivername[len("postgres"):])
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "postgresql"):
        # psycopg 3 is what farm installs; plain postgresql:// would look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        connect_args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"no database driver for {safe_url(url)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers (farm results) run while a farm run writes; the busy
    # timeout rides over the moments when two writers meet.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        answered, revision = stored_revision(connection)
        if answered:
            return revision
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Migrate to the newest schema; returns (revision before, revision after)."""
    from .migrate import migrate_to_head

    engine = create_db_engine(url)
    try:
        before = _guard(url, lambda: migrate_to_head(engine, _alembic_config(url), safe_url(url)))
        return before, head_revision()
    finally:
        engine.dispose()


def _guard(url: str, action):  # type: ignore[no-untyped-def]
    try:
        return action()
    except OperationalError as exc:
        reason = " ".join(str(exc.orig).split()) if exc.orig else str(exc)
        raise StoreError(f"cannot use the database at {safe_url(url)}: {reason}. Check the URL given with "
                         f"--db or {DB_URL_ENV}, and that the server is running.") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"database error at {safe_url(url)}: {' '.join(str(exc).split())[:500]}") from None


class Store:
    """An open, schema-checked database; hands out sessions."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._sessions: sessionmaker[Session] | None = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        # The ORM on first use: `farm results` reads its rows with SQLAlchemy Core and never pays its import.
        if self._sessions is None:
            from sqlalchemy.orm import sessionmaker

            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str | None = None) -> Store:
    """Open the store, creating a brand-new database, refusing one whose schema is behind."""
    url = url or default_db_url()
    _refuse_in_memory(url)
    engine = create_db_engine(url)
    try:
        revision = _guard(url, lambda: current_revision(engine))
        if revision is not None and revision == head_from_files(MIGRATIONS_DIR / "versions"):
            return Store(url, engine)  # current: nothing for alembic to say
        head = head_revision()
        if revision is None:
            # A brand-new (or half-created) database: creating it is not "running against an old schema".
            upgrade(url)
        elif revision != head:
            from alembic.script import ScriptDirectory

            known = ScriptDirectory.from_config(_alembic_config(url)).get_revision(revision) \
                if _is_known(revision) else None
            if known is None:
                raise StoreError(f"the database at {safe_url(url)} is at schema {revision}, which this "
                                 "version of farm does not know: upgrade farm itself.")
            raise StoreError(f"the database at {safe_url(url)} is at schema {revision} but farm needs "
                             f"{head}. Run: farm db upgrade --db '{safe_url(url)}'")
        return Store(url, engine)
    except BaseException:
        engine.dispose()
        raise


def _refuse_in_memory(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # create_db_engine says what is wrong with it
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreError(f"'{url}' is an in-memory SQLite database: it would be empty for every command and keep "
                         "nothing. Give a file, e.g. sqlite:///path/farm.db (three slashes, then the path).", usage=True)


def _is_known(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
        return False
