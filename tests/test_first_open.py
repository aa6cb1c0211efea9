"""The first open of a new database creates its schema atomically and once (issue 19 items 2, 3).

SIGKILL during the first open of a new SQLite file, or a full disk, used to leave tables
without a version row that farm then refused forever; two first opens at once raced.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text

from orchestrator.errors import StoreError
from orchestrator.store import db as store_db
from orchestrator.store import open_store
from orchestrator.store.schema import Base

OPEN_ONCE = "import sys; from orchestrator.store import open_store; open_store(sys.argv[1]).close()"


def at_head(url: str) -> bool:
    store = open_store(url)
    try:
        return store_db.current_revision(store.engine) == store_db.head_revision()
    finally:
        store.close()


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.6, 0.8, 1.0, 1.2, 1.4, 1.7, 2.0, 2.5])
def test_a_sigkill_during_the_first_open_leaves_a_usable_database(tmp_path: Path, delay: float) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    opener = subprocess.Popen([sys.executable, "-c", OPEN_ONCE, url])
    time.sleep(delay)
    opener.send_signal(signal.SIGKILL)
    opener.wait(timeout=30)
    assert at_head(url)


def test_a_full_disk_during_creation_leaves_no_half_made_schema(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    real_engine = store_db.create_db_engine

    def small_disk(url: str):  # type: ignore[no-untyped-def]
        engine = real_engine(url)
        # A handful of pages: creating the schema runs out of room part way, like a full disk.
        event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA max_page_count = 12"))
        return engine

    monkeypatch.setattr(store_db, "create_db_engine", small_disk)
    with pytest.raises(StoreError, match="full"):
        open_store(url)
    monkeypatch.undo()
    engine = create_engine(url)
    assert [t for t in inspect(engine).get_table_names() if t != "alembic_version"] == []
    engine.dispose()
    assert at_head(url)


def test_tables_an_older_farm_left_half_made_are_created_afresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    engine = create_engine(url)
    half = [Base.metadata.tables[name] for name in ("hosts", "models", "runs")]
    Base.metadata.create_all(engine, tables=half)
    engine.dispose()
    assert at_head(url)


def test_farm_tables_holding_rows_without_a_version_are_still_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["hosts"]])
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO hosts (name, transport, first_seen, last_seen, health, infra_failures) "
                                "VALUES ('h', 'local', '2026-01-01', '2026-01-01', 'ok', 0)"))
    engine.dispose()
    with pytest.raises(StoreError, match="farm tables holding rows: hosts"):
        open_store(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM hosts")).scalar() == 1
    engine.dispose()


def test_a_database_of_someone_elses_tables_is_refused_untouched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match="tables farm does not know: invoices"):
        open_store(url)


@pytest.mark.parametrize("openers", [2, 3])
def test_concurrent_first_opens_all_succeed(db_url: str, openers: int) -> None:
    # Separate processes, as two `farm` commands are: each runs the migrations itself.
    with ThreadPoolExecutor(openers) as pool:
        done = list(pool.map(lambda _: subprocess.run([sys.executable, "-c", OPEN_ONCE, db_url], capture_output=True,
                                                      text=True, timeout=300, check=False), range(openers)))
    if [d.returncode for d in done] != [0] * openers:  # the whole of each traceback: which statement was refused
        pytest.fail("\n".join(f"opener {k} exited {d.returncode}:\n{d.stderr}" for k, d in enumerate(done)),
                    pytrace=False)
    assert at_head(db_url)
