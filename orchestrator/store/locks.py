"""A lock across processes on one database, held while a check-then-act must not interleave.

PostgreSQL: a session advisory lock on a connection of its own, released when that connection
ends (so a killed holder releases it too). SQLite: flock on a file beside the database, which
the kernel releases when the holder dies. An in-memory SQLite database has one user: no lock.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from ..errors import StoreError


@contextmanager
def held(engine: Engine, name: str) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with _advisory(engine, name):
            yield
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with _flocked(Path(database).expanduser().with_name(f"{Path(database).name}.{name}.lock")):
        yield


@contextmanager
def _advisory(engine: Engine, name: str) -> Iterator[None]:
    key = zlib.crc32(f"farm:{name}".encode())
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the lock file {path} beside the database: {exc.strerror}. "
                         "Check that its folder is writable (FARM_DATA_DIR, or the folder in --db).") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
